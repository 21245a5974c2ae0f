"""AI results as DICOM objects for the PACS, built with highdicom (no Django).

``structured_report`` is a Comprehensive SR of the findings (p(abnormal), flag, threshold,
suggested cause, model name/version/sha256, the reviewer's read when there is one, and
"decision support, not a diagnosis"); ``secondary_capture`` is the heatmap overlay with
that text burned in. Both belong to the source image's study (same StudyInstanceUID and
patient, copied from its header), each in a new series, and reference the source image.
The caller chooses the UIDs, so a re-sent object is the same object.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import highdicom as hd
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from classifier.findings import NOTICE

MANUFACTURER = "CXR triage"
SCHEME = "99CXR"  # private coding scheme for the concepts no standard vocabulary names


def _local(value: str, meaning: str) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value=value, scheme_designator=SCHEME, meaning=meaning)


REPORT = hd.sr.CodedConcept(value="18748-4", scheme_designator="LN", meaning="Diagnostic imaging report")
FINDING = hd.sr.CodedConcept(value="121071", scheme_designator="DCM", meaning="Finding")
COMMENT = hd.sr.CodedConcept(value="121106", scheme_designator="DCM", meaning="Comment")
ALGORITHM_NAME = hd.sr.CodedConcept(value="111001", scheme_designator="DCM", meaning="Algorithm Name")
ALGORITHM_VERSION = hd.sr.CodedConcept(value="111003", scheme_designator="DCM", meaning="Algorithm Version")
P_ABNORMAL = _local("p-abnormal", "Probability of abnormality")
THRESHOLD = _local("threshold", "Operating threshold")
FLAG = _local("flag", "Triage flag")
CAUSE = _local("cause", "Suggested cause")
MODEL_SHA256 = _local("model-sha256", "Model sha256")
REVIEW = _local("review", "Radiologist review")
PROBABILITY_UNIT = hd.sr.CodedConcept(value="1", scheme_designator="UCUM", meaning="no units")


@dataclass(frozen=True)
class ResultSummary:
    """What the objects say, taken from a finished prediction (and its review)."""

    finding: str
    p_abnormal: float
    flag: bool
    threshold: float
    cause: str
    model_name: str
    model_version: str
    model_sha256: str
    review: str = ""

    def lines(self) -> list[str]:
        lines = [
            f"AI triage: {self.finding}",
            f"p(abnormal) {self.p_abnormal:.3f}, {'FLAGGED' if self.flag else 'not flagged'} "
            f"at threshold {self.threshold:.3f}",
        ]
        if self.cause:
            lines.append(self.cause)
        lines.append(f"Model {self.model_name} v{self.model_version} sha256:{self.model_sha256[:16]}")
        if self.review:
            lines.append(self.review)
        lines.append(NOTICE.capitalize())
        return lines


# Type 2 study and patient attributes highdicom copies from the source: a header may omit them.
TYPE2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "ReferringPhysicianName",
)


def _complete(source: Dataset) -> Dataset:
    """A copy of the source header with every absent Type 2 attribute present and empty."""
    copy = Dataset(source)
    if hasattr(source, "file_meta"):
        copy.file_meta = source.file_meta
    for keyword in TYPE2:
        if keyword not in copy:
            setattr(copy, keyword, "")
    return copy


def _text(name: hd.sr.CodedConcept, value: str) -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(name=name, value=value[:1024], relationship_type="CONTAINS")


def structured_report(
    source: Dataset, summary: ResultSummary, *, series_uid: str, sop_uid: str, series_number: int
) -> Dataset:
    """A Comprehensive SR of ``summary`` in ``source``'s study, referencing ``source``."""
    source = _complete(source)
    items = [
        _text(FINDING, summary.finding),
        hd.sr.NumContentItem(
            name=P_ABNORMAL, value=round(summary.p_abnormal, 6), unit=PROBABILITY_UNIT, relationship_type="CONTAINS"
        ),
        _text(FLAG, "flagged" if summary.flag else "not flagged"),
        hd.sr.NumContentItem(
            name=THRESHOLD, value=round(summary.threshold, 6), unit=PROBABILITY_UNIT, relationship_type="CONTAINS"
        ),
        _text(ALGORITHM_NAME, summary.model_name),
        _text(ALGORITHM_VERSION, summary.model_version),
        _text(MODEL_SHA256, summary.model_sha256 or "unknown"),
    ]
    if summary.cause:
        items.append(_text(CAUSE, summary.cause))
    if summary.review:
        items.append(_text(REVIEW, summary.review))
    items.append(_text(COMMENT, NOTICE))
    items.append(
        hd.sr.ImageContentItem(
            name=codes.DCM.SourceImageForImageProcessingOperation,
            referenced_sop_class_uid=source.SOPClassUID,
            referenced_sop_instance_uid=source.SOPInstanceUID,
            relationship_type="CONTAINS",
        )
    )
    root = hd.sr.ContainerContentItem(name=REPORT, template_id=None)
    root.ContentSequence = hd.sr.ContentSequence(items, is_root=False)
    return hd.sr.ComprehensiveSR(
        evidence=[source],
        content=root,
        series_instance_uid=series_uid,
        series_number=series_number,
        sop_instance_uid=sop_uid,
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=bool(summary.review),
        series_description="AI triage report",
    )


def _burn_in(overlay_png: bytes, lines: list[str]) -> np.ndarray:
    """The overlay (RGB) with a text band below it; the text scales with the image."""
    picture = Image.open(io.BytesIO(overlay_png)).convert("RGB")
    size = max(12, picture.width // 60)
    font = ImageFont.load_default(size=size)
    band = (size + size // 2) * len(lines) + size
    canvas = Image.new("RGB", (picture.width, picture.height + band), "black")
    canvas.paste(picture, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for index, line in enumerate(lines):
        draw.text((size // 2, picture.height + size // 2 + index * (size + size // 2)), line, fill="white", font=font)
    return np.asarray(canvas)


def _orientation(source: Dataset) -> tuple[str, str]:
    """The source's PatientOrientation, else that of a frontal chest film (PA: the
    columns run to the patient's left, AP: to the right; rows to the feet)."""
    value = list(source.get("PatientOrientation") or [])
    if len(value) == 2 and all(value):
        return str(value[0]), str(value[1])
    return ("R", "F") if str(source.get("ViewPosition", "")).upper() == "AP" else ("L", "F")


def secondary_capture(
    source: Dataset,
    overlay_png: bytes,
    summary: ResultSummary,
    *,
    series_uid: str,
    sop_uid: str,
    series_number: int,
) -> Dataset:
    """The heatmap overlay with ``summary`` burned in, as a Secondary Capture of ``source``'s study."""
    source = _complete(source)
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source,
        pixel_array=_burn_in(overlay_png, summary.lines()),
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        patient_orientation=_orientation(source),
        series_instance_uid=series_uid,
        series_number=series_number,
        sop_instance_uid=sop_uid,
        instance_number=1,
        manufacturer=MANUFACTURER,
        transfer_syntax_uid="1.2.840.10008.1.2.1",
    )
    reference = Dataset()
    reference.ReferencedSOPClassUID = source.SOPClassUID
    reference.ReferencedSOPInstanceUID = source.SOPInstanceUID
    sc.SourceImageSequence = [reference]
    sc.BurnedInAnnotation = "YES"
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.DerivationDescription = f"AI triage heatmap overlay; {NOTICE}"
    sc.SeriesDescription = "AI triage heatmap"
    return sc
