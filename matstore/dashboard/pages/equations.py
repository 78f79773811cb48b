"""Equations: models, versions and lineage, Pareto front, parity, orientation function, prediction.

Stored expressions are rebuilt with :func:`matstore.dashboard.expressions.parse_srepr` (no
``eval``); nothing from :mod:`matstore.models` is imported.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from matstore.dashboard import charts, expressions, queries

st.title("Equations")

models = queries.equation_models()
if models.empty:
    st.info("No equation models yet: fit one with `matstore models fit`.")
    st.stop()

model_labels = {int(r.id): f"{r.name} → {r.target} ({charts.unit_label(r.target_unit)}), {int(r.n_versions)} versions"
                for r in models.itertuples()}
model_id = st.selectbox("Model", list(model_labels), format_func=model_labels.get)
model = models.set_index("id").loc[model_id]
if model["description"]:
    st.caption(model["description"])

versions = queries.equation_versions(model_id=model_id)
if versions.empty:
    st.info("This model has no fitted version yet.")
    st.stop()
version_labels = {int(r.id): f"v{int(r.version)}" + (f" ({r.aliases})" if r.aliases else "")
                  for r in versions.itertuples()}
version_id = st.radio("Version", list(version_labels), format_func=version_labels.get, horizontal=True)
v = queries.equation_version(version_id=version_id).iloc[0]
unit = v["target_unit"]

st.subheader(f"{v['model_name']} v{int(v['version'])}: {v['target']}")
target_tex = v["target"].replace("_", r"\_")
try:  # the stored LaTeX, re-set with upright multi-letter names when the srepr can be read
    equation_tex = expressions.to_latex(expressions.parse_srepr(v["equation_srepr"]))
except expressions.ExpressionError:
    equation_tex = v["equation_latex"]
st.latex(rf"\mathrm{{{target_tex}}} = {equation_tex}")
metrics = v["metrics"] or {}
cols = st.columns(max(1, min(5, len(metrics) + 1)))
cols[0].metric("Residual std", charts.format_value(v["residual_std"], unit, 3))
for col, (name, value) in zip(cols[1:], list(metrics.items())[:4], strict=False):
    shown = f"{value:.4g}" if isinstance(value, (int, float)) else str(value)
    col.metric(name, shown + ("" if name.lower().startswith("r2") or "r²" in name else f" {charts.unit_label(unit)}"))
st.caption(f"Engine {v['engine']} · {int(v['n_rows'])} training rows · selected by: {v['selection_criterion']} · "
           f"dimensions: {v['dimension_check'] or 'not checked'} · dataset sha256 {v['dataset_sha256'][:12]}…")

tab_front, tab_parity, tab_g, tab_lineage, tab_predict = st.tabs(
    ["Pareto front", "Parity and residuals", "Orientation function g", "Lineage and aliases", "Predict"])

with tab_front:
    front = pd.DataFrame(v["pareto_front"] if isinstance(v["pareto_front"], list) else [])
    selected = None
    if not front.empty:
        for column, wanted in (("srepr", v["equation_srepr"]), ("text", v["equation_text"]),
                               ("latex", v["equation_latex"])):
            if column in front.columns and (front[column] == wanted).any():
                selected = int(np.flatnonzero(front[column] == wanted)[0])
                break
        if selected is None and "selected" in front.columns:
            hits = np.flatnonzero(front["selected"].fillna(False).astype(bool))
            selected = int(hits[0]) if len(hits) else None
    st.plotly_chart(charts.pareto_front(front, selected=selected), width="stretch")
    if not front.empty:
        st.dataframe(front[[c for c in ("complexity", "loss", "text") if c in front.columns]],
                     hide_index=True, width="stretch")

with tab_parity:
    predictions = queries.equation_predictions(version_id=version_id)
    left, right = st.columns(2)
    left.plotly_chart(charts.parity_plot(predictions, target=v["target"], unit=unit), width="stretch")
    right.plotly_chart(charts.residuals_by_material(predictions, unit=unit), width="stretch")

with tab_g:
    parts = v["parts"] or {}
    try:
        g = expressions.orientation_function(parts.get("orientation"))
    except expressions.ExpressionError as exc:
        st.info(str(exc))
    else:
        latex = (parts.get("orientation") or {}).get("latex")
        if latex:
            st.latex(f"g = {latex}")
        normals = expressions.triangle_normals(45)
        values = g.evaluate(normals)
        if not np.isfinite(values).any():
            st.info("g is not a finite real number anywhere in the triangle.")
        else:
            st.plotly_chart(charts.orientation_function_map(
                normals, values, title=f"g over the stereographic triangle ({', '.join(g.variables) or 'constant'})"),
                width="stretch")
            st.caption(f"g ranges from {np.nanmin(values):.4g} to {np.nanmax(values):.4g} over the triangle.")
    coefficient = parts.get("coefficient") or {}
    try:
        coefficient_tex = expressions.to_latex(expressions.parse_srepr(coefficient["srepr"]))
    except (KeyError, TypeError, expressions.ExpressionError):
        coefficient_tex = coefficient.get("latex") if isinstance(coefficient, dict) else None
    if coefficient_tex:
        how = "; ".join(f"{k} {coefficient[k]}" for k in ("form", "criterion") if coefficient.get(k))
        st.caption("Coefficient part c (the equation is c · g)" + (f" — {how}" if how else "") + ":")
        st.latex(f"c = {coefficient_tex}")

with tab_lineage:
    lineage = versions.assign(
        parent=versions["parent_version"].map(lambda p: "–" if pd.isna(p) else f"v{int(p)}"),
        version=versions["version"].map(lambda n: f"v{int(n)}"),
        r2=versions["metrics"].map(lambda m: (m or {}).get("r2")),
    )
    st.dataframe(lineage[["version", "parent", "aliases", "engine", "n_rows", "r2", "residual_std", "equation_text",
                          "created_at"]], hide_index=True, width="stretch",
                 column_config={"residual_std": st.column_config.NumberColumn(
                     charts.with_unit("residual std", unit), format="%.4g")})
    aliases = queries.equation_aliases(model_id=model_id)
    st.markdown("**Aliases**")
    if aliases.empty:
        st.caption("No aliases.")
    else:
        st.dataframe(aliases.assign(version=aliases["version"].map(lambda n: f"v{int(n)}")),
                     hide_index=True, width="stretch")

with tab_predict:
    try:
        expr = expressions.parse_srepr(v["equation_srepr"])
    except expressions.ExpressionError as exc:
        st.warning(f"The stored equation cannot be read: {exc}")
    else:
        feature_units = {f.get("name"): f.get("unit") for f in (v["features"] or []) if isinstance(f, dict)}
        symbols = sorted(s.name for s in expr.free_symbols)
        with st.form("predict"):
            inputs = {}
            cols = st.columns(max(1, min(3, len(symbols))))
            for i, name in enumerate(symbols):
                inputs[name] = cols[i % len(cols)].number_input(
                    charts.with_unit(name, feature_units.get(name)), value=1.0, format="%.6g", key=f"x_{name}")
            submitted = st.form_submit_button("Predict")
        if submitted:
            try:
                y = expressions.evaluate(expr, inputs)
            except expressions.ExpressionError as exc:
                st.warning(str(exc))
            else:
                spread = f" ± {charts.format_value(v['residual_std'], unit, 3)}" if v["residual_std"] else ""
                st.success(f"{v['target']} = {charts.format_value(y, unit, 6)}{spread}")
