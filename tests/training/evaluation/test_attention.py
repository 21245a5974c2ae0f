"""The share of a heatmap's mass inside the lung field."""

from __future__ import annotations

import numpy as np
import pytest

from training.evaluation.attention import lung_mass_share, summarise_lung_mass


def test_share_of_mass_inside_the_mask() -> None:
    heat = np.zeros((4, 4))
    heat[0, 0], heat[3, 3] = 3.0, 1.0
    lung = np.zeros((4, 4), bool)
    lung[2:, 2:] = True
    assert lung_mass_share(heat, lung) == pytest.approx(0.25)
    assert lung_mass_share(np.zeros((4, 4)), lung) is None  # no evidence anywhere
    with pytest.raises(ValueError):
        lung_mass_share(heat, lung[:2])


def test_summary_leaves_out_maps_without_mass() -> None:
    summary = summarise_lung_mass([0.9, 0.5, None, 0.8])
    assert summary["n"] == 3 and summary["median"] == pytest.approx(0.8)
    assert summary["at_or_above_target"] == pytest.approx(2 / 3)
    assert summarise_lung_mass([None])["median"] is None
