"""The identifying DICOM header values, checked against their value representations.

These values become database rows (patient MRN and name, accession number, UIDs) and
are shown to people, so a value the standard does not allow is refused with a sentence
naming the attribute, before anything is stored: an embedded NUL or other control
character, or a value longer than its VR allows (PS3.5 6.2). Trailing NUL and space
padding is allowed (it is how DICOM pads to even length) and is not part of the value.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from .errors import InvalidHeaderValue

# keyword -> (tag, VR, maximum characters; for PN, per component group)
CHECKED: dict[str, tuple[str, str, int]] = {
    "PatientID": ("(0010,0020)", "LO", 64),
    "PatientName": ("(0010,0010)", "PN", 64),
    "PatientSex": ("(0010,0040)", "CS", 16),
    "AccessionNumber": ("(0008,0050)", "SH", 16),
    "StudyInstanceUID": ("(0020,000D)", "UI", 64),
    "SeriesInstanceUID": ("(0020,000E)", "UI", 64),
    "SOPInstanceUID": ("(0008,0018)", "UI", 64),
    "Modality": ("(0008,0060)", "CS", 16),
    "ViewPosition": ("(0018,5101)", "CS", 16),
    "BodyPartExamined": ("(0018,0015)", "CS", 16),
    "PhotometricInterpretation": ("(0028,0004)", "CS", 16),
}
PADDING = " \x00"


def clean_text(value: str) -> str:
    """A header string without its padding."""
    return value.strip(PADDING)


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in text)


def _values(value: Any) -> list[str]:
    if isinstance(value, MultiValue | list | tuple):
        return [str(v) for v in value]
    return [str(value)]


def check_header_values(ds: Dataset) -> None:
    """Raise InvalidHeaderValue naming the first identifying attribute the standard forbids."""
    for keyword, (tag, vr, limit) in CHECKED.items():
        element = ds.get(keyword)
        if element is None:
            continue
        for text in _values(element):
            text = clean_text(text)
            if _has_control(text):
                raise InvalidHeaderValue(
                    f"The DICOM header's {keyword} {tag} contains a NUL byte or another control character."
                )
            parts = text.split("=") if vr == "PN" else [text]
            longest = max(len(part) for part in parts)
            if longest > limit:
                unit = " per component group" if vr == "PN" else ""
                raise InvalidHeaderValue(
                    f"The DICOM header's {keyword} {tag} is {longest} characters long; "
                    f"its VR {vr} allows {limit}{unit}."
                )
