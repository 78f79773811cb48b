"""Bulk properties: a filterable table with units and a scatter of any property against any other.

Each point of the scatter is one material × method (e.g. one interatomic potential), so the
plot shows how properties co-vary across potentials (cross-scale covariance, e.g. strength
against vacancy migration energy).  Values flagged at ingest (e.g. potentials the study
disqualified, strengths with stacking-fault jamming) are ringed in red, can be hidden, and
are left out of the correlation unless asked.  Selections live in the URL.
"""

from __future__ import annotations

import streamlit as st

from matstore.dashboard import charts, labels, queries, state

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
                                  default=state.get_ints("material", material_label), placeholder="all materials")
    method_ids = f2.multiselect("Method / potential", list(method_label), format_func=method_label.get,
                                default=state.get_ints("method", method_label), placeholder="all methods")
    definition_ids = f3.multiselect("Property", list(definition_label), format_func=definition_label.get,
                                    default=state.get_ints("property", definition_label), placeholder="all properties")
    search = st.text_input("Search", value=state.get_text("q"), max_chars=200,
                           placeholder="words of a material, method or property name, e.g. Cu vacancy")
    show_flagged = st.toggle("Show flagged values", value=state.get_text("flagged", "1") != "0",
                             help="Values that failed validation at ingest or that the source set aside, "
                                  "kept in the store with the reason (the flag).")
for name, value in (("material", material_ids), ("method", method_ids), ("property", definition_ids), ("q", search)):
    state.keep(name, value)
state.keep("flagged", None if show_flagged else "0")

filters = {"material_ids": tuple(material_ids), "method_ids": tuple(method_ids),
           "definition_ids": tuple(definition_ids), "search": search}

tab_scatter, tab_table = st.tabs(["Property vs property", "Table"])

with tab_scatter:
    names = definitions["name"].tolist()
    units = dict(zip(definitions["name"], definitions["unit"], strict=True))
    default_x = names.index("vacancy_migration_energy") if "vacancy_migration_energy" in names else 0
    default_y = names.index("strength") if "strength" in names else min(1, len(names) - 1)
    cx, cy, cr = st.columns([2, 2, 1])
    x_name = cx.selectbox("x", names, index=state.index_of(names, state.get_text("x"), default_x),
                          format_func=lambda n: charts.with_unit(n, units[n]))
    y_name = cy.selectbox("y", names, index=state.index_of(names, state.get_text("y"), default_y),
                          format_func=lambda n: charts.with_unit(n, units[n]))
    flagged_in_r = cr.checkbox("Flagged values in r", value=False,
                               help="By default the correlation is computed without flagged values.")
    state.keep("x", x_name)
    state.keep("y", y_name)
    pairs = labels.add_source_labels(
        queries.bulk_pair(x=x_name, y=y_name, material_ids=tuple(material_ids), method_ids=tuple(method_ids)))
    st.plotly_chart(charts.property_scatter(pairs, x_name=x_name, y_name=y_name, show_flagged=show_flagged,
                                            flagged_in_r=flagged_in_r), width="stretch")
    n_flagged = int((pairs["x_flag"].notna() | pairs["y_flag"].notna()).sum()) if not pairs.empty else 0
    st.caption(
        "One point per material × method (newest value when several sources give one). "
        f"{n_flagged} point(s) have a flagged value (red ring; hover shows the reason)"
        + ("" if flagged_in_r else " and are left out of Pearson r") + ". "
        "Filters on material and method apply; the property filter and search do not.")

with tab_table:
    total = int(queries.bulk_values_count(**filters).iloc[0]["n"])
    values = queries.bulk_values(**filters)
    if not show_flagged:
        values = values[values["flag"].isna()]
    shown = f"{len(values):,} newest of {total:,}" if total > len(values) else f"{total:,}"
    st.caption(f"{shown} values; value and uncertainty are in the unit of their row; "
               "a value's id links to its provenance.")
    if values.empty:
        st.info("No values match the filters.")
    else:
        values = labels.add_source_labels(values).assign(
            unit=values["unit"].map(charts.unit_label),
            link=[state.provenance_url("bulk", i) for i in values["id"]])
        st.dataframe(
            labels.blank_missing(values[["link", "material", "prototype", "method", "source", "property", "value",
                                         "uncertainty", "unit", "flag", "source_kind", "source_uri", "job_run_id",
                                         "created_at"]]),
            hide_index=True, width="stretch",
            column_config={"value": st.column_config.NumberColumn("value", format="%.6g"),
                           "uncertainty": st.column_config.NumberColumn("± uncertainty", format="%.3g"),
                           "link": st.column_config.LinkColumn("value id", display_text=r"value=bulk:(\d+)",
                                                               help="Open the value's provenance"),
                           "source": st.column_config.TextColumn("source", help="DFT, EMT, LAMMPS ‹file›, OpenKIM…"),
                           "source_kind": st.column_config.TextColumn("source kind")},
        )
