"""The training target of each ground-truth label: one rule for runs and experiments.

Labels inside the model's schema are one-hot. "Pneumonia, cause unknown" (``PNEUMONIA``:
RSNA-confirmed NIH opacities from before 2020 and Pneumocystis web cases) has no output
class: it teaches "abnormal, not COVID-19" as half bacterial, half viral. Django-free.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

SOFT_TARGETS: Mapping[str, Mapping[str, float]] = {
    "PNEUMONIA": {"PNEUMONIA_BACTERIAL": 0.5, "PNEUMONIA_VIRAL": 0.5},
}


def targets(labels: Sequence[str], item_labels: Sequence[str]) -> np.ndarray:
    """Soft target rows (n, k) in ``labels`` order; a label the schema cannot express raises ValueError."""
    rows = np.zeros((len(item_labels), len(labels)), dtype=np.float32)
    index = {name: i for i, name in enumerate(labels)}
    for row, label in enumerate(item_labels):
        for name, weight in SOFT_TARGETS.get(str(label), {str(label): 1.0}).items():
            if name not in index:
                raise ValueError(f"label {name} is not in the model's schema")
            rows[row, index[name]] = weight
    return rows
