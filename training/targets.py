"""The training target rule: a stored label -> a soft target row over the model's classes.

Django-free (plain label strings), so the trainer and the run services share it without
importing each other.
"""

from __future__ import annotations

import numpy as np

# "Pneumonia, cause unknown" has no output class: it teaches "abnormal, non-COVID" as a
# soft target spread over the bacterial and viral classes (NIH adults, pre-2020).
SOFT_TARGETS: dict[str, dict[str, float]] = {
    "PNEUMONIA": {"PNEUMONIA_BACTERIAL": 0.45, "PNEUMONIA_VIRAL": 0.45, "COVID19": 0.1},
}


def targets(labels: list[str], item_labels: list[str]) -> np.ndarray:
    """Soft target rows (n, k) in ``labels`` order; unknown labels raise ValueError."""
    rows = np.zeros((len(item_labels), len(labels)), dtype=np.float32)
    for row, label in enumerate(item_labels):
        spread = SOFT_TARGETS.get(label, {label: 1.0})
        for name, weight in spread.items():
            if name not in labels:
                raise ValueError(f"label {name} is not in the model's schema")
            rows[row, labels.index(name)] = weight
    return rows
