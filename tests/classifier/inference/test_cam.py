"""Closed-form Grad-CAM: equal to the GradientTape map, from the served model's own pass.

Models are untrained (random weights, seeded): the identity being tested holds for any
weights, and a fresh model keeps the test fast.  Each architecture family is covered:
cxr_net (GAP -> Dropout -> Dense), regularised_cnn (GAP -> Dense relu -> Dropout ->
Dense) and s0_cnn (pool -> Flatten -> Dense: no closed form, tape fallback).

The images are noise with a blob, not radiographs: the pipelines run with screen=False
(screening is tested in tests/classifier/imaging/test_screening.py).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from classifier.inference.cam import PooledHead, tflite_with_features
from classifier.inference.gradcam import default_layer, gradcam_batch
from tests.classifier.inference.conftest import LABELS, SIZE, blob_images, png_bytes


def _model(name: str):
    import keras

    from training.trainers.architectures import build_model

    keras.utils.set_random_seed(7)
    return build_model(name, input_shape=(SIZE, SIZE, 1), num_classes=4, dropout=0.3)


def _artifact(model, out: Path) -> Path:
    from classifier.imaging.preprocess import PreprocessConfig
    from training.trainers.export import write_artifact

    x, _, _ = blob_images(4, 1)
    write_artifact(
        out,
        model=model,
        preprocess_config=PreprocessConfig(input_size=SIZE, channels=1, clahe=False, lung_crop=False),
        labels=LABELS,
        thresholds={"abnormal": 0.5, "temperature": 1.0},
        metrics={},
        model_card_md="# test\n",
        parity_x=x,
    )
    return out


@pytest.fixture(scope="module", params=["cxr_net", "regularised_cnn"])
def pooled(request, tmp_path_factory):
    model = _model(request.param)
    return model, _artifact(model, tmp_path_factory.mktemp(request.param))


def test_keras_head_reproduces_logits_and_tape_gradcam(pooled) -> None:
    import keras

    model, _ = pooled
    layer = default_layer(model)
    head = PooledHead.from_keras(model, layer)
    assert head is not None
    x, _, _ = blob_images(6, 2)
    features = np.asarray(keras.Model(model.input, model.get_layer(layer).output)(x, training=False))
    logits = np.asarray(model(x, training=False))
    assert head.matches(features, logits)
    classes = np.array([0, 1, 2, 3, 1, 3])
    closed = head.cam(features, classes, (SIZE, SIZE))
    tape = gradcam_batch(model, x, list(classes))
    assert closed.shape == tape.shape == (6, SIZE, SIZE)
    assert np.abs(closed - tape).max() < 1e-4


def test_tflite_with_features_keeps_logits_bit_for_bit(pooled) -> None:
    from ai_edge_litert.interpreter import Interpreter

    model, artifact = pooled
    original = (artifact / "model.tflite").read_bytes()
    exposed = tflite_with_features(original)
    assert exposed is not None
    content, head = exposed
    x, _, _ = blob_images(3, 5)

    def run(model_content: bytes) -> list[np.ndarray]:
        interpreter = Interpreter(model_content=model_content)
        interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], list(x.shape))
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        interpreter.invoke()
        return [interpreter.get_tensor(o["index"]) for o in interpreter.get_output_details()]

    (plain,), (logits, features) = run(original), run(content)
    np.testing.assert_array_equal(plain, logits)
    assert features.shape[0] == 3 and features.ndim == 4
    assert head.matches(features, logits)
    tape = gradcam_batch(model, x, [3, 3, 3])
    assert np.abs(head.cam(features, np.array([3, 3, 3]), (SIZE, SIZE)) - tape).max() < 1e-3


@pytest.mark.parametrize("runtime", ["tflite", "keras"])
def test_pipeline_uses_the_closed_form_for_pooled_heads(pooled, runtime) -> None:
    from classifier.inference.pipeline import InferencePipeline

    model, artifact = pooled
    pipeline = InferencePipeline(artifact, runtime=runtime, screen=False)
    assert pipeline.head is not None
    x, _, _ = blob_images(3, 9)
    results = pipeline.run_many([png_bytes(image[..., 0]) for image in x], batch_size=3)
    seen = np.stack([r.preprocessed.astype(np.float32)[..., None] / 255.0 for r in results])
    tape = gradcam_batch(model, seen, [LABELS.index(r.heatmap_class) for r in results])
    for result, expected in zip(results, tape, strict=False):
        assert result.heatmap_png.startswith(b"\x89PNG")
        assert np.abs(result.heatmap_raw - expected).max() < 1e-3


def test_head_that_does_not_reproduce_the_logits_falls_back_to_the_tape(pooled, caplog) -> None:
    from classifier.inference.cam import DenseLayer
    from classifier.inference.pipeline import InferencePipeline

    model, artifact = pooled
    pipeline = InferencePipeline(artifact, screen=False)
    last = pipeline.head.layers[-1]
    pipeline.head = PooledHead((*pipeline.head.layers[:-1], DenseLayer(last.weight * 2, last.bias, last.relu)))
    x, _, _ = blob_images(2, 11)
    with caplog.at_level(logging.ERROR, logger="classifier.inference.pipeline"):
        results = pipeline.run_many([png_bytes(image[..., 0]) for image in x], batch_size=2)
    assert "does not reproduce the logits" in caplog.text
    seen = np.stack([r.preprocessed.astype(np.float32)[..., None] / 255.0 for r in results])
    tape = gradcam_batch(model, seen, [LABELS.index(r.heatmap_class) for r in results])
    for result, expected in zip(results, tape, strict=False):
        np.testing.assert_allclose(result.heatmap_raw, expected, atol=1e-6)


def test_flatten_head_has_no_closed_form(tmp_path: Path) -> None:
    from classifier.inference.pipeline import InferencePipeline

    model = _model("s0_cnn")
    assert PooledHead.from_keras(model, default_layer(model)) is None
    artifact = _artifact(model, tmp_path / "s0")
    assert tflite_with_features((artifact / "model.tflite").read_bytes()) is None
    pipeline = InferencePipeline(artifact, screen=False)
    assert pipeline.head is None
    x, _, _ = blob_images(1, 3)
    assert pipeline.run(png_bytes(x[0, ..., 0])).heatmap_png.startswith(b"\x89PNG")
