"""Bulk properties: a filterable table with units and a scatter of any property against any other.

Each point of the scatter is one material × method (e.g. one interatomic potential), so the
plot shows how properties co-vary across potentials (cross-scale covariance, e.g. strength
against vacancy migration energy).
"""

from __future__ import annotations

import streamlit as st

from matstore.dashboard import charts, queries

st.title("Bulk properties")

materials = queries.materials()
methods = queries.methods()
definitions = queries.bulk_definitions()
if definitions.empty:
    st.info("No bulk property values stored yet.")
    st.stop()

material_label = dict(zip(materials["id"], materials["label"], strict=True))
method_label = dict(zip(methods["id"], methods["name"], strict=True))
definition_label = {r.id: charts.with_unit(r.name, r.unit) for r in definitions.itertuples()}

with st.container(border=True):
    f1, f2, f3 = st.columns(3)
    material_ids = f1.multiselect("Material", list(material_label), format_func=material_label.get,
                                  placeholder="all materials")
    method_ids = f2.multiselect("Method / potential", list(method_label), format_func=method_label.get,
                                placeholder="all methods")
    definition_ids = f3.multiselect("Property", list(definition_label), format_func=definition_label.get,
                                    placeholder="all properties")
    search = st.text_input("Search", placeholder="part of a material, method or property name, e.g. Cu or vacancy",
                           max_chars=200)

filters = {"material_ids": tuple(material_ids), "method_ids": tuple(method_ids),
           "definition_ids": tuple(definition_ids), "search": search}

tab_scatter, tab_table = st.tabs(["Property vs property", "Table"])

with tab_scatter:
    names = definitions["name"].tolist()
    default_x = names.index("vacancy_migration_energy") if "vacancy_migration_energy" in names else 0
    default_y = names.index("strength") if "strength" in names else min(1, len(names) - 1)
    units = dict(zip(definitions["name"], definitions["unit"], strict=True))
    cx, cy = st.columns(2)
    x_name = cx.selectbox("x", names, index=default_x, format_func=lambda n: charts.with_unit(n, units[n]))
    y_name = cy.selectbox("y", names, index=default_y, format_func=lambda n: charts.with_unit(n, units[n]))
    pairs = queries.bulk_pair(x=x_name, y=y_name, material_ids=tuple(material_ids), method_ids=tuple(method_ids))
    st.plotly_chart(charts.property_scatter(pairs, x_name=x_name, y_name=y_name), width="stretch")
    st.caption("One point per material × method (newest value when several sources give one). "
               "Filters on material and method apply; the property filter and search do not.")

with tab_table:
    total = int(queries.bulk_values_count(**filters).iloc[0]["n"])
    values = queries.bulk_values(**filters)
    shown = f"{len(values):,} newest of {total:,}" if total > len(values) else f"{total:,}"
    st.caption(f"{shown} values; value and uncertainty are in the unit of their row.")
    if values.empty:
        st.info("No values match the filters.")
    else:
        values = values.assign(unit=values["unit"].map(charts.unit_label))
        st.dataframe(
            values[["id", "material", "prototype", "method", "property", "value", "uncertainty", "unit", "flag",
                    "source_kind", "source_uri", "job_run_id", "created_at"]],
            hide_index=True, width="stretch",
            column_config={"value": st.column_config.NumberColumn("value", format="%.6g"),
                           "uncertainty": st.column_config.NumberColumn("± uncertainty", format="%.3g"),
                           "id": st.column_config.NumberColumn("value id", format="%d")},
        )
