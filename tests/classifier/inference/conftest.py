"""A tiny trained model and its artifact directory, shared by the inference tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SIZE = 64
LABELS = ["NORMAL", "PNEUMONIA_BACTERIAL", "PNEUMONIA_VIRAL", "COVID19"]


def blob_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float images in [0, 1]; label 3 ("COVID19") has a bright 14 px blob at a random
    place, label 0 has none.  Returns images, labels and blob masks."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.1, 0.4, size=(n, SIZE, SIZE, 1)).astype(np.float32)
    y = np.where(np.arange(n) % 2 == 0, 0, 3)
    masks = np.zeros((n, SIZE, SIZE), bool)
    for i in np.flatnonzero(y == 3):
        r, c = rng.integers(4, SIZE - 18, size=2)
        masks[i, r : r + 14, c : c + 14] = True
        x[i, r : r + 14, c : c + 14, 0] = 0.95
    return x, y, masks


@pytest.fixture(scope="session")
def trained_model():
    import keras

    from training.trainers.architectures import build_model

    keras.utils.set_random_seed(0)
    model = build_model("s0_cnn", input_shape=(SIZE, SIZE, 1), num_classes=4, dropout=0.0)
    model.compile(
        optimizer=keras.optimizers.Adam(2e-3), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    x, y, _ = blob_images(256, 0)
    model.fit(x, y, epochs=4, batch_size=32, verbose=0)
    return model


@pytest.fixture(scope="session")
def artifact_dir(trained_model, tmp_path_factory) -> Path:
    from classifier.imaging.preprocess import PreprocessConfig
    from training.trainers.export import write_artifact

    out = tmp_path_factory.mktemp("artifacts") / "v1"
    config = PreprocessConfig(input_size=SIZE, channels=1, clahe=False, lung_crop=False)
    x, _, _ = blob_images(8, 1)
    write_artifact(
        out,
        model=trained_model,
        preprocess_config=config,
        labels=LABELS,
        thresholds={"abnormal": 0.5, "temperature": 1.0},
        metrics={"note": "synthetic"},
        model_card_md="# test model\n",
        parity_x=x,
    )
    return out


def png_bytes(image: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.clip(image * 255, 0, 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()
