"""Lung-field network: finds the lungs of real radiographs, diseased ones included."""

from __future__ import annotations

import csv
from collections import Counter

import numpy as np
import pytest

from classifier.imaging.datapaths import data_dir
from classifier.imaging.decode import decode_file
from classifier.imaging.lungfield import DEFAULT_MODEL, lung_field, model_sha256
from classifier.imaging.preprocess import PreprocessConfig, as_unit_float, preprocess, preprocess_with_stages

CONFIG = PreprocessConfig(
    lung_model=DEFAULT_MODEL, lung_model_sha256=model_sha256(DEFAULT_MODEL), lung_mask=True, lung_crop_margin=0.05
)


def _sample(per_label: int = 8) -> list[tuple[str, object]]:
    root = data_dir() / "cxr"
    assert (root / "manifest.csv").is_file(), f"shared data missing at {root} (set CXR_DATA_DIR)"
    rows: dict[str, list] = {}
    with (root / "manifest.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            rows.setdefault(row["label"], []).append(root / row["file"])
    return [(label, path) for label, paths in sorted(rows.items()) for path in paths[::7][:per_label]]


def test_lung_field_is_found_whatever_the_label() -> None:
    """The heuristic fell back for ~half the pneumonias; the network must not depend on the label."""
    found: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for label, path in _sample():
        result = lung_field(as_unit_float(decode_file(str(path)).pixels), model=DEFAULT_MODEL)
        total[label] += 1
        found[label] += not result.fallback
        if not result.fallback:
            assert 0.1 < result.area_fraction < 0.7
            x0, y0, x1, y1 = result.box
            assert x1 - x0 > 0.3 * result.shape[1] and y1 - y0 > 0.3 * result.shape[0]
    for label in total:
        assert found[label] / total[label] >= 0.85, (label, found, total)


def test_mask_is_sampled_over_any_crop_of_the_image() -> None:
    _, path = _sample(1)[0]
    result = lung_field(as_unit_float(decode_file(str(path)).pixels), model=DEFAULT_MODEL)
    whole = result.mask()
    assert whole.shape == result.shape and whole.dtype == bool
    x0 = result.box[0]
    assert result.mask(result.box).sum() == pytest.approx(whole.sum(), rel=0.02)  # the box holds the field
    assert result.mask((0, 0, 10, 10), (5, 5)).shape == (5, 5)
    assert not whole[:, : max(0, x0 - 2)].any()


def test_uniform_image_falls_back_and_a_changed_model_file_is_refused() -> None:
    blank = lung_field(np.full((300, 200), 0.5, np.float32), model=DEFAULT_MODEL)
    assert blank.fallback and blank.reason == "uniform image" and blank.box == (0, 0, 200, 300)
    with pytest.raises(ValueError, match="sha256"):
        lung_field(np.random.default_rng(0).random((64, 64), np.float32), model=DEFAULT_MODEL, sha256="0" * 64)


def test_masked_input_is_black_outside_the_dilated_lung_field() -> None:
    _, path = _sample(1)[0]
    pixels = decode_file(str(path)).pixels
    out, reports = preprocess_with_stages(pixels, CONFIG)
    assert [r.name for r in reports] == ["lung_crop", "resize", "clahe", "lung_mask", "pad", "normalise"]
    assert np.array_equal(out, preprocess(pixels, CONFIG))
    unmasked = preprocess(pixels, PreprocessConfig(**{**CONFIG.to_dict(), "lung_mask": False}))
    zeroed = (out[..., 0] == 0) & (unmasked[..., 0] > 0.05)
    assert 0.05 < zeroed.mean() < 0.7  # something outside the lungs went, the lungs stayed
    assert reports[0].summary["fallback"] is False


def test_lung_mask_needs_a_lung_model() -> None:
    with pytest.raises(ValueError, match="lung_model"):
        PreprocessConfig(lung_mask=True)
