"""Train the lung-field network of :mod:`classifier.imaging.lungfield` from the shared data.

    python -m training.trainers.lungfield --name lungfield-v1 [--epochs 14] [--montage out.png]

No image of the shared data has a drawn lung outline, so the targets are pseudo-labels:
the intensity heuristic of :mod:`classifier.imaging.lungcrop` on every image, kept only
where it found two lung-shaped, roughly symmetric components away from the image border
(mostly clear lungs). To stop the network learning "lung = dark", training paints
synthetic opacities into the lungs (blurred blobs up to a whole white lung) while the
target stays the same, and adds the source signatures the classifier must ignore
(borders, text, noise, blur, gamma). The result is exported to
``classifier/imaging/lungfield/<name>.tflite``; an existing file is never overwritten.

Printed: pseudo-label yield per source/label, IoU on held-out pseudo-labels, and the
fallback rate of the trained network per source/label on every image (the point of it:
the rate must not depend on the label). TensorFlow is imported inside functions.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from classifier.imaging.lungfield import INPUT_SIZE, MODEL_DIR, lungs_from_probability, normalise_input

SEED = 20261201


def pseudo_label(img: np.ndarray) -> np.ndarray | None:
    """A (128, 128) uint8 lung mask from the heuristic, or None when it is not trustworthy."""
    from classifier.imaging.lungcrop import _downscale, lung_mask

    small = _downscale(img, 256)
    mask = lung_mask(small)
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count - 1 != 2:
        return None
    h, w = mask.shape
    parts = []
    for i in (1, 2):
        x, y, bw, bh, area = stats[i]
        touches = x <= 1 or y <= 1 or x + bw >= w - 1 or y + bh >= h - 1
        if touches or not 0.03 <= area / mask.size <= 0.3 or bh < 1.1 * bw:
            return None
        parts.append((centroids[i, 0] / w, area, y, y + bh))
    (c0, a0, t0, b0), (c1, a1, t1, b1) = sorted(parts)
    overlap = (min(b0, b1) - max(t0, t1)) / max(b0 - t0, b1 - t1)
    if not (c0 < 0.5 < c1 and 0.4 <= a0 / a1 <= 2.5 and overlap >= 0.6):
        return None
    hull = np.zeros(mask.shape, np.uint8)
    for i in (1, 2):
        cv2.fillConvexPoly(hull, cv2.convexHull(cv2.findNonZero((labels == i).astype(np.uint8))), 1)
    return (cv2.resize(hull, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA) > 0).astype(np.uint8)


def _prepare_one(path: str) -> tuple[np.ndarray, np.ndarray | None] | None:
    from classifier.imaging.decode import decode_file
    from classifier.imaging.preprocess import as_unit_float

    try:
        img = as_unit_float(decode_file(path).pixels)
    except Exception:
        return None
    x = np.clip(np.rint(normalise_input(img) * 255), 0, 255).astype(np.uint8)
    return x, pseudo_label(img)


def prepare(records: list[Any], workers: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inputs uint8 (N,128,128), masks uint8 (N,128,128), has_label bool (N,)) for every record."""
    with ProcessPoolExecutor(workers) as pool:
        results = list(pool.map(_prepare_one, [str(r.path) for r in records], chunksize=32))
    x = np.zeros((len(records), INPUT_SIZE, INPUT_SIZE), np.uint8)
    y = np.zeros_like(x)
    labelled = np.zeros(len(records), bool)
    for i, result in enumerate(results):
        if result is None:
            continue
        x[i] = result[0]
        if result[1] is not None:
            y[i], labelled[i] = result[1], True
    return x, y, labelled


def build_unet() -> Any:
    """A 4-level separable U-Net, (128, 128, 1) -> lung probability (128, 128, 1)."""
    import keras
    from keras import layers

    def block(t: Any, filters: int, name: str) -> Any:
        for k in (1, 2):
            t = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{k}")(t)
            t = layers.BatchNormalization(name=f"{name}_bn{k}")(t)
            t = layers.ReLU(name=f"{name}_relu{k}")(t)
        return t

    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 1), name="image")
    skips, t = [], layers.Conv2D(16, 3, padding="same", activation="relu", name="stem")(inputs)
    for i, filters in enumerate((16, 32, 48, 64)):
        t = block(t, filters, f"down{i}")
        skips.append(t)
        t = layers.MaxPooling2D(name=f"pool{i}")(t)
    t = block(t, 96, "bottom")
    for i, filters in reversed(list(enumerate((16, 32, 48, 64)))):
        t = layers.UpSampling2D(interpolation="bilinear", name=f"up{i}")(t)
        t = layers.Concatenate(name=f"cat{i}")([t, skips[i]])
        t = block(t, filters, f"dec{i}")
    outputs = layers.Conv2D(1, 1, activation="sigmoid", name="lung")(t)
    return keras.Model(inputs, outputs, name="lungfield_unet")


def augment(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One augmented (image, mask) pair; images float32 [0, 1]."""
    s = INPUT_SIZE
    img: np.ndarray = x.astype(np.float32) / 255.0
    mask: np.ndarray = y.astype(np.float32)
    angle, scale = rng.uniform(-12, 12), rng.uniform(0.8, 1.2)
    m: np.ndarray = np.asarray(cv2.getRotationMatrix2D((s / 2, s / 2), angle, scale), dtype=np.float64)
    m[:, 2] += rng.uniform(-0.12, 0.12, 2) * s
    m[0, :2] *= rng.uniform(0.85, 1.15)  # anisotropic: squashed copies and other aspect ratios
    img = cv2.warpAffine(img, m, (s, s), flags=cv2.INTER_LINEAR, borderValue=float(rng.uniform(0, 0.3)))
    mask = cv2.warpAffine(mask, m, (s, s), flags=cv2.INTER_NEAREST, borderValue=0)
    if mask.any() and rng.random() < 0.6:
        img = _paint_opacity(img, mask, rng)
    img = np.clip(img, 1e-4, 1.0) ** np.exp(rng.uniform(-0.4, 0.4))
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.5))
    img = img + rng.normal(0, rng.uniform(0, 0.04), img.shape).astype(np.float32)
    if rng.random() < 0.4:
        _burn_text(img, rng)
    if rng.random() < 0.3:  # a black or white border strip
        side, width = rng.integers(4), int(rng.uniform(0.03, 0.15) * s)
        value = float(rng.random() < 0.5)
        region = [slice(None), slice(None)]
        region[side % 2] = slice(0, width) if side < 2 else slice(s - width, s)
        img[tuple(region)] = value
        mask[tuple(region)] = 0
    return np.clip(img, 0, 1), mask


def _paint_opacity(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brighten part or all of a lung, as consolidation or a white-out does; the lung stays lung."""
    s = INPUT_SIZE
    _, labels = cv2.connectedComponents(mask.astype(np.uint8))
    lung = (labels == rng.integers(1, labels.max() + 1)).astype(np.float32) if labels.max() else mask
    if rng.random() < 0.25:
        region = lung  # a whole lung
    else:
        yy, xx = np.nonzero(lung)
        k = rng.integers(len(yy))
        blob = np.zeros((s, s), np.float32)
        cv2.circle(blob, (int(xx[k]), int(yy[k])), int(rng.uniform(0.08, 0.25) * s), 1.0, -1)
        region = blob * lung
    region = cv2.GaussianBlur(region, (0, 0), rng.uniform(2, 6))
    level = rng.uniform(0.5, 0.95)
    return img + region * np.maximum(level - img, 0) * rng.uniform(0.6, 1.0)


def _burn_text(img: np.ndarray, rng: np.random.Generator) -> None:
    words = ("L", "R", "AP", "PA", "PORTABLE", "SUPINE", "ERECT", "DAY 3", "12:40", "B", "1")
    s = INPUT_SIZE
    stroke = np.zeros((s, s), np.uint8)  # OpenCV draws text on 8-bit images only
    cv2.putText(
        stroke,
        str(rng.choice(words)),
        (int(rng.uniform(0, 0.8) * s), int(rng.uniform(0.08, 1) * s)),
        cv2.FONT_HERSHEY_SIMPLEX,
        rng.uniform(0.25, 0.6),
        255,
        1,
    )
    img[stroke > 0] = float(rng.random() < 0.8)


def _dice_loss(y_true: Any, y_pred: Any) -> Any:
    import keras

    inter = keras.ops.sum(y_true * y_pred, axis=(1, 2, 3))
    total = keras.ops.sum(y_true + y_pred, axis=(1, 2, 3))
    dice = 1 - (2 * inter + 1) / (total + 1)
    bce = keras.ops.mean(keras.losses.binary_crossentropy(y_true, y_pred), axis=(1, 2))
    return dice + bce


def train(x: np.ndarray, y: np.ndarray, *, epochs: int, batch: int = 32, seed: int = SEED) -> Any:
    import keras

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_unet()
    steps = max(1, len(x) // batch)
    schedule = keras.optimizers.schedules.CosineDecay(3e-3, decay_steps=epochs * steps, alpha=0.05)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=_dice_loss)
    for epoch in range(epochs):
        order, losses, t0 = rng.permutation(len(x)), [], time.monotonic()
        for b in range(steps):
            pairs = [augment(x[i], y[i], rng) for i in order[b * batch : (b + 1) * batch]]
            xb = np.stack([p[0] for p in pairs])[..., None]
            yb = np.stack([p[1] for p in pairs])[..., None]
            losses.append(float(model.train_on_batch(xb, yb)))
        print(f"  epoch {epoch + 1}/{epochs} loss {np.mean(losses):.4f} ({time.monotonic() - t0:.0f}s)", flush=True)
    return model


def predict(model: Any, x: np.ndarray) -> np.ndarray:
    out = [model.predict_on_batch(x[i : i + 64].astype(np.float32)[..., None] / 255.0) for i in range(0, len(x), 64)]
    return np.concatenate(out)[..., 0]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def export(model: Any, out: Path) -> Path:
    import tensorflow as tf

    if out.exists():
        raise FileExistsError(f"{out} exists; lung-field models are immutable, choose a new name")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(converter.convert())
    return out


def montage(x: np.ndarray, probs: np.ndarray, tags: list[str], path: Path, n: int = 48) -> None:
    tiles = []
    for i in range(min(n, len(x))):
        tile = cv2.cvtColor(x[i], cv2.COLOR_GRAY2BGR)
        lungs, reason = lungs_from_probability(probs[i])
        contours, _ = cv2.findContours(lungs, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(tile, contours, -1, (0, 0, 255) if reason else (0, 255, 0), 1)
        cv2.putText(tile, tags[i][:18], (2, 10), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (0, 255, 255), 1)
        tiles.append(tile)
    while len(tiles) % 8:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[i : i + 8]) for i in range(0, len(tiles), 8)]
    cv2.imwrite(str(path), np.vstack(rows))


def main(argv: list[str] | None = None) -> None:
    from classifier.imaging.datapaths import data_dir
    from training.trainers.shared_data import load_records

    parser = argparse.ArgumentParser(prog="python -m training.trainers.lungfield")
    parser.add_argument("--name", required=True, help="model name, e.g. lungfield-v1 (a new file)")
    parser.add_argument("--epochs", type=int, default=14)
    parser.add_argument("--montage", type=Path, help="also draw predicted lung fields on sample images")
    args = parser.parse_args(argv)
    out = MODEL_DIR / f"{args.name}.tflite"
    if out.exists():
        parser.error(f"{out} exists; choose a new name")
    records = load_records(data_dir())
    t0 = time.monotonic()
    x, y, labelled = prepare(records)
    print(f"prepared {len(records)} images in {time.monotonic() - t0:.0f}s; pseudo-labelled {labelled.sum()}")
    cells = Counter(f"{r.source}/{r.label}" for r in records)
    kept = Counter(f"{r.source}/{r.label}" for r, ok in zip(records, labelled, strict=True) if ok)
    print("pseudo-label yield: " + ", ".join(f"{k} {kept[k]}/{v}" for k, v in sorted(cells.items())))
    rng = np.random.default_rng(SEED)
    idx = rng.permutation(np.nonzero(labelled)[0])
    held, fit = idx[: len(idx) // 10], idx[len(idx) // 10 :]
    model = train(x[fit], y[fit], epochs=args.epochs)
    probs = predict(model, x)
    ious = [iou(lungs_from_probability(probs[i])[0] > 0, y[i] > 0) for i in held]
    print(f"held-out pseudo-label IoU: mean {np.mean(ious):.3f}, median {np.median(ious):.3f} (n={len(held)})")
    fallback = Counter(
        f"{r.source}/{r.label}" for r, p in zip(records, probs, strict=True) if lungs_from_probability(p)[1]
    )
    print("network fallback: " + ", ".join(f"{k} {fallback[k]}/{v}" for k, v in sorted(cells.items())))
    if args.montage:
        pick = rng.choice(len(records), 48, replace=False)
        montage(x[pick], probs[pick], [f"{records[i].source} {records[i].label}" for i in pick], args.montage)
    print(f"wrote {export(model, out)}")


if __name__ == "__main__":
    main()
