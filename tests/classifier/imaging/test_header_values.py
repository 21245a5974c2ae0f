"""Identifying DICOM header values are checked against their VR before anything is stored."""

from __future__ import annotations

import pytest

from classifier.imaging import InvalidHeaderValue
from classifier.imaging.probe import probe_bytes
from tests.conftest import synthetic_dicom

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the invalid values it writes


@pytest.mark.parametrize(
    ("keyword", "kwargs"),
    [
        ("PatientID", {"mrn": "MRN\x00-1"}),
        ("PatientName", {"patient_name": "Doe^Ja\x00ne"}),
        ("AccessionNumber", {"accession": "AC\x00C-1"}),
        ("BodyPartExamined", {"body_part": "CHE\x00ST"}),
        ("PatientID", {"mrn": "M" * 65}),
        ("PatientName", {"patient_name": "D" * 65 + "^Jane"}),
        ("AccessionNumber", {"accession": "A" * 17}),
        ("BodyPartExamined", {"body_part": "CHEST" + "X" * 12}),
    ],
)
def test_nul_or_over_length_identifiers_are_refused_naming_the_attribute(keyword: str, kwargs: dict) -> None:
    with pytest.raises(InvalidHeaderValue) as refused:
        probe_bytes(synthetic_dicom(**kwargs))
    assert refused.value.code == "invalid_header_value"
    assert keyword in refused.value.message


def test_values_at_their_vr_limit_and_trailing_nul_padding_are_accepted() -> None:
    header = probe_bytes(synthetic_dicom(mrn="M" * 63 + "\x00", accession="A" * 16, patient_name="D" * 62 + "^J"))
    assert header.metadata["patient_id"] == "M" * 63
    assert header.metadata["accession_number"] == "A" * 16


def test_every_shared_dicom_passes_the_header_check(dicom_dir) -> None:
    import pydicom

    from classifier.imaging.header_values import check_header_values

    files = sorted(dicom_dir.glob("*.dcm"))
    assert files
    for path in files:
        check_header_values(pydicom.dcmread(path, stop_before_pixels=True, force=True))
