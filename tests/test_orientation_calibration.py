"""Which new orientations ``predict`` flags depends on whether the folds ever predicted at one.

The folds hold out materials.  When every material shares one set of facets, a held-out
material's rows were at orientations its fold trained on, and the interval was never measured
elsewhere: every new orientation is flagged.  When each material has normals of its own (drawn
per material, as in per-normal published tables), every held-out row was at an orientation its
fold never saw, so the coverage was measured there: only an orientation outside the training
descriptors' ranges is flagged (found by an audit of a table of 8 metals × 20 random normals,
where every new normal, (9,3,2) included, was flagged).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from matstore.models.service import UNSEEN_WHEN_HELD_OUT, _domain, _unseen_orientations


def _shared_facets() -> pd.DataFrame:
    facets = [(1, 0, 0), (1, 1, 0), (1, 1, 1)]
    return pd.DataFrame([{"material": m, "miller_h": h, "miller_k": k, "miller_l": l, "y": 1.0}
                         for m in ("Cu", "Ag", "Au") for h, k, l in facets])


def _own_normals(seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    normals = np.abs(rng.normal(size=(24, 3)))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    return pd.DataFrame({"material": np.repeat(["Cu", "Ag", "Au"], 8), "normal_x": normals[:, 0],
                         "normal_y": normals[:, 1], "normal_z": normals[:, 2], "y": 1.0})


def _flagged(domain: dict, frame: pd.DataFrame) -> list[str]:
    return [line for _, line in _unseen_orientations(frame, domain["orientations"], "g(orientation) is extrapolated")]


def test_shared_facets_flag_every_new_orientation() -> None:
    domain = _domain(_shared_facets(), ["y"])
    assert domain["orientations"][UNSEEN_WHEN_HELD_OUT] == 0.0
    lines = _flagged(domain, pd.DataFrame({"miller_h": [5, 1], "miller_k": [3, 1], "miller_l": [1, 1]}))
    assert lines == ["orientation (5,3,1) was not in the training set (3 orientations: (1,0,0), (1,1,0), (1,1,1)); "
                     "g(orientation) is extrapolated and the interval is not calibrated there"]


def test_normals_of_each_material_flag_only_orientations_outside_the_ranges() -> None:
    table = _own_normals()
    domain = _domain(table, ["y"])
    orientations = domain["orientations"]
    assert orientations[UNSEEN_WHEN_HELD_OUT] == 1.0 and orientations["count"] == 24
    theta = orientations["descriptors"]["theta_deg"]
    inside = pd.DataFrame({"normal_x": [table["normal_x"].iloc[0] + 1e-3], "normal_y": [table["normal_y"].iloc[0]],
                           "normal_z": [table["normal_z"].iloc[0]]})
    assert _flagged(domain, inside) == []  # a new normal among the training ones: measured by the folds
    outside = pd.DataFrame({"miller_h": [1], "miller_k": [0], "miller_l": [0]})  # θ = 0, below the drawn normals
    assert theta["min"] > 1.0
    (line,) = _flagged(domain, outside)
    assert line.startswith("orientation (1,0,0) lies outside the 24 training orientations (theta_deg "
                           f"{theta['min']:.4g} … {theta['max']:.4g}")


@pytest.mark.parametrize(("own", "share"), [(3, 0.5), (1, 0.25)])
def test_the_share_counts_rows_at_orientations_of_one_material(own: int, share: float) -> None:
    """Per material: 3 shared facets plus ``own`` normals of its own; the share decides the mode."""
    shared = _shared_facets()
    mine = _own_normals().groupby("material").head(own)
    domain = _domain(pd.concat([shared, mine], ignore_index=True), ["y"])
    assert domain["orientations"][UNSEEN_WHEN_HELD_OUT] == pytest.approx(own / (3 + own))
    assert share == pytest.approx(own / (3 + own))
    lines = _flagged(domain, pd.DataFrame({"miller_h": [3], "miller_k": [2], "miller_l": [1]}))
    assert len(lines) == (0 if share >= 0.5 else 1)
