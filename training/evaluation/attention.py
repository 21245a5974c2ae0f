"""Where the model looks: the share of Grad-CAM mass inside the lung field.

Computed on abnormal images, where the heatmap should sit on the disease: a map that
lights up the neck, a marker or a border is evidence of a shortcut. NumPy only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["lung_mass_share", "summarise_lung_mass"]


def lung_mass_share(heatmap: np.ndarray, lung: np.ndarray) -> float | None:
    """Fraction of ``heatmap``'s mass (non-negative, same shape as ``lung``) inside ``lung``.

    None when the map has no mass (no region has positive evidence).
    """
    heat = np.clip(np.asarray(heatmap, dtype=np.float64), 0.0, None)
    if heat.shape != np.shape(lung):
        raise ValueError(f"heatmap {heat.shape} and lung mask {np.shape(lung)} differ in shape")
    total = float(heat.sum())
    return None if total <= 0 else float(heat[np.asarray(lung, dtype=bool)].sum() / total)


def summarise_lung_mass(shares: Sequence[float | None], *, target: float = 0.7) -> dict[str, float | int | None]:
    """Median, mean and the fraction of images at or above ``target`` (maps without mass left out)."""
    values = np.array([s for s in shares if s is not None], dtype=np.float64)
    if not values.size:
        return {"n": 0, "median": None, "mean": None, "at_or_above_target": None, "target": target}
    return {
        "n": int(values.size),
        "median": float(np.median(values)),
        "mean": float(values.mean()),
        "at_or_above_target": float((values >= target).mean()),
        "target": target,
    }
