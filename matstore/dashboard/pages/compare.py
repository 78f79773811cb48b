"""Compare methods: one material under several methods (DFT, EMT, LAMMPS, OpenKIM potentials) side by side.

A surface property per orientation (grouped bars, one colour per method, flagged values
hatched) and the bulk properties in one table, one column per method.  Selections live in
the URL, so a comparison can be shared as a link.
"""

from __future__ import annotations

import streamlit as st

from matstore.dashboard import charts, labels, queries, state

st.title("Compare methods")
st.caption("The same material computed with different methods: a surface property per orientation on one chart, "
           "and the bulk properties side by side.")

materials = queries.materials()
if materials.empty:
    st.info("No materials stored yet.")
    st.stop()
material_label = dict(zip(materials["id"], materials["label"], strict=True))
material_ids = list(material_label)
material_id = st.selectbox("Material", material_ids, format_func=material_label.get,
                           index=state.index_of(material_ids, state.get_int("material")))
state.keep("material", material_id)

methods = labels.add_source_labels(queries.method_choices(material_id=material_id))
if methods.empty:
    st.info("No values stored for this material.")
    st.stop()
method_label = {int(r.method_id): f"{r.method} [{r.source}] — {int(r.n_surface)} surface, {int(r.n_bulk)} bulk values"
                for r in methods.itertuples()}
with_surfaces = [int(i) for i in methods.loc[methods["n_surface"] > 0, "method_id"]]
chosen = st.multiselect("Methods", list(method_label), format_func=method_label.get, max_selections=12,
                        default=state.get_ints("methods", method_label) or with_surfaces[:4] or list(method_label)[:4])
state.keep("methods", chosen)
if not chosen:
    st.info("Choose at least one method.")
    st.stop()

st.subheader("Surface property per orientation")
prop = st.selectbox("Property", ["surface_energy", "surface_stress", "surface_stiffness"],
                    format_func=lambda n: n.replace("_", " "))
values = queries.surface_comparison(material_id=material_id, method_ids=tuple(chosen), property_name=prop)
if not values.empty:
    values = labels.add_source_labels(values).assign(
        orientation=lambda f: f.apply(charts.orientation_label, axis=1))
st.plotly_chart(charts.method_comparison(values, prop=prop), width="stretch")
st.caption("Hatched bars are flagged values (failed validation at ingest, kept with the reason).")

st.subheader("Bulk properties")
bulk = queries.bulk_comparison(material_id=material_id, method_ids=tuple(chosen))
if bulk.empty:
    st.info("No bulk values for these methods.")
else:
    n_flagged = int(bulk["flag"].notna().sum())
    passed = bulk[bulk["flag"].isna()]
    passed = passed.assign(property=[charts.with_unit(p, u) for p, u in zip(passed["property"], passed["unit"],
                                                                             strict=True)])
    table = passed.pivot_table(index="property", columns="method", values="value", aggfunc="first")
    st.dataframe(table, width="stretch", column_config={m: st.column_config.NumberColumn(m, format="%.5g")
                                                        for m in table.columns})
    if n_flagged:
        st.caption(f"{n_flagged} flagged value(s) left out above; the Bulk properties page shows them with the reason.")
