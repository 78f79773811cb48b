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

#: Keys under which a version may carry its fit report (a JSON object).
REPORT_KEYS = ("report", "fit_report", "validation")


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
                             loss, str(part.get("criterion") or "")))
        combined_title = "C · g (complexity of C + complexity of g + 1)"
    else:
        combined_title = "equation"
    front = version.get("pareto_front")
    table = pd.DataFrame(front if isinstance(front, list) else [])
    out.append(Front(combined_title, table, _selected_row(table, srepr=version.get("equation_srepr"),
                                                           text=version.get("equation_text")),
                     squared, str(version.get("selection_criterion") or "")))
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
    """The metric keys to show first: cross-validated, then training R² and RMSE, if stored."""
    metrics = metrics or {}
    wanted = ("nested_cv_r2", "cv_r2", "fixed_form_cv_r2", "train_r2", "cv_rmse", "train_rmse", "r2", "rmse")
    return [k for k in wanted if isinstance(metrics.get(k), (int, float))][:4]


def how_obtained(version: Mapping[str, Any]) -> str:
    """One sentence on how the errors were obtained (scheme, folds, selection)."""
    metrics = version.get("metrics") or {}
    scheme = metrics.get("cv_scheme") or ""
    parts = []
    if scheme:
        folds = metrics.get("cv_n_splits")
        failed = metrics.get("cv_failed_folds")
        parts.append(f"cross-validation: {scheme}" + (f", {int(folds)} folds" if folds else "")
                     + (f", {int(failed)} failed" if failed else ""))
    else:
        parts.append("no cross-validation stored (training errors only)")
    report = fit_report(version)
    kinds = [k for k in ("nested", "fixed_form") if any(k in key for key in _flatten(report))]
    if kinds:
        parts.append("the report gives " + " and ".join(k.replace("_", "-") for k in kinds) + " CV")
    elif scheme:
        parts.append("the equation search and selection are re-run in each fold (nested CV of the procedure)")
    return "; ".join(p for p in parts if p) + "."


def fit_report(version: Mapping[str, Any]) -> dict[str, Any]:
    """The version's fit report (a JSON object) when it has one, else ``{}``."""
    for key in REPORT_KEYS:
        value = version.get(key)
        if isinstance(value, dict) and value:
            return value
    metrics = version.get("metrics") or {}
    value = metrics.get("report") if isinstance(metrics, dict) else None
    return value if isinstance(value, dict) else {}


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
    """A stored prediction interval: ``value + lower`` … ``value + upper`` at ``level``."""

    lower: float
    upper: float
    level: float | None
    how: str


def stored_interval(version: Mapping[str, Any]) -> Interval | None:
    """The version's prediction interval (offsets from the prediction) when one is stored.

    Looks for an ``interval``/``intervals``/``prediction_interval`` object in the fit report,
    the metrics or a column, with ``half_width`` (symmetric) or ``lower``/``upper`` offsets
    and optionally ``level`` (e.g. 0.9) and ``method``.  ``None`` when the version has none.
    """
    candidates = []
    for holder in (fit_report(version), version.get("metrics") or {}, version):
        for key in ("interval", "intervals", "prediction_interval", "conformal"):
            value = holder.get(key) if isinstance(holder, Mapping) else None
            if isinstance(value, dict):
                candidates.append(value)
    for value in candidates:
        level = value.get("level") or value.get("confidence") or value.get("coverage_target")
        how = str(value.get("method") or value.get("how") or "stored interval")
        if isinstance(value.get("half_width"), (int, float)):
            w = float(value["half_width"])
            return Interval(-w, w, _float(level), how)
        lower, upper = value.get("lower_offset", value.get("lower")), value.get("upper_offset", value.get("upper"))
        if isinstance(lower, (int, float)) and isinstance(upper, (int, float)):
            return Interval(float(lower), float(upper), _float(level), how)
    return None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
