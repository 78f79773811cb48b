"""Surfaces: γ, τ and stiffness per orientation, orientation map, equilibrium crystal shape."""

from __future__ import annotations

import streamlit as st

from matstore.dashboard import charts, queries

_wulff = st.cache_data(ttl=queries.TTL_S, show_spinner=False)(charts.wulff_shape)

st.title("Surfaces")

choices = queries.surface_choices()
if choices.empty:
    st.info("No surface values stored yet.")
    st.stop()

labels = {i: f"{r.material} ({r.prototype}) · {r.method} — {int(r.n_surfaces)} surfaces"
          for i, r in choices.iterrows()}
pick = st.selectbox("Material and method", list(labels), format_func=labels.get)
choice = choices.loc[pick]
long = queries.surface_values(material_id=int(choice.material_id), method_id=int(choice.method_id))
wide = charts.surface_wide(long)
units = charts.surface_units(long)

st.subheader("Per orientation")
columns = ["orientation", "theta_deg", "phi_deg"] + [c for c in wide.columns if c in units]
config = {
    "theta_deg": st.column_config.NumberColumn("θ from [100]", format="%.2f°"),
    "phi_deg": st.column_config.NumberColumn("φ about [100]", format="%.2f°"),
}
for name in units:
    symbol = dict(charts.SURFACE_COLUMNS).get(name, "")
    title = charts.with_unit(f"{symbol} {name}".strip(), units[name])
    config[name] = st.column_config.NumberColumn(title, format="%.4f")
st.dataframe(wide[columns], hide_index=True, width="stretch", column_config=config)
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
        st.plotly_chart(figure, width="stretch")
        m1, m2, m3 = st.columns(3)
        m1.metric("Shape factor", f"{metrics['shape_factor']:.3f}", help="area^1.5 / volume of the Wulff shape")
        m2.metric("Anisotropy", f"{metrics['anisotropy']:.4f}", help="standard deviation of γ / weighted mean γ")
        m3.metric("Weighted γ (J/m²)", f"{metrics['weighted_surface_energy']:.4g}",
                  help="area-weighted mean surface energy of the Wulff shape")
        st.caption(note + f"; {metrics['n_facets_used']} Miller families used (orientations given only "
                   "by angles are not part of the construction).")
        st.dataframe(
            [{"facet": k, "area fraction": v} for k, v in sorted(metrics["area_fraction"].items())],
            hide_index=True, column_config={"area fraction": st.column_config.ProgressColumn(
                "area fraction", format="%.3f", min_value=0.0, max_value=1.0)},
        )
