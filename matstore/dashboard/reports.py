"""What a stored equation version says about itself, read defensively for display.

Pure functions of the ``equation_version`` row (a mapping of its columns) and of its stored
predictions: the fronts to draw (for factorised fits: the front of C, the front of g and the
combined front, each with its selected candidate), the metrics with their units, how the
errors were obtained, per-group errors recomputed from the stored out-of-fold predictions,
and the fit report and prediction interval when the version carries them (columns or JSON
keys added by later fits are used when present and never required).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from matstore.dashboard import labels
from matstore.dashboard.charts import unit_label

#: Column of ``equation_version`` holding the fit report (a JSON object; empty for old versions).
REPORT_COLUMN = "report"


@dataclass(frozen=True)
class Front:
    """One Pareto front to draw: candidates, the selected row, and what its loss means."""

    title: str
    table: pd.DataFrame
    selected: int | None
    loss_title: str
    criterion: str


def _selected_row(front: pd.DataFrame, *, srepr: str | None, text: str | None = None,
                  complexity: Any = None) -> int | None:
    """Row of the selected candidate: same srepr or text, else the ``selected`` mark, else
    the same complexity (a normalised g is its candidate rescaled, same complexity)."""
    for column, wanted in (("srepr", srepr), ("text", text)):
        if wanted and column in front.columns:
            hits = np.flatnonzero(front[column].to_numpy() == wanted)
            if len(hits):
                return int(hits[0])
    if "selected" in front.columns:
        hits = np.flatnonzero(front["selected"].fillna(False).astype(bool).to_numpy())
        if len(hits):
            return int(hits[0])
    if complexity is not None and "complexity" in front.columns:
        hits = np.flatnonzero(front["complexity"].to_numpy() == complexity)
        return int(hits[0]) if len(hits) else None
    return None


def fronts(version: Mapping[str, Any]) -> list[Front]:
    """The Pareto fronts of a version, each with its selected candidate marked.

    A factorised fit selects C(bulk) on the front of C (its criterion, e.g. ``cv:1se``, and
    the complexities it names refer to that front), selects g on the front of g, and stores
    the combined front ``C_candidate · g`` (complexity of C + complexity of g + 1): all three
    are returned, so a caption never names a complexity that the drawn star does not have.
    Losses are training mean squared errors: target unit² for C and the combined equation,
    dimensionless for the normalised g.
    """
    from matstore.models.report import criterion_text

    unit = unit_label(version.get("target_unit"))
    squared = f"training MSE (({unit})²)" if unit else "training MSE"
    out = []
    parts = version.get("parts") or {}
    coefficient, orientation = parts.get("coefficient"), parts.get("orientation")
    if isinstance(coefficient, dict) and isinstance(orientation, dict):
        for part, title, loss in ((coefficient, "C(bulk): the criterion's front", squared),
                                  (orientation, "g(orientation), normalised", "training MSE (dimensionless)")):
            table = pd.DataFrame(part.get("front") or [])
            out.append(Front(title, table, _selected_row(table, srepr=part.get("srepr"), text=part.get("text"),
                                                   complexity=part.get("complexity")),
                             loss, criterion_text(part.get("criterion"))))
        combined_title = "C · g (complexity of C + complexity of g + 1)"
    else:
        combined_title = "equation"
    front = version.get("pareto_front")
    table = pd.DataFrame(front if isinstance(front, list) else [])
    out.append(Front(combined_title, table, _selected_row(table, srepr=version.get("equation_srepr"),
                                                           text=version.get("equation_text")),
                     squared, criterion_text(version.get("selection_criterion"))))
    return out


def metrics_table(metrics: Mapping[str, Any] | None, target_unit: str | None) -> pd.DataFrame:
    """Metrics as rows ``metric, value, unit, key`` (R² unitless, RMSE in the target unit).

    Nested mappings (e.g. ``{"nested": {"r2": …}}``) are flattened with ``_`` joined keys.
    """
    rows = []
    for key, value in _flatten(metrics or {}).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            unit = labels.metric_unit(key, target_unit)
            shown = labels.format_metric(key, value, None)
        else:
            unit, shown = "", labels.text_or_blank(value)
        rows.append({"metric": labels.metric_label(key), "value": shown, "unit": unit, "key": key})
    return pd.DataFrame(rows, columns=["metric", "value", "unit", "key"])


def _flatten(value: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = f"{prefix}{key}"
        if isinstance(item, Mapping):
            out |= _flatten(item, f"{name}_")
        elif not isinstance(item, list):
            out[name] = item
    return out


def headline_metrics(metrics: Mapping[str, Any] | None) -> list[str]:
    """The metric keys to show first: cross-validated, then training R² and RMSE, if stored
    (pass :func:`shown_metrics`, so no nested score of failed folds is among them)."""
    metrics = metrics or {}
    wanted = ("cv_r2", "fixed_form_cv_r2", "train_r2", "cv_rmse", "train_rmse", "r2", "rmse")
    return [k for k in wanted if isinstance(metrics.get(k), (int, float)) and np.isfinite(metrics[k])][:4]


def how_obtained(version: Mapping[str, Any]) -> str:
    """One sentence on how the errors were obtained (scheme, folds, nested or fixed-form, agreement)."""
    metrics = version.get("metrics") or {}
    report = fit_report(version)
    scheme = report.get("cv_scheme") or metrics.get("cv_scheme") or ""
    if not scheme:
        return "No cross-validation stored (training errors only)."
    folds, failed = metrics.get("cv_n_splits"), metrics.get("cv_failed_folds")
    from matstore.models.report import ceiling_text, nested_agreement_text, scheme_text

    group_by = (version.get("hyperparameters") or {}).get("group_by")
    text = (f"Cross-validation: {scheme_text(report | {'cv_scheme': scheme}, group_by)}" + (f", {int(folds)} folds" if _finite_number(folds) else "")
            + (f", {int(failed)} failed" if _finite_number(failed) and failed else "")
            + "; nested CV re-runs the equation search and selection in each fold")
    if isinstance(report.get("fixed_form_cv"), dict):
        text += "; fixed-form CV keeps the selected form and refits its constants per fold"
    if _finite_number(report.get("product_ceiling_r2")):
        text += f"; {ceiling_text(report)}"
    agreement = nested_agreement_text(report.get("fold_agreement"))
    return text + (f"; {agreement}" if agreement else "") + "."


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))


def cv_comparison(version: Mapping[str, Any]) -> pd.DataFrame:
    """Nested against fixed-form CV scores, one row each (``scheme, R², RMSE, MAE, failed folds``)."""
    report = fit_report(version)
    rows = []
    for key, name in (("nested_cv", "nested (search and selection re-run per fold)"),
                      ("fixed_form_cv", "fixed form (selected form, constants refitted per fold)")):
        scores = report.get(key)
        if isinstance(scores, dict):
            hidden = key == "nested_cv" and not nested_available(version)
            rows.append({"cross-validation": name + (": not available, every fold failed" if hidden else ""),
                         **{column: None if hidden else scores.get(k) for column, k in
                            (("R²", "r2"), ("RMSE", "rmse"), ("MAE", "mae"))},
                         "failed folds": scores.get("failed_folds")})
    return pd.DataFrame(rows)


def fit_report(version: Mapping[str, Any]) -> dict[str, Any]:
    """The version's fit report (a JSON object) when it has one, else ``{}``."""
    value = version.get(REPORT_COLUMN)
    return value if isinstance(value, dict) else {}


def nested_available(version: Mapping[str, Any]) -> bool:
    """False when every nested-CV fold of the version's report failed
    (:func:`matstore.models.report.all_folds_failed`, as ``fit`` and ``models show`` decide):
    its nested R², the scores and the interval built from the out-of-fold predictions are then
    not shown, whatever number an older report stored.  True without a report."""
    from matstore.models.report import all_folds_failed

    return not all_folds_failed(fit_report(version))


#: Metrics computed from the nested out-of-fold predictions (:func:`matstore.models.fitting._metrics`):
#: none is shown when every nested-CV fold failed.
NESTED_METRICS = ("cv_r2", "cv_rmse", "cv_mae", "cv_r2_mean", "cv_r2_std", "interval_half_width",
                  "interval_relative_half_width", "interval_coverage")


def shown_metrics(version: Mapping[str, Any]) -> dict[str, Any]:
    """The version's ``metrics`` to display: without :data:`NESTED_METRICS` when every nested fold
    failed (:func:`nested_available`); the fold counts and fixed-form scores stay."""
    metrics = dict(version.get("metrics") or {})
    return metrics if nested_available(version) else {k: x for k, x in metrics.items() if k not in NESTED_METRICS}


def lineage_cv_r2(metrics: Mapping[str, Any] | None) -> Any:
    """``metrics['cv_r2']`` for the lineage table, None when ``cv_failed_folds`` equals ``cv_n_splits``
    (every nested fold failed: the rule of :func:`matstore.models.report.all_folds_failed`, read
    from the fold counts every version's metrics carry)."""
    from matstore.models.report import all_folds_failed

    metrics = metrics or {}
    counts = {"n_folds": metrics.get("cv_n_splits"), "failed_folds": metrics.get("cv_failed_folds")}
    return None if all_folds_failed({"nested_cv": counts}) else metrics.get("cv_r2")


def methods_lines(version: Mapping[str, Any]) -> list[str]:
    """The training methods of a version as ``fit`` and ``models show`` print them.

    ``["methods: DFT-PBE (3 rows), EAM (2)", "note: 2 methods mixed in one fit: …"]``
    (:func:`matstore.models.report.methods_lines` of ``report['rows_per_method']``); empty for
    versions fitted before the methods were stored.
    """
    from matstore.models.report import methods_lines as lines

    return lines(fit_report(version).get("rows_per_method"))


def prototypes_lines(version: Mapping[str, Any]) -> list[str]:
    """The training materials' crystal prototypes as ``fit`` and ``models show`` print them.

    ``["prototypes: Fm-3m (7 materials), Im-3m (4)", "note: 2 prototypes mixed in one fit: …"]``
    (:func:`matstore.models.report.prototypes_lines` of ``report['materials_per_prototype']``;
    factorised when the version has ``parts``); empty for versions fitted before the
    prototypes were stored.
    """
    from matstore.models.report import prototypes_lines as lines

    return lines(fit_report(version).get("materials_per_prototype"), bool(version.get("parts")))


def notes_and_failures(version: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """What ``models show`` prints after the CV scores: the report's notes (``"note: 2 groups only: …"``,
    :func:`matstore.models.report.cv_notes`) and its failed folds with their reasons
    (:func:`matstore.models.report.failure_lines`, e.g. ``"nested CV: 2 of 2 folds failed: ValueError: …;
    nested R² not available"``), one line each; both empty without a report."""
    from matstore.models.report import cv_notes, failure_lines

    report = fit_report(version)
    return [f"note: {line}" for line in cv_notes(report)], failure_lines(report)


def report_tables(report: Mapping[str, Any]) -> dict[str, pd.DataFrame]:
    """Lists of records in a report (per-fold forms, per-group errors, …) as tables by key."""
    out = {}
    for key, value in report.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            out[key] = pd.DataFrame(value)
        elif isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            out[key] = pd.DataFrame([{"name": k, **v} for k, v in value.items()])
    return out


def group_errors(predictions: pd.DataFrame, *, group: str = "material") -> pd.DataFrame:
    """Errors per group recomputed from the stored predictions.

    Parameters
    ----------
    predictions : ``observed, predicted, cv_predicted`` and the ``group`` column

    Returns
    -------
    pandas.DataFrame
        ``group, n, train_rmse, cv_rmse, cv_mean_error`` per group (target unit;
        ``cv_*`` from the out-of-fold predictions, NaN when none are stored).
    """
    if predictions.empty:
        return pd.DataFrame(columns=[group, "n", "train_rmse", "cv_rmse", "cv_mean_error"])

    def summary(rows: pd.DataFrame) -> pd.Series:
        fit = rows["predicted"] - rows["observed"]
        held = rows["cv_predicted"] - rows["observed"]
        return pd.Series({"n": len(rows), "train_rmse": float(np.sqrt(np.nanmean(fit**2))) if fit.notna().any() else np.nan,
                          "cv_rmse": float(np.sqrt(np.nanmean(held**2))) if held.notna().any() else np.nan,
                          "cv_mean_error": float(np.nanmean(held)) if held.notna().any() else np.nan})

    table = predictions.groupby(group)[["observed", "predicted", "cv_predicted"]].apply(summary)
    return table.reset_index().sort_values("cv_rmse", ascending=False, na_position="last")


@dataclass(frozen=True)
class Interval:
    """A stored prediction interval at ``level``, as offsets from the prediction.

    Absolute (``relative`` false): ``value + lower`` … ``value + upper``, offsets in the
    target unit.  Relative (a relative conformity score ``|y − ŷ|/ŷ``, MAPIE's
    ``GammaConformityScore``): ``value·(1 + lower)`` … ``value·(1 + upper)``, offsets as
    dimensionless fractions (``value + lower·|value|`` … so the ends stay ordered for a value
    ≤ 0).  ``how`` describes the method.
    """

    lower: float
    upper: float
    level: float | None
    how: str
    relative: bool = False

    def bounds(self, value: float) -> tuple[float, float]:
        """Lower and upper end around the prediction ``value`` (target unit)."""
        scale = abs(value) if self.relative else 1.0
        return value + self.lower * scale, value + self.upper * scale

    def offsets_text(self, unit: str) -> str:
        """``value -0.12 … +0.12 J/m²`` (absolute) or ``value·(1 ± 9.5 %)`` (relative)."""
        if self.relative and self.lower == -self.upper:
            return f"value·(1 ± {100 * self.upper:.3g} %)"
        if self.relative:
            return f"value·(1 {100 * self.lower:+.3g} % … {100 * self.upper:+.3g} %)"
        return f"value {self.lower:+.4g} … {self.upper:+.4g} {unit}".rstrip()


def stored_interval(version: Mapping[str, Any]) -> Interval | None:
    """The version's prediction interval (offsets from the prediction) when one is stored.

    Reads the column ``interval_half_width`` (a symmetric cross-conformal interval
    ``value ± w``, target unit) or ``interval_relative_half_width`` (``value·(1 ± q)``, ``q``
    a fraction; alembic 0012), with ``interval_level``; else an ``interval`` object of the fit
    report with ``half_width``, ``relative_half_width`` or ``lower``/``upper`` offsets.
    ``None`` when the version has none (fitted before intervals were stored, or the interval
    failed), and when every nested-CV fold failed (:func:`nested_available`): no interval is
    built from failed folds.
    """
    if not nested_available(version):
        return None
    report = fit_report(version)
    described = report.get("interval") if isinstance(report.get("interval"), dict) else {}
    how = str(described.get("method") or "stored interval")
    columns = {"half_width": version.get("interval_half_width"),
               "relative_half_width": version.get("interval_relative_half_width"),
               "level": version.get("interval_level")}
    for value in (columns, described, (version.get("metrics") or {}).get("interval")):
        if isinstance(value, dict) and (found := _interval_of(value, how)) is not None:
            return found
    return None


def _interval_of(value: Mapping[str, Any], how: str) -> Interval | None:
    """The interval one mapping describes (widths or offsets), or None."""
    level = _float(value.get("level"))
    for key, relative in (("half_width", False), ("relative_half_width", True)):
        if _finite_number(value.get(key)):
            return Interval(-float(value[key]), float(value[key]), level, how, relative)
    lower, upper = value.get("lower_offset", value.get("lower")), value.get("upper_offset", value.get("upper"))
    if _finite_number(lower) and _finite_number(upper):
        return Interval(float(lower), float(upper), level, how)
    return None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
