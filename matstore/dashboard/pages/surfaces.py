"""Surfaces: γ, τ and stiffness per orientation, orientation map, equilibrium crystal shape.

Opens on the material × method with the most surfaces (the choice is kept in the URL).  The
orientation map and the Wulff shape are drawn in 2D (SVG) first; the rotatable 3D Wulff
shape (two Plotly traces, WebGL) is one toggle away.
Flagged values are shown in red (table column ``flag``, red bars) and left out of the Wulff
construction.
"""

from __future__ import annotations

import streamlit as st

from matstore.dashboard import charts, labels, queries, state

_wulff = st.cache_data(ttl=queries.TTL_S, show_spinner=False)(charts.wulff_shape)

st.title("Surfaces")

choices = labels.add_source_labels(queries.surface_choices())
if choices.empty:
    st.info("No surface values stored yet.")
    st.stop()

keys = [state.material_method_key(r.material_id, r.method_id) for r in choices.itertuples()]
names = {k: f"{r.material} ({r.prototype}) · {r.method} [{r.source}] — {int(r.n_surfaces)} surfaces"
         + (f", {int(r.n_flagged)} flagged values" if r.n_flagged else "")
         for k, r in zip(keys, choices.itertuples(), strict=True)}
# Most surfaces first; among equals, a computed set (EMT, LAMMPS) before a table's, fewest flags.
rank = choices.assign(table=choices["source"].isin(["OpenKIM", "DFT"]))
richest = keys[rank.sort_values(["n_surfaces", "table", "n_flagged"], ascending=[False, True, True]).index[0]]
pick = state.choose("Material and method", names, param="pick", default=richest)
choice = choices.iloc[keys.index(pick)]
long = queries.surface_values(material_id=int(choice.material_id), method_id=int(choice.method_id))
wide = charts.surface_wide(long)
units = charts.surface_units(long)
flag_columns = [c for c in wide.columns if c.endswith("_flag")]

st.subheader("Per orientation")
st.caption(f"Source: {choice.source} ({choice.method}). Values in red / with a flag failed validation at "
           "ingest and are kept with the reason.")
display = wide.assign(flag=wide[flag_columns].bfill(axis=1).iloc[:, 0] if flag_columns else "")
columns = ["orientation", "theta_deg", "phi_deg"] + [c for c in wide.columns if c in units] + ["flag"]
config = {
    "theta_deg": st.column_config.NumberColumn("θ from [100]", format="%.2f°"),
    "phi_deg": st.column_config.NumberColumn("φ about [100]", format="%.2f°"),
}
for name in units:
    symbol = dict(charts.SURFACE_COLUMNS).get(name, "")
    config[name] = st.column_config.NumberColumn(charts.with_unit(f"{symbol} {name}".strip(), units[name]),
                                                 format="%.4f")
st.dataframe(labels.blank_missing(display[columns]), hide_index=True, width="stretch", column_config=config)
st.plotly_chart(charts.surface_bars(wide, units), width="stretch")

left, right = st.columns(2)
with left:
    st.subheader("Orientation map")
    mappable = [n for n in units if wide[n].notna().any()]
    default = mappable.index("surface_energy") if "surface_energy" in mappable else 0
    prop = st.selectbox("Property", mappable, index=default, format_func=lambda n: charts.with_unit(n, units[n]))
    st.plotly_chart(charts.orientation_map(wide, prop=prop, unit=units.get(prop)), width="stretch")
    st.caption("Stereographic projection of the surface normals onto the standard triangle "
               "[100]–[110]–[111] (θ from [100], φ about [100] from the (001) mirror plane).")

with right:
    st.subheader("Equilibrium crystal shape")
    lattice = queries.lattice_constant(material_id=int(choice.material_id), method_id=int(choice.method_id))
    if lattice.empty:
        a, note = 1.0, "no lattice constant stored: shape drawn for a = 1 Å (the shape does not depend on a)"
    else:
        a = float(lattice.iloc[0]["value"])
        origin = "" if bool(lattice.iloc[0]["same_method"]) else f" (from {lattice.iloc[0]['method']})"
        note = f"cubic lattice constant a = {charts.format_value(a, 'angstrom', 5)}{origin}"
    try:
        figure, metrics = _wulff(wide, lattice_constant=a)
    except ValueError as exc:
        st.info(f"No Wulff shape: {exc}.")
    else:
        three_d = st.toggle("3D (rotatable)", value=state.get_text("wulff") == "3d",
                            help="The 2D view is the shape seen from a fixed direction; 3D needs WebGL")
        state.keep("wulff", "3d" if three_d else None)
        st.plotly_chart(figure if three_d else metrics["projection"], width="stretch")
        if not three_d:
            st.caption("Seen from a fixed direction; facets coloured by γ (lighter: lower γ, hover: value).")
        m1, m2, m3 = st.columns(3)
        m1.metric("Shape factor", f"{metrics['shape_factor']:.3f}",
                  help="pymatgen's WulffShape.shape_factor: surface area / volume^(2/3) of the Wulff shape "
                       "(dimensionless; a sphere has (36π)^(1/3) ≈ 4.836, a cube 6)")
        m2.metric("Anisotropy", f"{metrics['anisotropy']:.4f}",
                  help="pymatgen's WulffShape.anisotropy: standard deviation of γ / area-weighted mean γ")
        m3.metric("Weighted γ (J/m²)", f"{metrics['weighted_surface_energy']:.4g}",
                  help="area-weighted mean surface energy of the Wulff shape")
        st.caption(note + f"; {metrics['n_facets_used']} Miller families used (orientations given only "
                   "by angles and flagged values are not part of the construction).")
        st.dataframe(
            [{"facet": k, "area fraction": v} for k, v in sorted(metrics["area_fraction"].items())],
            hide_index=True, column_config={"area fraction": st.column_config.ProgressColumn(
                "area fraction", format="%.3f", min_value=0.0, max_value=1.0)},
        )
