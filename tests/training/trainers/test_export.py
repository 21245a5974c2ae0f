"""Export: TFLite parity and immutable artifact directories."""

from __future__ import annotations

import numpy as np
import pytest

from training.trainers.architectures import build_model
from training.trainers.export import export_tflite, tflite_parity, write_artifact


@pytest.fixture(scope="module")
def small_model():
    return build_model("cxr_net", input_shape=(32, 32, 1), num_classes=4)


def test_float_tflite_matches_keras(small_model, tmp_path) -> None:
    path = export_tflite(small_model, tmp_path / "m.tflite")
    x = np.random.default_rng(0).random((4, 32, 32, 1), dtype=np.float32)
    assert tflite_parity(small_model, path, x) <= 1e-4


def test_write_artifact_refuses_existing_non_empty_dir(small_model, tmp_path) -> None:
    from classifier.imaging.preprocess import PreprocessConfig

    target = tmp_path / "v1"
    target.mkdir()
    (target / "something").write_text("x")
    with pytest.raises(FileExistsError):
        write_artifact(
            target,
            model=small_model,
            preprocess_config=PreprocessConfig(),
            labels=["A"] * 4,
            thresholds={"abnormal": 0.5},
            metrics={},
            model_card_md="",
        )
    assert [p.name for p in target.iterdir()] == ["something"]
