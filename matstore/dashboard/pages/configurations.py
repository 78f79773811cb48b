"""Configurations: per-configuration values (a defect arrangement, a supercell, an alloy sample).

One material × method at a time: a table with one row per configuration key and one column
per property (canonical units), a scatter of any property against any other (flagged values
ringed in red and left out of r by default), and a link from each configuration's values to
their provenance.  Selections live in the URL.
"""

from __future__ import annotations

import streamlit as st

from matstore.dashboard import charts, labels, queries, state

st.title("Configurations")
st.caption("Values stored per identified configuration of a material (e.g. one row per defect arrangement "
           "of a published table), with their keys.")

choices = labels.add_source_labels(queries.configuration_choices())
if choices.empty:
    st.info("No per-configuration values stored yet: ingest a table with a `key:` column mapping.")
    st.stop()

keys = [state.material_method_key(r.material_id, r.method_id) for r in choices.itertuples()]
names = {k: f"{r.material} · {r.method} [{r.source}] — {int(r.n_configurations):,} configurations, "
            f"{int(r.n_values):,} values" + (f", {int(r.n_flagged)} flagged" if r.n_flagged else "")
         for k, r in zip(keys, choices.itertuples(), strict=True)}
pick = state.choose("Material and method", names, param="pick")
material_id, method_id = (int(x) for x in pick.split(":"))
long = queries.configuration_values(material_id=material_id, method_id=method_id)
units = dict(long.drop_duplicates("property")[["property", "unit"]].itertuples(index=False))
show_flagged = st.toggle("Show flagged values", value=state.get_text("flagged", "1") != "0")
state.keep("flagged", None if show_flagged else "0")
if not show_flagged:
    long = long[long["flag"].isna()]

wide = long.pivot_table(index="key", columns="property", values="value", aggfunc="first")
flags = long.dropna(subset=["flag"]).groupby("key")["flag"].first()
wide = wide.assign(flag=flags.reindex(wide.index)).reset_index()

names_list = sorted(units)
if len(names_list) >= 2:
    cx, cy, cr = st.columns([2, 2, 1])
    x = cx.selectbox("x", names_list, index=state.index_of(names_list, state.get_text("x"), 0),
                     format_func=lambda n: charts.with_unit(n, units[n]))
    y = cy.selectbox("y", names_list, index=state.index_of(names_list, state.get_text("y"), len(names_list) - 1),
                     format_func=lambda n: charts.with_unit(n, units[n]))
    in_r = cr.checkbox("Flagged values in r", value=False)
    state.keep("x", x)
    state.keep("y", y)
    pairs = wide.dropna(subset=[x, y]).rename(columns={x: "x", y: "y"}) if x != y else wide.iloc[0:0]
    pairs = pairs.assign(material=choices.iloc[keys.index(pick)]["material"], method=pairs["key"],
                         x_unit=units[x], y_unit=units[y], x_flag=pairs["flag"], y_flag=None)
    st.plotly_chart(charts.property_scatter(pairs, x_name=x, y_name=y, show_flagged=show_flagged,
                                            flagged_in_r=in_r), width="stretch")

st.subheader(f"{len(wide):,} configurations")
config = {n: st.column_config.NumberColumn(charts.with_unit(n, u), format="%.6g") for n, u in units.items()}
st.dataframe(labels.blank_missing(wide), hide_index=True, width="stretch", column_config=config)
st.caption("A value's provenance: Provenance page, search the property name or give "
           f"`{state.provenance_url('configuration', int(long['value_id'].iloc[0])) if not long.empty else ''}`.")
