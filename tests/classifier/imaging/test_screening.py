"""Screening refuses what is not a chest radiograph and passes every real one."""

from __future__ import annotations

import pytest

from classifier.imaging import ImagingError, decode_bytes
from classifier.imaging.screening import screen_radiograph
from tests.classifier.imaging.negatives import negatives
from tests.conftest import synthetic_dicom, synthetic_png

NEGATIVES = negatives()


@pytest.mark.parametrize("name", sorted(NEGATIVES))
def test_non_radiographs_are_refused_with_a_reason(name: str) -> None:
    data, code = NEGATIVES[name]
    with pytest.raises(ImagingError) as refused:
        screen_radiograph(decode_bytes(data))
    assert refused.value.code == code
    assert "not analysed" in refused.value.message


def test_every_real_radiograph_of_the_shared_data_passes(cxr_files, dicom_dir) -> None:
    files = list(cxr_files) + sorted(dicom_dir.glob("*.dcm"))
    assert len(files) > 400
    refused = {}
    for path in files:
        try:
            screen_radiograph(decode_bytes(path.read_bytes()))
        except ImagingError as exc:
            refused[path.name] = exc.message
    assert refused == {}


def test_the_synthetic_chest_images_the_tests_upload_pass() -> None:
    for data in (synthetic_png(96), synthetic_png(96, bits=16), synthetic_dicom()):
        screen_radiograph(decode_bytes(data))
