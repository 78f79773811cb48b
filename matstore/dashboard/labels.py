"""Display text of the dashboard: metric units, value sources, significant digits, blanks.

Pure functions (no database, no Streamlit), so that every page says the same thing the same
way: a coefficient of determination has no unit, an RMSE carries the target's unit, a
training loss (mean squared error) its square; a point says whether it comes from DFT, an
ASE calculator, a LAMMPS potential file or an OpenKIM model; a missing cell is blank.
"""

from __future__ import annotations

import math
import re
from typing import Any

import pandas as pd
import sympy

from matstore.dashboard.charts import unit_label

#: OpenKIM model IDs: portable models ``…_MO_<12 digits>_<3 digits>``, simulator models ``_SM_``
#: (https://openkim.org/doc/schema/kim-ids/).
_KIM_ID = re.compile(r"_(MO|SM)_\d{12}_\d{3}$")

#: Words of metric names that make the metric a count or a ratio, never in the target's unit.
_UNITLESS = {"r2", "r²", "coverage", "agreement", "fraction", "mape", "splits", "folds", "n", "count", "level",
             "relative"}
#: Words of metric names whose value is in the target unit squared (mean squared errors, losses).
_SQUARED = {"mse", "loss"}


def metric_unit(name: str, target_unit: str | None) -> str:
    """Unit of a stored fit metric.

    ``r2``-like metrics (``train_r2``, ``cv_r2_mean``…), counts (``cv_n_splits``) and
    coverages and relative quantities (``interval_relative_half_width``) are dimensionless;
    mean squared errors are in the target unit squared;
    everything else (RMSE, MAE, residual σ, interval widths) in the target unit.

    Parameters
    ----------
    name : metric key as stored in ``equation_version.metrics`` (words joined by ``_``)
    target_unit : canonical unit of the target (e.g. ``J/m^2``)

    Returns
    -------
    str
        Display unit, ``""`` when dimensionless.
    """
    words = set(name.lower().split("_"))
    label = unit_label(target_unit)
    if words & _UNITLESS or not label:
        return ""
    if words & _SQUARED:
        return f"({label})²"
    return label


def format_metric(name: str, value: Any, target_unit: str | None) -> str:
    """``0.8843`` (R²), ``197.5 MPa`` (RMSE), ``5`` (folds), text unchanged; 4 significant digits."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "–" if value is None else str(value)
    if not math.isfinite(value):
        return "–"
    if name.lower().endswith(("n_splits", "failed_folds")) or (isinstance(value, int) and abs(value) < 10**6):
        return f"{int(value)}"
    return f"{value:.4g} {metric_unit(name, target_unit)}".strip()


def metric_label(name: str) -> str:
    """Readable metric name: ``cv_r2`` → ``nested CV R²``, ``fixed_form_cv_rmse`` → ``fixed-form CV RMSE``.

    The ``cv_*`` metrics of a version re-run the whole equation search and selection in each
    fold (nested CV, the honest score of the procedure); ``fixed_form_cv_*`` keep the selected
    form and refit its constants per fold.
    """
    text = name.replace("fixed_form_cv", "fixed-form_CV")
    if text.startswith("cv_"):
        text = "nested_CV" + text[2:]
    words = {"cv": "CV", "r2": "R²", "rmse": "RMSE", "mae": "MAE", "mse": "MSE", "std": "σ", "n": "number of",
             "splits": "folds"}
    return " ".join(words.get(w, w) for w in text.split("_"))


def source_label(*, method_name: str | None, method_kind: str | None, calculator: str | None,
                 potential: str | None) -> str:
    """Where a value comes from, in the field's words: DFT, EMT, LAMMPS ‹file›, OpenKIM, …

    Parameters
    ----------
    method_name, method_kind, calculator, potential : columns of the ``method`` row

    Returns
    -------
    str
        ``DFT`` for first-principles methods; ``OpenKIM`` for a method named by an OpenKIM
        ID; ``LAMMPS ‹potential file›`` for LAMMPS; otherwise the calculator's class name
        (``ase.calculators.emt.EMT`` → ``EMT``), else the method kind.
    """
    kind = method_kind.lower() if isinstance(method_kind, str) else ""
    calc = calculator if isinstance(calculator, str) else ""
    potential = potential if isinstance(potential, str) else None
    method_name = method_name if isinstance(method_name, str) else None
    if kind == "dft" or "vasp" in calc.lower() or "gpaw" in calc.lower():
        return "DFT"
    if method_name and _KIM_ID.search(method_name):
        return "OpenKIM"
    if "lammps" in calc.lower():
        return f"LAMMPS {potential}" if potential else "LAMMPS"
    if calc:
        return calc.rsplit(".", 1)[-1]
    return kind or "unknown"


def add_source_labels(frame: pd.DataFrame, *, prefix: str = "method") -> pd.DataFrame:
    """Copy of ``frame`` with a ``source`` column from ``{prefix}``, ``{prefix}_kind``,
    ``{prefix}_calculator`` and ``{prefix}_potential`` (see :func:`source_label`)."""
    if frame.empty:
        return frame.assign(source=pd.Series(dtype=str))
    labels = [source_label(method_name=r.get(prefix), method_kind=r.get(f"{prefix}_kind"),
                           calculator=r.get(f"{prefix}_calculator"), potential=r.get(f"{prefix}_potential"))
              for r in frame.to_dict("records")]
    return frame.assign(source=labels)


def blank_missing(frame: pd.DataFrame) -> pd.DataFrame:
    """Copy of ``frame`` for display: ``None``/``NaN`` in text columns become empty strings.

    Numeric columns keep NaN (Streamlit leaves those cells empty); object columns would
    otherwise print the word ``None``.
    """
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object:
            out[column] = out[column].map(lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else v)
        elif pd.api.types.is_string_dtype(out[column]):
            out[column] = out[column].fillna("")
    return out


def text_or_blank(value: Any) -> str:
    """``str(value)``, or ``""`` for ``None``/NaN/NaT (never the word ``None``)."""
    if value is None:
        return ""
    try:
        if pd.isna(value):
            return ""
    except (TypeError, ValueError):
        pass
    return str(value)


def round_floats(expr: sympy.Expr, digits: int = 4) -> sympy.Expr:
    """``expr`` with every floating-point constant rounded to ``digits`` significant digits.

    For display only: the stored expression keeps full precision.
    """
    replacements = {}
    for number in expr.atoms(sympy.Float):
        value = float(number)
        replacements[number] = sympy.Float(float(f"{value:.{digits}g}"), digits) if value else number
    return expr.xreplace(replacements)


#: LaTeX of the orientation descriptors (conventions of :mod:`matstore.orientation`).
DESCRIPTOR_LATEX = {"normal_x": "n_{x}", "normal_y": "n_{y}", "normal_z": "n_{z}", "n_x": "n_{x}", "n_y": "n_{y}",
                    "n_z": "n_{z}", "theta_deg": r"\theta^{\circ}", "phi_deg": r"\varphi^{\circ}",
                    "theta": r"\theta", "phi": r"\varphi", "miller_h": "h", "miller_k": "k", "miller_l": "l"}


def display_latex(expr: sympy.Expr) -> str:
    r"""LaTeX of an equation for display: property names upright (``\mathrm{cohesive\_energy}``),
    orientation descriptors as symbols (``normal_x`` → ``n_x``, ``theta_deg`` → ``θ°``) and an
    explicit ``·`` between factors, so that two names never run together."""
    names = {}
    for symbol in expr.free_symbols:
        if symbol.name in DESCRIPTOR_LATEX:
            names[symbol] = DESCRIPTOR_LATEX[symbol.name]
        elif len(symbol.name) > 1:
            names[symbol] = r"\mathrm{" + symbol.name.replace("_", r"\_") + "}"
    return sympy.latex(expr, symbol_names=names, mul_symbol="dot")


def split_latex_terms(expr: sympy.Expr, latex, max_chars: int = 90) -> str:
    """LaTeX of ``expr`` broken into lines at its top-level terms when it is long.

    Parameters
    ----------
    expr : the expression (display form)
    latex : callable turning an expression into LaTeX (e.g. :func:`expressions.to_latex`)
    max_chars : longest LaTeX line before breaking

    Returns
    -------
    str
        ``latex(expr)``, or a KaTeX ``aligned`` block with one ``+ term`` per line.
    """
    whole = latex(expr)
    if len(whole) <= max_chars or not isinstance(expr, sympy.Add):
        return whole
    lines, current = [], ""
    for i, term in enumerate(expr.as_ordered_terms()):
        piece = latex(term)
        piece = piece if i == 0 or piece.startswith("-") else "+ " + piece
        if current and len(current) + len(piece) > max_chars:
            lines.append(current)
            current = ""
        current += (" " if current else "") + piece
    lines.append(current)
    return r"\begin{aligned}&" + r"\\ &\quad ".join(lines) + r"\end{aligned}"
