"""The closed-form Grad-CAM holds for EfficientNet-Lite (ImageNet weights) on real radiographs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from classifier.inference.cam import PooledHead, tflite_with_features
from classifier.inference.gradcam import default_layer, gradcam_batch
from tests.training.trainers.test_pretrained import _radiographs

LABELS = ["NORMAL", "PNEUMONIA_BACTERIAL", "PNEUMONIA_VIRAL", "COVID19"]


@pytest.fixture(scope="module")
def lite(tmp_path_factory: pytest.TempPathFactory):
    import keras

    from classifier.imaging.preprocess import PreprocessConfig
    from training.trainers.architectures import build_model
    from training.trainers.export import write_artifact

    keras.utils.set_random_seed(11)
    model = build_model("efficientnet_lite0", input_shape=(224, 224, 1), num_classes=4, weights="imagenet")
    x = _radiographs(4)
    out = tmp_path_factory.mktemp("lite") / "artifact"
    write_artifact(
        out,
        model=model,
        preprocess_config=PreprocessConfig(input_size=224, lung_crop=False),
        labels=LABELS,
        thresholds={"abnormal": 0.5},
        metrics={},
        model_card_md="# t\n",
        parity_x=x,
    )
    return model, out, x


def test_keras_closed_form_equals_the_tape(lite) -> None:
    import keras

    model, _, x = lite
    layer = default_layer(model)
    assert layer == "gradcam_target"
    head = PooledHead.from_keras(model, layer)
    assert head is not None
    features = np.asarray(keras.Model(model.input, model.get_layer(layer).output)(x, training=False))
    assert head.matches(features, np.asarray(model(x, training=False)))
    classes = np.array([1, 2, 3, 3])
    assert np.abs(head.cam(features, classes, (224, 224)) - gradcam_batch(model, x, list(classes))).max() < 1e-5


def test_served_tflite_closed_form_equals_the_tape(lite) -> None:
    from classifier.inference.pipeline import InferencePipeline
    from tests.classifier.inference.conftest import png_bytes

    model, artifact, x = lite
    assert tflite_with_features((Path(artifact) / "model.tflite").read_bytes()) is not None
    pipeline = InferencePipeline(artifact, runtime="tflite")
    assert pipeline.head is not None
    results = pipeline.run_many([png_bytes(image[..., 0]) for image in x], batch_size=4)
    seen = np.stack([r.preprocessed.astype(np.float32)[..., None] / 255.0 for r in results])
    tape = gradcam_batch(model, seen, [LABELS.index(r.heatmap_class) for r in results])
    worst = max(float(np.abs(r.heatmap_raw - t).max()) for r, t in zip(results, tape, strict=True))
    assert worst < 1e-5
