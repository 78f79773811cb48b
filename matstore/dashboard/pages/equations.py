"""Equations: models, versions and lineage, Pareto fronts, parity, orientation function g,
validation report and prediction.

Stored expressions are rebuilt with :func:`matstore.dashboard.expressions.parse_srepr` (no
``eval``).  Constants are shown with 4 significant digits (the store keeps full precision);
R² is dimensionless, RMSE and residual σ carry the target unit, training losses its square.
The model and version are kept in the URL.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from matstore.dashboard import charts, expressions, labels, queries, reports, state
from matstore.dashboard.orientation_g import read_orientation_function, triangle_grid

st.title("Equations")

models = queries.equation_models()
if models.empty:
    st.info("No equation models yet: fit one with `matstore models fit`.")
    st.stop()

model_labels = {int(r.id): f"{r.name} → {r.target} ({charts.unit_label(r.target_unit) or 'dimensionless'}), "
                f"{int(r.n_versions)} versions" for r in models.itertuples()}
model_ids = list(model_labels)
model_id = st.selectbox("Model", model_ids, format_func=model_labels.get,
                        index=state.index_of(model_ids, state.get_int("model")))
state.keep("model", model_id)
model = models.set_index("id").loc[model_id]
if model["description"]:
    st.caption(model["description"])

versions = queries.equation_versions(model_id=model_id)
if versions.empty:
    st.info("This model has no fitted version yet.")
    st.stop()
version_labels = {int(r.id): f"v{int(r.version)}" + (f" ({r.aliases})" if r.aliases else "")
                  for r in versions.itertuples()}
version_ids = list(version_labels)
version_id = st.radio("Version", version_ids, format_func=version_labels.get, horizontal=True,
                      index=state.index_of(version_ids, state.get_int("version")))
if state.get_int("version") not in (None, version_id):
    state.keep("from", None)  # the prediction inputs belong to the previous version
state.keep("version", version_id)
v = queries.equation_version(version_id=version_id).iloc[0].to_dict()
unit = v["target_unit"]
parts = v.get("parts") or {}


def shown_latex(srepr: str | None, fallback: str | None) -> str:
    """LaTeX of a stored expression, constants at 4 significant digits, long sums broken."""
    try:
        expr = labels.round_floats(expressions.parse_srepr(srepr or ""))
    except expressions.ExpressionError:
        return fallback or ""
    return labels.split_latex_terms(expr, labels.display_latex)


st.subheader(f"{v['model_name']} v{int(v['version'])}: {v['target']}")
target_tex = rf"\mathrm{{{v['target'].replace('_', chr(92) + '_')}}}"
coefficient, orientation = parts.get("coefficient"), parts.get("orientation")
if isinstance(coefficient, dict) and isinstance(orientation, dict):
    st.latex(rf"{target_tex} = C \cdot g")
    st.latex("C = " + shown_latex(coefficient.get("srepr"), coefficient.get("latex")))
    st.latex("g = " + shown_latex(orientation.get("srepr"), orientation.get("latex")))
elif parts.get("products"):  # a sum of products s_j(bulk) · g_j(orientation)
    st.latex(f"{target_tex} = " + " + ".join(rf"s_{j} \cdot g_{j}" for j in range(1, len(parts["products"]) + 1)))
    for j, term in enumerate(parts["products"], start=1):
        g_part = term.get("orientation") or {}
        st.latex(rf"s_{j} = " + shown_latex(term.get("scale_srepr"), term.get("scale")) + r",\quad "
                 + rf"g_{j} = " + shown_latex(g_part.get("srepr"), g_part.get("latex")))
else:
    st.latex(f"{target_tex} = " + shown_latex(v["equation_srepr"], v["equation_latex"]))
st.caption("Constants shown with 4 significant digits; the stored equation keeps full precision "
           f"(text: `{v['equation_text'][:60]}{'…' if len(v['equation_text']) > 60 else ''}`).")

metrics = reports.shown_metrics(v)  # no nested score or interval of failed folds
headline = reports.headline_metrics(metrics)
nested_available = reports.nested_available(v)
cols = st.columns(len(headline) + (1 if nested_available else 2))
cols[0].metric(charts.with_unit("Residual σ", unit), charts.format_value(v["residual_std"], None, 4),
               help="standard deviation of the out-of-fold residuals (training residuals without CV)")
for col, key in zip(cols[1:len(headline) + 1], headline, strict=True):
    col.metric(labels.metric_label(key), labels.format_metric(key, metrics[key], unit))
if not nested_available:
    cols[-1].metric(labels.metric_label("cv_r2"), "not available", help="every nested-CV fold failed")
from matstore.models.report import criterion_text  # noqa: E402 - loaded with the page, as below

st.caption(f"{reports.how_obtained(v)} Engine {v['engine']} · {int(v['n_rows'])} training rows · "
           f"selected by: {criterion_text(v['selection_criterion'])} · dimensions: {v['dimension_check'] or 'not checked'} · "
           f"dataset sha256 {v['dataset_sha256'][:12]}…")
# What `matstore fit` and `models show` print beside the scores, in their words (matstore.models.report).
for lines in (reports.methods_lines(v), reports.prototypes_lines(v)):  # "methods: …" / "prototypes: …", then a note
    if lines:
        st.caption(lines[0])
    for note in lines[1:]:
        st.warning(note)
cv_notes, failed_folds = reports.notes_and_failures(v)
for line in cv_notes:
    st.caption(line)
for line in failed_folds:
    st.warning(line)

# One view at a time (kept in the URL as ``view``): only its figures are computed and drawn.
VIEWS = {"front": "Pareto front", "parity": "Parity and residuals", "g": "Orientation function g",
         "report": "Validation report", "lineage": "Lineage and aliases", "predict": "Predict"}
view = st.radio("View", list(VIEWS), format_func=VIEWS.get, horizontal=True, label_visibility="collapsed",
                index=state.index_of(list(VIEWS), state.get_text("view")))
state.keep("view", None if view == "front" else view)

if view == "front":
    for front in reports.fronts(v):
        if front.table.empty:
            continue
        st.plotly_chart(charts.pareto_front(front.table, selected=front.selected, loss_title=front.loss_title,
                                            title=front.title), width="stretch")
        chosen = front.table.iloc[front.selected] if front.selected is not None else None
        st.caption(f"Selected (star): complexity {chosen['complexity']}" if chosen is not None else
                   "The selected candidate is not on this front.")
        st.caption(f"Criterion: {front.criterion or 'not stored'}. Loss: {front.loss_title}.")

if view == "parity":
    predictions = queries.equation_predictions(version_id=version_id)
    left, right = st.columns(2)
    left.plotly_chart(charts.parity_plot(predictions, target=v["target"], unit=unit), width="stretch")
    right.plotly_chart(charts.residuals_by_material(predictions, unit=unit), width="stretch")

def draw_orientation_function(part: dict | None, name: str, note: str) -> None:
    """The map of one orientation function (``g``, or ``g_j`` of a sum) over the standard triangle."""
    try:
        g = read_orientation_function(part)
    except expressions.ExpressionError as exc:
        st.info(str(exc))
        return
    st.latex(f"{name} = " + shown_latex(part.get("srepr"), part.get("latex")))
    normals = triangle_grid(45)
    values = g.evaluate(normals)
    if not np.isfinite(values).any():
        st.info(f"{name} is not a finite real number anywhere in the triangle.")
        return
    variables = ", ".join(g.variables) or "constant"
    st.plotly_chart(charts.orientation_function_map(
        normals, values, title=f"{name} over the stereographic triangle (variables: {variables})"), width="stretch")
    st.caption(f"{name} ranges from {np.nanmin(values):.4g} to {np.nanmax(values):.4g} over the triangle ({note}).")


if view == "g" and parts.get("products"):  # a sum: one map per product s_j · g_j
    for j, term in enumerate(parts["products"], start=1):
        draw_orientation_function(term.get("orientation"), f"g_{j}",
                                  f"the factor of s_{j} = {term.get('scale')}, dimensionless")
elif view == "g":
    draw_orientation_function(orientation, "g", "dimensionless; normalisation: "
                              + str((orientation or {}).get("normalization", "not stored")))

if view == "report":
    report = reports.fit_report(v)
    comparison = reports.cv_comparison(v)
    if comparison.empty:
        st.info("This version has no fit report (fitted before reports were stored): metrics only.")
    else:
        st.markdown("**Nested against fixed-form cross-validation**")
        st.dataframe(comparison, hide_index=True, width="stretch", column_config={
            "R²": st.column_config.NumberColumn("R²", format="%.4f"),
            **{c: st.column_config.NumberColumn(charts.with_unit(c, unit), format="%.4g") for c in ("RMSE", "MAE")}})
        if report.get("discrepancy"):
            st.warning(f"Nested and fixed-form CV differ by more than 0.1 in R²: {report['discrepancy']}")
    from matstore.models.report import coverage_text, nested_agreement_text
    agreement = nested_agreement_text(report.get("fold_agreement"), report.get("folds"))
    if agreement:
        st.caption(f"{agreement[0].upper()}{agreement[1:]}.")
    if isinstance(report.get("folds"), list) and report["folds"]:
        st.markdown("**Per fold: held-out groups, selected form and scores**")
        folds = pd.DataFrame(report["folds"])
        if "held_out" in folds:
            folds["held_out"] = folds["held_out"].map(lambda g: ", ".join(map(str, g)) if isinstance(g, list) else g)
        st.dataframe(labels.blank_missing(folds), hide_index=True, width="stretch")
    st.markdown("**Errors per group** (nested out-of-fold predictions, " + charts.unit_label(unit) + ")")
    per_group = pd.DataFrame(report.get("per_group") or [])
    if per_group.empty:  # older versions: recomputed from the stored predictions
        per_group = reports.group_errors(queries.equation_predictions(version_id=version_id))
    st.dataframe(labels.blank_missing(per_group), hide_index=True, width="stretch")
    interval = reports.stored_interval(v)
    if interval is not None:
        level = f"{interval.level:.0%} " if interval.level else ""
        coverage = coverage_text(report.get("interval") or {})
        st.caption(f"{level}prediction interval: {interval.offsets_text(charts.unit_label(unit))} ({interval.how})"
                   + ("" if coverage == "—" else f"; held-out coverage {coverage}") + ".")
    elif not nested_available:
        st.caption("No prediction interval: every nested-CV fold failed.")
    elif (report.get("interval") or {}).get("error"):
        st.caption(f"No prediction interval: {report['interval']['error']}.")
    st.markdown("**All metrics**")
    st.dataframe(reports.metrics_table(metrics, unit).drop(columns="key"), hide_index=True, width="stretch")

if view == "lineage":
    lineage = versions.assign(
        parent=versions["parent_version"].map(lambda p: "–" if pd.isna(p) else f"v{int(p)}"),
        version=versions["version"].map(lambda n: f"v{int(n)}"),
        cv_r2=versions["metrics"].map(reports.lineage_cv_r2),  # None where every nested fold failed
        train_r2=versions["metrics"].map(lambda m: (m or {}).get("train_r2", (m or {}).get("r2"))),
    )
    st.dataframe(labels.blank_missing(lineage[["version", "parent", "aliases", "engine", "n_rows", "cv_r2", "train_r2",
                                               "residual_std", "equation_text", "created_at"]]),
                 hide_index=True, width="stretch",
                 column_config={"residual_std": st.column_config.NumberColumn(
                     charts.with_unit("residual σ", unit), format="%.4g"),
                     "cv_r2": st.column_config.NumberColumn("CV R²", format="%.4f"),
                     "train_r2": st.column_config.NumberColumn("train R²", format="%.4f")})
    aliases = queries.equation_aliases(model_id=model_id)
    st.markdown("**Aliases**")
    if aliases.empty:
        st.caption("No aliases.")
    else:
        st.dataframe(aliases.assign(version=aliases["version"].map(lambda n: f"v{int(n)}")),
                     hide_index=True, width="stretch")

if view == "predict":
    from matstore.dashboard.predict_form import prediction_form

    prediction_form(v)
