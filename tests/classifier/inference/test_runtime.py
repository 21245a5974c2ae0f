"""Runtimes: verified loading, TFLite/Keras agreement, tamper detection."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from classifier.inference.runtime import ArtifactIntegrityError, Predictor, load_predictor, verify_manifest
from tests.classifier.inference.conftest import blob_images


def test_artifact_has_contract_layout(artifact_dir) -> None:
    names = {p.name for p in artifact_dir.iterdir()}
    assert {
        "model.keras",
        "model.tflite",
        "preprocess.json",
        "labels.json",
        "thresholds.json",
        "metrics.json",
        "model_card.md",
        "manifest.json",
    } <= names
    manifest = verify_manifest(artifact_dir)
    assert set(manifest["files"]) == names - {"manifest.json"}
    assert manifest["tflite"]["parity_max_abs_prob_diff"] <= 1e-4


@pytest.mark.parametrize("runtime", ["tflite", "keras"])
def test_predictors_agree_with_keras_model(artifact_dir, trained_model, runtime) -> None:
    predictor = load_predictor(artifact_dir, runtime, num_threads=1)
    assert isinstance(predictor, Predictor)
    assert predictor.input_shape == (64, 64, 1) and len(predictor.labels) == 4
    x, _, _ = blob_images(5, 2)
    for batch in (x, x[:1], x):  # batch size changes resize the interpreter
        expected = np.asarray(trained_model(batch, training=False))
        np.testing.assert_allclose(predictor.predict_logits(batch), expected, atol=1e-4)


def test_tampered_artifact_is_rejected(artifact_dir, tmp_path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(artifact_dir, copy)
    with open(copy / "thresholds.json", "a") as fh:
        fh.write(" ")
    with pytest.raises(ArtifactIntegrityError, match=r"thresholds\.json"):
        load_predictor(copy)


def test_missing_file_is_rejected(artifact_dir, tmp_path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(artifact_dir, copy)
    (copy / "model.tflite").unlink()
    with pytest.raises(ArtifactIntegrityError, match="missing"):
        load_predictor(copy, "tflite")


def test_unknown_runtime_rejected(artifact_dir) -> None:
    with pytest.raises(ValueError):
        load_predictor(artifact_dir, "onnx")
