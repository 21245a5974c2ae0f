"""Preprocessing steps on generated arrays, and the pipeline's contract."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from classifier.imaging import (
    PreprocessConfig,
    apply_clahe,
    decode_file,
    lung_crop,
    lung_crop_box,
    normalise,
    pad_square,
    preprocess,
    preprocess_with_stages,
    resize_fit,
    resize_pad,
    save_stages,
)


def synthetic_chest(height: int = 600, width: int = 500) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Dark background, bright body, two dark lungs; returns image and the lungs' box."""
    img = np.full((height, width), 0.05, dtype=np.float32)
    cv2.ellipse(img, (width // 2, height // 2), (int(width * 0.42), int(height * 0.46)), 0, 0, 360, 0.8, -1)
    lungs = [
        ((int(width * 0.33), int(height * 0.45)), (int(width * 0.12), int(height * 0.25))),
        ((int(width * 0.67), int(height * 0.45)), (int(width * 0.12), int(height * 0.25))),
    ]
    for centre, axes in lungs:
        cv2.ellipse(img, centre, axes, 0, 0, 360, 0.25, -1)
    x0 = lungs[0][0][0] - lungs[0][1][0]
    x1 = lungs[1][0][0] + lungs[1][1][0]
    y0 = lungs[0][0][1] - lungs[0][1][1]
    y1 = lungs[0][0][1] + lungs[0][1][1]
    noise = np.random.default_rng(0).normal(0, 0.01, img.shape).astype(np.float32)
    return np.clip(img + noise, 0, 1), (x0, y0, x1, y1)


def test_resize_fit_keeps_aspect_ratio() -> None:
    out = resize_fit(np.ones((200, 400), np.float32), 224)
    assert out.shape == (112, 224)
    assert resize_fit(np.ones((1000, 250), np.float32), 224).shape == (224, 56)


def test_resize_upscales_small_images() -> None:
    assert resize_fit(np.ones((50, 100), np.float32), 224).shape == (112, 224)


def test_pad_centres_content_on_zero() -> None:
    padded = pad_square(np.ones((112, 224), np.float32), 224)
    assert padded.shape == (224, 224)
    rows = np.nonzero(padded.any(axis=1))[0]
    assert (rows[0], rows[-1]) == (56, 167)
    assert padded[:56].max() == 0 and padded[168:].max() == 0


def test_resize_pad_combines_both() -> None:
    out = resize_pad(np.ones((300, 100), np.float32), 224)
    cols = np.nonzero(out.any(axis=0))[0]
    assert out.shape == (224, 224) and (cols[0], cols[-1] + 1) == (74, 149)


def _high_pass_energy(img: np.ndarray) -> float:
    img = img.astype(np.float32)
    return float(np.abs(img - cv2.blur(img, (9, 9))).mean())


def test_clahe_increases_local_contrast() -> None:
    y, x = np.mgrid[0:256, 0:256]
    texture = 0.02 * np.sin(x / 3.0) * np.sin(y / 4.0)
    img = (0.3 + 0.4 * x / 255.0 + texture).astype(np.float32)
    out = apply_clahe(img, 2.0, 8)
    assert out.dtype == np.float32 and out.shape == img.shape
    assert _high_pass_energy(out) > 1.5 * _high_pass_energy(img)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_clahe_accepts_integer_images(dtype: type) -> None:
    img = (np.random.default_rng(1).random((128, 128)) * np.iinfo(dtype).max * 0.2).astype(dtype)
    out = apply_clahe(img, 2.0, 8)
    assert out.dtype == dtype and out.std() > img.std()


def test_lung_crop_finds_box_around_synthetic_lungs() -> None:
    img, (x0, y0, x1, y1) = synthetic_chest()
    result = lung_crop_box(img)
    assert not result.fallback, result.reason
    bx0, by0, bx1, by1 = result.box
    assert bx0 <= x0 and by0 <= y0 and bx1 >= x1 and by1 >= y1  # contains both lungs
    assert (bx1 - bx0) < 0.9 * img.shape[1] and (by1 - by0) < 0.9 * img.shape[0]
    assert lung_crop(img).shape == (by1 - by0, bx1 - bx0)


def test_lung_crop_falls_back_on_uniform_image() -> None:
    img = np.full((300, 300), 0.5, np.float32)
    result = lung_crop_box(img)
    assert result.fallback and result.box == (0, 0, 300, 300) and result.reason
    assert lung_crop(img).shape == img.shape


def test_lung_crop_falls_back_when_no_enclosed_dark_region() -> None:
    img = np.tile(np.linspace(0, 1, 300, dtype=np.float32), (300, 1))
    assert lung_crop_box(img).fallback


@pytest.mark.parametrize("mode, low, high", [("zero_one", 0.0, 1.0), ("minus_one_one", -1.0, 1.0)])
def test_normalise_ranges(mode: str, low: float, high: float) -> None:
    img = np.linspace(0, 1, 100, dtype=np.float32).reshape(10, 10)
    out = normalise(img, mode, 1)
    assert out.shape == (10, 10, 1) and out.dtype == np.float32
    assert out.min() == pytest.approx(low) and out.max() == pytest.approx(high)


def test_normalise_imagenet_and_channel_replication() -> None:
    img = np.full((4, 4), 0.5, np.float32)
    out = normalise(img, "imagenet", 3)
    assert out.shape == (4, 4, 3)
    expected = (0.5 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(out[0, 0], expected, rtol=1e-5)
    replicated = normalise(img, "zero_one", 3)
    assert np.array_equal(replicated[..., 0], replicated[..., 2])


def test_config_round_trip_and_validation() -> None:
    config = PreprocessConfig(input_size=256, channels=3, normalisation="imagenet")
    assert PreprocessConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    defaults = PreprocessConfig()
    assert (defaults.input_size, defaults.channels, defaults.clahe, defaults.lung_crop, defaults.normalisation) == (
        224,
        1,
        True,
        True,
        "zero_one",
    )
    assert defaults.version
    with pytest.raises(ValueError):
        PreprocessConfig.from_dict({"input_size": 224, "colour": True})
    with pytest.raises(ValueError):
        PreprocessConfig(channels=2)
    with pytest.raises(ValueError):
        PreprocessConfig(normalisation="z-score")


@pytest.mark.parametrize(
    "config",
    [
        PreprocessConfig(),
        PreprocessConfig(channels=3, normalisation="imagenet", input_size=160),
        PreprocessConfig(lung_crop=False, clahe=False, normalisation="minus_one_one"),
    ],
)
def test_preprocess_shape_determinism_and_stage_equivalence(config: PreprocessConfig) -> None:
    img, _ = synthetic_chest()
    first = preprocess(img, config)
    assert first.shape == (config.input_size, config.input_size, config.channels)
    assert first.dtype == np.float32
    assert np.array_equal(first, preprocess(img.copy(), config))
    staged, reports = preprocess_with_stages(img, config)
    assert np.array_equal(first, staged)
    names = [r.name for r in reports]
    assert names[-2:] == ["pad", "normalise"] and "resize" in names
    assert ("lung_crop" in names) == config.lung_crop and ("clahe" in names) == config.clahe


def test_preprocess_accepts_integer_input_and_does_not_modify_it() -> None:
    img = (synthetic_chest()[0] * 255).astype(np.uint8)
    before = img.copy()
    out = preprocess(img)
    assert np.array_equal(img, before)
    assert out.min() >= 0.0 and out.max() <= 1.0
    with pytest.raises(ValueError):
        preprocess(np.zeros((4, 4, 3), np.float32))


def test_stage_reports_are_json_and_images_save(tmp_path: Path) -> None:
    img, _ = synthetic_chest()
    _, reports = preprocess_with_stages(img)
    crop = reports[0]
    assert crop.name == "lung_crop" and crop.summary["fallback"] is False
    assert len(crop.summary["box"]) == 4 and crop.elapsed_ms >= 0
    json.dumps([r.to_dict() for r in reports])
    for report in reports:
        assert report.debug_image.dtype == np.uint8
    paths = save_stages(reports, tmp_path / "stages")
    assert next(p.name for p in paths) == "01_lung_crop.png"
    assert all(Image.open(p).size[0] > 0 for p in paths)


def test_real_radiographs_preprocess(cxr_files: list[Path], dicom_dir: Path) -> None:
    for path in [*cxr_files[::60], dicom_dir / "RG1_J2KI.dcm"]:
        out, reports = preprocess_with_stages(decode_file(path).pixels)
        assert out.shape == (224, 224, 1) and np.isfinite(out).all()
        assert reports[0].summary["box"][2] > 0


def test_chan_vese_matches_scikit_image_reference(cxr_files: list[Path]) -> None:
    import skimage.segmentation.morphsnakes as morphsnakes

    from classifier.imaging.lungcrop import _downscale, chan_vese

    for path in cxr_files[::90]:
        small = _downscale(decode_file(path).pixels, 256)
        init = small < small.mean()
        # skimage alternates its curvature operators through a module-global cycle;
        # start it afresh so the reference is the documented algorithm.
        morphsnakes._curvop = morphsnakes._fcycle(
            [
                lambda u: morphsnakes.sup_inf(morphsnakes.inf_sup(u)),
                lambda u: morphsnakes.inf_sup(morphsnakes.sup_inf(u)),
            ]
        )
        expected = morphsnakes.morphological_chan_vese(small, 6, init_level_set=init, smoothing=1)
        assert np.array_equal(chan_vese(small, 6, init), expected.astype(bool))
