"""One formula, two structures: two materials in every training table.

A new-user trial stored Fe as Im-3m and as Fm-3m (``material`` is unique by formula *and*
prototype) and fitted γ = C(bulk)·g(hkl) over both: the training rows were right, but the
per-material coefficient and the cross-validation groups keyed on the formula, so the two Fe
became one material of averaged bulk values (a = 3.2285 Å between 2.867 and 3.59), and every
fit warned of "conflicting stored values … the newest is used" for values of two different
materials.  Here Cu of the synthetic store gets a second, Im-3m twin with other values.
"""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import text

from matstore.models.dataset import build_training_set, distinct_material_labels
from tests.conftest import DATA_TABLES
from tests.test_models_store import METALS, populate

#: The twin's bulk values: another lattice constant and cohesive energy than Cu's.
TWIN = {"lattice_constant": 2.87, "cohesive_energy": 4.28}
MILLERS = ((1, 0, 0), (1, 1, 0), (1, 1, 1))

_TWIN_SQL = """
WITH twin AS (INSERT INTO material (formula, prototype, composition) VALUES ('Cu', 'Im-3m', '{"Cu": 1}') RETURNING id),
cu AS (SELECT id FROM material WHERE formula = 'Cu' AND prototype = 'Fm-3m'),
bulk AS (
  INSERT INTO bulk_property (material_id, method_id, definition_id, value, source_id, job_run_id)
  SELECT twin.id, p.method_id, p.definition_id,
         CASE d.name WHEN 'lattice_constant' THEN :a WHEN 'cohesive_energy' THEN :ec ELSE p.value END,
         p.source_id, p.job_run_id
  FROM bulk_property p JOIN property_definition d ON d.id = p.definition_id, twin, cu WHERE p.material_id = cu.id
  RETURNING 1)
INSERT INTO surface (material_id, orientation_key, miller_h, miller_k, miller_l, normal_x, normal_y, normal_z,
                     theta_deg, phi_deg)
SELECT twin.id, s.orientation_key, s.miller_h, s.miller_k, s.miller_l, s.normal_x, s.normal_y, s.normal_z,
       s.theta_deg, s.phi_deg
FROM surface s, twin, cu WHERE s.material_id = cu.id
"""

_TWIN_SURFACES_SQL = """
INSERT INTO surface_property (surface_id, method_id, definition_id, value, source_id, job_run_id)
SELECT t.id, p.method_id, p.definition_id, 1.3 * p.value, p.source_id, p.job_run_id
FROM surface_property p JOIN surface s ON s.id = p.surface_id JOIN material m ON m.id = s.material_id
JOIN surface t ON t.orientation_key = s.orientation_key
JOIN material tm ON tm.id = t.material_id AND tm.formula = 'Cu' AND tm.prototype = 'Im-3m'
WHERE m.formula = 'Cu' AND m.prototype = 'Fm-3m'
"""


@pytest.fixture(scope="module")
def store(session_engine):
    populate(session_engine, millers=MILLERS, source_hash="7" * 64)
    with session_engine.begin() as conn:
        conn.execute(text("UPDATE material SET prototype = 'Fm-3m'"))
        conn.execute(text(_TWIN_SQL), {"a": TWIN["lattice_constant"], "ec": TWIN["cohesive_energy"]})
        conn.execute(text(_TWIN_SURFACES_SQL))
    yield session_engine
    with session_engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY CASCADE"))


def test_the_two_structures_are_two_materials_and_two_groups(store) -> None:
    ts = build_training_set(store, target="surface_energy", features=["lattice_constant", "cohesive_energy"],
                            methods=["synth"])
    table = ts.table
    assert len(table) == 3 * (len(METALS) + 1)
    per_material = table.groupby("material")[["lattice_constant", "cohesive_energy"]].first()
    a_cu, ec_cu = METALS["Cu"][:2]
    assert per_material.loc["Cu (Fm-3m)"].tolist() == pytest.approx([a_cu, ec_cu])
    assert per_material.loc["Cu (Im-3m)"].tolist() == pytest.approx([TWIN["lattice_constant"], TWIN["cohesive_energy"]])
    assert "Cu" not in per_material.index and "Ag" in per_material.index  # other formulas keep their label
    assert len(set(ts.groups)) == len(METALS) + 1
    assert ts.conflicts == []  # two materials' values are no conflict


def test_labels_fall_back_to_the_material_id_where_prototypes_do_not_tell_apart() -> None:
    table = pd.DataFrame({"material": ["Fe", "Fe", "Fe", "Ni"], "material_id": [3, 4, 5, 6],
                          "prototype": ["Im-3m", None, "Fm-3m", None]})
    assert distinct_material_labels(table)["material"].tolist() == ["Fe (Im-3m)", "Fe (material 4)", "Fe (Fm-3m)", "Ni"]
    same = pd.DataFrame({"material": ["Cu", "Cu"], "material_id": [1, 1], "prototype": ["Fm-3m", "Fm-3m"]})
    assert distinct_material_labels(same)["material"].tolist() == ["Cu", "Cu"]
