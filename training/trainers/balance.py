"""Sampling probabilities that stop source, age group and label predicting each other.

In the public data every source is nearly one label (JSRT and NIH normals, Hannover and
COVID-CXNet COVID-19, Kermany the only children and the only bacterial/viral labels), so
a model fitted to the raw counts learns "which collection is this" (measured: adult
normals from unseen hospitals flagged as COVID-19). The sampling rule, applied top down:

1. groups (e.g. pediatric, adult) get ``group_weights`` (default equal);
2. inside each group, normal and abnormal get half each (when both exist), so the age
   group does not predict "abnormal";
3. inside each of those halves, every label present gets an equal share (COVID-19 as
   much as pneumonia of unknown cause);
4. inside each label, every source gets an equal share (513 COVID-CXNet web images no
   more than 238 Hannover films), and inside a (source, label) cell every image the same.

The result is one probability per image; ``sample_epochs`` draws the training order.
Django- and TensorFlow-free.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np

NORMAL = "NORMAL"


def cell_probabilities(
    groups: Sequence[str],
    sources: Sequence[str],
    labels: Sequence[str],
    *,
    group_weights: Mapping[str, float] | None = None,
) -> np.ndarray:
    """Per-image sampling probability (sums to 1) by the rule in the module docstring."""
    n = len(labels)
    if not (len(groups) == len(sources) == n) or n == 0:
        raise ValueError("groups, sources and labels must be non-empty and of equal length")
    tree: dict[str, dict[bool, dict[str, dict[str, list[int]]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    )
    for i, (group, source, label) in enumerate(zip(groups, sources, labels, strict=True)):
        tree[group][label != NORMAL][label][source].append(i)
    weights = dict(group_weights or {})
    raw = {g: float(weights.get(g, 1.0)) for g in tree}
    if any(w < 0 for w in raw.values()) or sum(raw.values()) <= 0:
        raise ValueError("group weights must be non-negative and not all zero")
    total = sum(raw.values())
    p = np.zeros(n, np.float64)
    for group, halves in tree.items():
        g_share = raw[group] / total
        for by_label in halves.values():
            h_share = g_share / len(halves)
            for by_source in by_label.values():
                l_share = h_share / len(by_label)
                for rows in by_source.values():
                    p[rows] = l_share / len(by_source) / len(rows)
    return p / p.sum()


def sample_epochs(p: np.ndarray, *, epoch_size: int, epochs: int, seed: int) -> np.ndarray:
    """(epochs, epoch_size) image indices drawn with replacement from ``p``; epoch ``e``'s
    row depends only on (seed, e), so a resumed run draws the epochs it has not run yet
    exactly as an uninterrupted run would."""
    if epoch_size < 1 or epochs < 1:
        raise ValueError("epoch_size and epochs must be >= 1")
    rows = [np.random.default_rng([seed, e]).choice(len(p), size=epoch_size, p=p) for e in range(epochs)]
    return np.stack(rows).astype(np.int64)


def describe(p: np.ndarray, sources: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    """Share of the draws per ``source/label`` cell (for the run record and the model card)."""
    shares: dict[str, float] = defaultdict(float)
    for prob, source, label in zip(p, sources, labels, strict=True):
        shares[f"{source}/{label}"] += float(prob)
    return {k: round(v, 4) for k, v in sorted(shares.items())}
