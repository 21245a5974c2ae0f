"""The inference pipeline end to end on synthetic PNG bytes.

The images are noise with a blob, not radiographs: the pipelines run with screen=False
(screening is tested in tests/classifier/imaging/test_screening.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from classifier.imaging.errors import ImagingError
from classifier.inference.pipeline import InferencePipeline, clear_pipelines, get_pipeline
from tests.classifier.inference.conftest import blob_images, png_bytes


@pytest.mark.parametrize("runtime", ["tflite", "keras"])
def test_run_gives_probabilities_timings_and_heatmap(artifact_dir, runtime) -> None:
    x, _, _ = blob_images(2, 5)
    result = InferencePipeline(artifact_dir, runtime=runtime, screen=False).run(png_bytes(x[1, ..., 0]))
    assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert result.p_abnormal == pytest.approx(1 - result.probabilities["NORMAL"])
    assert result.flag == (result.p_abnormal >= result.threshold)
    assert {"decode", "preprocess", "model", "heatmap", "total"} <= set(result.timings_ms)
    assert result.heatmap_png.startswith(b"\x89PNG")
    assert result.heatmap_raw.shape == (64, 64) and result.preprocessed.dtype == np.uint8
    assert result.label == "COVID19" and result.flag  # the blob image is abnormal


def test_run_many_matches_run(artifact_dir) -> None:
    x, _, _ = blob_images(5, 6)
    items = [png_bytes(img[..., 0]) for img in x]
    pipeline = InferencePipeline(artifact_dir, heatmap=False, screen=False)
    many = pipeline.run_many(items, batch_size=2)
    single = [pipeline.run(item) for item in items]
    assert len(many) == 5 and many[0].heatmap_png is None
    for a, b in zip(many, single, strict=False):
        assert a.p_abnormal == pytest.approx(b.p_abnormal, abs=1e-5)


def test_a_binary_calibrated_version_serves_its_calibrated_p_abnormal(artifact_dir, tmp_path) -> None:
    """thresholds.json with abnormal_scale/abnormal_bias: p(abnormal) is the logistic of the
    model's binary logit, whatever the temperature (classifier.inference.scores)."""
    import hashlib
    import json
    import shutil

    from scipy.special import expit

    from classifier.inference.scores import binary_logit

    x, _, _ = blob_images(4, 7)
    items = [png_bytes(img[..., 0]) for img in x]
    plain = InferencePipeline(artifact_dir, heatmap=False, screen=False)
    logits = plain.predictor.predict_logits(np.stack([plain._prepare(i, {}, False).image for i in items]))
    calibrated = tmp_path / "v2"
    shutil.copytree(artifact_dir, calibrated)
    thresholds = {"abnormal": 0.5, "temperature": 6.0, "abnormal_scale": 0.5, "abnormal_bias": -0.25}
    (calibrated / "thresholds.json").write_text(json.dumps(thresholds))
    manifest = json.loads((calibrated / "manifest.json").read_text())
    manifest["files"]["thresholds.json"] = hashlib.sha256((calibrated / "thresholds.json").read_bytes()).hexdigest()
    (calibrated / "manifest.json").write_text(json.dumps(manifest))
    results = InferencePipeline(calibrated, heatmap=False, screen=False).run_many(items, batch_size=4)
    expected = expit(0.5 * binary_logit(logits, plain.labels) - 0.25)
    assert [r.p_abnormal for r in results] == pytest.approx(expected.tolist(), abs=1e-5)
    assert all(r.flag == (r.p_abnormal >= 0.5) for r in results)


def test_decode_errors_propagate_as_imaging_error(artifact_dir) -> None:
    with pytest.raises(ImagingError):
        InferencePipeline(artifact_dir, heatmap=False).run(b"not an image at all")


def test_get_pipeline_caches_per_artifact_and_runtime(artifact_dir) -> None:
    clear_pipelines()
    first = get_pipeline(artifact_dir, "tflite")
    assert get_pipeline(artifact_dir, "tflite") is first
    assert get_pipeline(artifact_dir, "keras") is not first
    clear_pipelines()


def test_importing_packages_does_not_import_tensorflow() -> None:
    code = (
        "import sys, classifier.inference, classifier.inference.pipeline, "
        "classifier.inference.runtime, classifier.inference.gradcam, training.trainers, "
        "training.trainers.train, training.trainers.export, training.trainers.recipes, "
        "training.trainers.experiments, training.trainers.architectures; "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_serving_a_pooled_head_model_with_heatmaps_never_imports_tensorflow(tmp_path) -> None:
    """The TFLite worker path, heatmaps included, runs without TensorFlow or Keras (a
    pool process stays at a few hundred MB and starts in a second or two)."""
    from tests.conftest import build_tiny_artifact, synthetic_png

    artifact = build_tiny_artifact(tmp_path / "cxr_net", architecture="cxr_net")
    image = tmp_path / "chest.png"
    image.write_bytes(synthetic_png(96))
    code = (
        "import sys; from classifier.inference.pipeline import InferencePipeline; "
        f"p = InferencePipeline({str(artifact)!r}, threads=2); assert p.head is not None; "
        f"r = p.run(open({str(image)!r}, 'rb').read()); assert r.heatmap_png and r.display_png; "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[3])
