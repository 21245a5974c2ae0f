"""Source/label balancing: no source, age group or label dominates the draws."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from training.trainers.balance import cell_probabilities, describe, sample_epochs

# A miniature of the shared data: every source one or two labels, very unequal counts.
CELLS = {
    ("pediatric", "kermany", "NORMAL"): 60,
    ("pediatric", "kermany", "PNEUMONIA_BACTERIAL"): 50,
    ("pediatric", "kermany", "PNEUMONIA_VIRAL"): 55,
    ("adult", "nih", "NORMAL"): 20,
    ("adult", "jsrt", "NORMAL"): 5,
    ("adult", "nih", "PNEUMONIA"): 8,
    ("adult", "hannover", "COVID19"): 12,
    ("adult", "cxnet", "COVID19"): 40,
}


def _rows() -> tuple[list[str], list[str], list[str]]:
    groups, sources, labels = [], [], []
    for (group, source, label), n in CELLS.items():
        groups += [group] * n
        sources += [source] * n
        labels += [label] * n
    return groups, sources, labels


def test_each_group_is_half_normal_and_sources_share_their_label_equally() -> None:
    groups, sources, labels = _rows()
    p = cell_probabilities(groups, sources, labels)
    assert p.sum() == pytest.approx(1.0)
    share = describe(p, sources, labels)
    assert share["kermany/NORMAL"] == pytest.approx(0.25)  # half of the pediatric half
    assert share["nih/NORMAL"] == pytest.approx(share["jsrt/NORMAL"]) == pytest.approx(0.125)
    assert share["hannover/COVID19"] == pytest.approx(share["cxnet/COVID19"]) == pytest.approx(0.0625)
    assert share["nih/PNEUMONIA"] == pytest.approx(0.125)  # a label as much as COVID-19
    adult = [i for i, g in enumerate(groups) if g == "adult"]
    normal = sum(p[i] for i in adult if labels[i] == "NORMAL")
    assert normal / sum(p[i] for i in adult) == pytest.approx(0.5)  # age does not predict "abnormal"


def test_group_weights_shift_mass_between_groups() -> None:
    groups, sources, labels = _rows()
    p = cell_probabilities(groups, sources, labels, group_weights={"adult": 3, "pediatric": 1})
    assert sum(p[i] for i, g in enumerate(groups) if g == "adult") == pytest.approx(0.75)
    with pytest.raises(ValueError):
        cell_probabilities(groups, sources, labels, group_weights={"adult": -1})


def test_epochs_are_drawn_by_the_probabilities_and_reproducibly_per_epoch() -> None:
    groups, sources, labels = _rows()
    p = cell_probabilities(groups, sources, labels)
    order = sample_epochs(p, epoch_size=4000, epochs=3, seed=5)
    assert order.shape == (3, 4000)
    counts = Counter(f"{sources[i]}/{labels[i]}" for i in order.ravel())
    assert counts["jsrt/NORMAL"] / order.size == pytest.approx(0.125, abs=0.02)
    # A resumed run draws the remaining epochs exactly as an uninterrupted one.
    assert np.array_equal(sample_epochs(p, epoch_size=4000, epochs=3, seed=5)[2], order[2])


def test_source_label_training_needs_sampling_probabilities(tmp_path) -> None:
    from tests.training.trainers.test_train import SPEC, separable_data
    from training.trainers.train import train

    x, y = separable_data(64, 0)
    spec = replace(SPEC, balancing="source_label", epoch_samples=32, epochs=1)
    with pytest.raises(ValueError, match="sample_p"):
        train(spec, x_train=x, y_train=y, x_val=x[:8], y_val=y[:8], workdir=tmp_path)
    p = np.full(len(x), 1 / len(x))
    outcome = train(spec, x_train=x, y_train=y, x_val=x[:8], y_val=y[:8], workdir=tmp_path / "ok", sample_p=p)
    assert outcome.epochs_run == 1


def test_sampled_training_resumes_with_the_same_draws(tmp_path) -> None:
    from tests.training.trainers.test_train import SPEC, separable_data
    from training.trainers.train import train

    x, y = separable_data(64, 0)
    p = np.linspace(1, 2, len(x))
    p /= p.sum()
    spec = replace(SPEC, balancing="source_label", epoch_samples=48, epochs=3)
    whole = train(spec, x_train=x, y_train=y, x_val=x[:8], y_val=y[:8], workdir=tmp_path / "a", sample_p=p)

    def crash(record: dict) -> None:
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(spec, x_train=x, y_train=y, x_val=x[:8], y_val=y[:8], workdir=tmp_path / "b", sample_p=p, progress=crash)
    resumed = train(spec, x_train=x, y_train=y, x_val=x[:8], y_val=y[:8], workdir=tmp_path / "b", sample_p=p)
    assert resumed.epochs_run == 3 and len(resumed.history["loss"]) == 3
    assert resumed.history["loss"][:2] == pytest.approx(whole.history["loss"][:2], rel=1e-5)
