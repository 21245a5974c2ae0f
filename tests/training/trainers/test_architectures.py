"""Architectures: every name builds, outputs logits, names a Grad-CAM layer."""

from __future__ import annotations

import numpy as np
import pytest

from training.trainers.architectures import ARCHITECTURES, backbone_layers, build_model, gradcam_layer, unfreeze


@pytest.mark.parametrize("name,size", [("s0_cnn", 32), ("regularised_cnn", 32), ("cxr_net", 32), ("mobilenet_v2", 32)])
def test_build_model_outputs_logits_and_gradcam_layer(name: str, size: int) -> None:
    model = build_model(name, input_shape=(size, size, 1), num_classes=4)
    out = model(np.random.default_rng(0).random((2, size, size, 1)).astype("float32"))
    assert tuple(out.shape) == (2, 4)
    assert model.layers[-1].name == "logits"
    assert model.layers[-1].activation.__name__ == "linear"
    assert len(model.get_layer(gradcam_layer(model)).output.shape) == 4


def test_unknown_architecture_lists_names() -> None:
    with pytest.raises(ValueError, match="cxr_net"):
        build_model("resnet9000", input_shape=(32, 32, 1), num_classes=4)


def test_imagenet_weights_need_explicit_permission() -> None:
    with pytest.raises(ValueError, match="allow_download"):
        build_model("mobilenet_v2", input_shape=(32, 32, 1), num_classes=4, weights="imagenet")


def test_weights_from_local_file_round_trip(tmp_path) -> None:
    model = build_model("cxr_net", input_shape=(32, 32, 1), num_classes=3)
    path = tmp_path / "w.weights.h5"
    model.save_weights(path)
    again = build_model("cxr_net", input_shape=(32, 32, 1), num_classes=3, weights=str(path))
    x = np.random.default_rng(1).random((1, 32, 32, 1)).astype("float32")
    np.testing.assert_allclose(model(x), again(x), atol=1e-6)


def test_backbone_frozen_then_unfreeze_leaves_batchnorm_frozen() -> None:
    model = build_model("mobilenet_v2", input_shape=(32, 32, 1), num_classes=4)
    layers = backbone_layers(model)
    assert layers and not any(layer.trainable for layer in layers)
    assert model.get_layer("logits").trainable
    changed = unfreeze(model, 20)
    assert 0 < changed < 20
    assert all(not layer.trainable for layer in layers[-20:] if layer.__class__.__name__ == "BatchNormalization")


@pytest.mark.parametrize(
    "name", [n for n in ARCHITECTURES if n not in ("s0_cnn", "regularised_cnn", "cxr_net", "mobilenet_v2")]
)
def test_build_other_backbones(name: str) -> None:
    size = 75 if name in ("xception", "inception_resnet_v2") else 32
    model = build_model(name, input_shape=(size, size, 1), num_classes=4)
    assert model.output_shape == (None, 4)
