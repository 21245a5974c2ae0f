"""De-identification (PS3.15 Basic Profile): identifiers gone, UIDs pseudonymised
deterministically per salt, pixels untouched."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from classifier.imaging import SuspiciousFile, decode_bytes, deidentify, deidentify_bytes

from .conftest import CR_IMAGE_STORAGE, build_dataset, dataset_bytes, gradient_u16

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def identified() -> Dataset:
    referring = Dataset()
    referring.ReferringPhysicianName = "Who^Doctor"
    referring.ReferencedSOPInstanceUID = "1.2.3.4.5.6"
    referring.ReferencedSOPClassUID = CR_IMAGE_STORAGE
    referring.StudyDate = "20240101"
    ds = build_dataset(
        gradient_u16(), PatientName="Doe^Jane", PatientID="MRN12345", PatientBirthDate="19700131",
        PatientSex="F", PatientAddress="1 Main St", InstitutionName="General Hospital",
        InstitutionAddress="2 Hospital Rd", ReferringPhysicianName="Who^Doctor",
        PerformingPhysicianName="Ray^Radiographer", OperatorsName="Op^Erator",
        AccessionNumber="ACC999", StudyID="S1", StudyDate="20240101", StudyTime="101010",
        SeriesDate="20240101", AcquisitionDateTime="20240101101010", ImageComments="Jane, bed 4",
        StationName="XR-ROOM-2", DeviceSerialNumber="SN42", StudyDescription="CHEST PA Jane",
        OtherPatientIDs="OLD-1", ReferencedStudySequence=Sequence([referring]))
    ds.add_new(0x00091010, "LO", "private identifying note")
    ds.add_new(0x60003000, "OW", b"\x00\x01" * 8)  # overlay data
    return ds


IDENTIFYING_VALUES = ["Doe^Jane", "MRN12345", "19700131", "1 Main St", "General Hospital",
                      "Who^Doctor", "Ray^Radiographer", "ACC999", "20240101", "Jane, bed 4",
                      "XR-ROOM-2", "SN42", "OLD-1", "private identifying note"]


def all_values(ds: Dataset) -> list[str]:
    values: list[str] = []
    for elem in ds.iterall():
        if elem.VR not in ("SQ", "OB", "OW"):
            values.append(str(elem.value))
    return values


def test_identifying_attributes_are_removed_or_blanked() -> None:
    clean = deidentify(identified(), salt="s3cret")
    text = " ".join(all_values(clean))
    for value in IDENTIFYING_VALUES:
        assert value not in text, value
    assert clean.PatientName == "" and clean.PatientBirthDate == "" and clean.StudyDate == ""
    assert "InstitutionName" not in clean and "ImageComments" not in clean
    assert not any(elem.tag.is_private for elem in clean.iterall())
    assert 0x60003000 not in clean
    assert clean.PatientIdentityRemoved == "YES" and clean.DeidentificationMethod
    assert clean.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    assert clean.PatientID.startswith("ANON-") and clean.PatientID != "MRN12345"


def test_uids_are_replaced_deterministically_per_salt() -> None:
    original = identified()
    first, again = deidentify(original, salt="a"), deidentify(original, salt="a")
    other = deidentify(original, salt="b")
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        assert getattr(first, keyword) != getattr(original, keyword)
        assert getattr(first, keyword) == getattr(again, keyword)
        assert getattr(first, keyword) != getattr(other, keyword)
        assert len(getattr(first, keyword)) <= 64
    nested = first.ReferencedStudySequence[0]
    assert nested.ReferencedSOPInstanceUID != "1.2.3.4.5.6"
    assert nested.ReferencedSOPClassUID == CR_IMAGE_STORAGE  # well-known UIDs stay
    assert first.SOPClassUID == CR_IMAGE_STORAGE
    assert first.file_meta.MediaStorageSOPInstanceUID == first.SOPInstanceUID
    assert first.PatientID == again.PatientID != other.PatientID


def test_original_is_unchanged_and_pixels_intact() -> None:
    original = identified()
    clean = deidentify(original, salt="s")
    assert original.PatientName == "Doe^Jane" and 0x00091010 in original
    assert clean.PixelData == original.PixelData


def test_salt_is_required() -> None:
    with pytest.raises(ValueError):
        deidentify(identified(), salt="")


def test_deidentify_bytes_round_trip_keeps_image() -> None:
    data = dataset_bytes(identified())
    clean = deidentify_bytes(data, salt="s")
    assert b"Doe^Jane" not in clean and b"MRN12345" not in clean and b"General Hospital" not in clean
    before, after = decode_bytes(data), decode_bytes(clean)
    np.testing.assert_array_equal(before.pixels, after.pixels)
    assert after.metadata["patient_name"] is None
    assert pydicom.dcmread(io.BytesIO(clean)).PatientIdentityRemoved == "YES"


def test_deidentify_bytes_on_real_files(dicom_dir: Path) -> None:
    for name in ("CR-MONO1-10-chest.dcm", "SIIM_Fake_MONOHR1.dcm"):
        data = (dicom_dir / name).read_bytes()
        clean = deidentify_bytes(data, salt="s")
        assert clean[128:132] == b"DICM"
        np.testing.assert_array_equal(decode_bytes(data).pixels, decode_bytes(clean).pixels)


def test_deidentify_bytes_refuses_executable_preamble() -> None:
    with pytest.raises(SuspiciousFile):
        deidentify_bytes(dataset_bytes(identified(), preamble=b"MZ" + bytes(126)), salt="s")
