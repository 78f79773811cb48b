"""Transfer: stored equations evaluated, without refitting, on the other models' training data.

A fitted equation is worth as much as it transfers: the LAMMPS u3 surface-energy law of a
two-term C fitted its six metals at R² 0.998 and predicted the OpenKIM potentials at −32,
while the broken-bond law 3.97·E_c/a² fitted them at 0.84 and predicted the potentials at
0.54 (docs/benchmarks.md §4, session 6).  :func:`transfer_matrix` gives, for equations of
one target, the R² of each on every model's training table, so a user sees which laws hold
beyond the data that made them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from matstore.models.spec import FitSpec


@dataclass(frozen=True)
class FittedEquation:
    """A stored equation and the spec whose training data it was fitted on.

    Attributes
    ----------
    name : str
        Row and column label (the model name).
    srepr : str
        ``sympy.srepr`` of the equation, as stored in ``equation_version.equation_srepr``.
    spec : FitSpec
        Its target, features and methods select the training table.
    """

    name: str
    srepr: str
    spec: FitSpec


def transfer_matrix(engine: Engine, fitted: Sequence[FittedEquation]) -> pd.DataFrame:
    """R² of every equation (rows) on every model's training table (columns), not refitted.

    The diagonal is each equation on its own training rows (training R²).  Rows where an
    equation is undefined (NaN) are left out of that cell; a table that lacks a column the
    equation uses gives NaN.

    Parameters
    ----------
    engine : Engine
        The store the training tables are read from (read-only).
    fitted : sequence of FittedEquation
        Equations of one target (e.g. three surface-energy laws of three calculators).

    Returns
    -------
    DataFrame, shape (n_equations, n_equations)
        Index: equation names; columns: the names of the tables' models.

    Raises
    ------
    ValueError
        When the equations are not all of one target (their R² would not be comparable).
    """
    from matstore.models.dataset import build_training_set

    targets = {f.spec.target for f in fitted}
    if len(targets) > 1:
        raise ValueError(f"transfer compares equations of one target, got {sorted(targets)}")
    tables = {f.name: build_training_set(engine, target=f.spec.target, features=list(f.spec.features),
                                         methods=f.spec.methods, include_flagged=f.spec.include_flagged,
                                         ).table.dropna(subset=["target"])
              for f in fitted}
    values = [[r2_on(f.srepr, tables[other.name]) for other in fitted] for f in fitted]
    return pd.DataFrame(values, index=[f.name for f in fitted], columns=[f.name for f in fitted])


def stored_equations(engine: Engine, refs: Sequence[str]) -> list[FittedEquation]:
    """The versions named by ``refs`` (``NAME``, ``NAME:VERSION``, ``NAME@ALIAS``) with their models' specs.

    Raises
    ------
    matstore.models.versioning.ModelNotFoundError
        A reference matches no version.
    """
    from sqlmodel import Session

    from matstore.models.versioning import resolve
    from matstore.schema import EquationModel

    with Session(engine) as session:
        versions = [resolve(session, ref) for ref in refs]
        return [FittedEquation(ref, v.equation_srepr, FitSpec.from_stored(session.get(EquationModel, v.model_id).spec))
                for ref, v in zip(refs, versions, strict=True)]


def r2_on(srepr: str, table: pd.DataFrame) -> float:
    """R² of the equation (``sympy.srepr``) on ``table['target']``, shape (n_rows,), not refitted.

    Rows where the equation is undefined are left out; NaN when a column it uses is missing
    or fewer than two rows are defined.
    """
    from sklearn.metrics import r2_score

    from matstore.models.fitting import predict

    try:
        predicted = predict(srepr, table)
    except KeyError:
        return float("nan")
    ok = np.isfinite(predicted)
    if ok.sum() < 2:
        return float("nan")
    return float(r2_score(table["target"].to_numpy(dtype=float)[ok], predicted[ok]))


__all__ = ["FittedEquation", "r2_on", "stored_equations", "transfer_matrix"]
