"""Plotly figures of the dashboard: pure functions of DataFrames (no database, no Streamlit).

Stereographic projection (standard triangle [100]–[110]–[111], conventions of
:mod:`matstore.orientation`): a unit normal ``n`` with ``n_x >= n_y >= n_z >= 0`` is projected
from the pole −[100] onto the plane through the origin normal to [100]::

    X = n_y / (1 + n_x),    Y = n_z / (1 + n_x)

so [100] maps to (0, 0), [110] to (√2 − 1, 0) ≈ (0.414, 0) and [111] to
((√3 − 1)/2, (√3 − 1)/2) ≈ (0.366, 0.366).  The edges [100]–[110] (n_z = 0) and
[100]–[111] (n_y = n_z) are straight lines; [110]–[111] (n_x = n_y) is a circular arc.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

_UNIT_LABELS = {
    "angstrom": "Å",
    "J/m^2": "J/m²",
    "eV/atom": "eV/atom",
    "1/K": "1/K",
    "dimensionless": "",
    "percent": "%",
}

#: Surface properties shown per Miller index: (name, column label base).
SURFACE_COLUMNS = (("surface_energy", "γ"), ("surface_stress", "τ"), ("surface_stiffness", "S"))


def unit_label(unit: str | None) -> str:
    """Display form of a canonical unit (``J/m^2`` → ``J/m²``, ``angstrom`` → ``Å``)."""
    if unit is None:
        return ""
    return _UNIT_LABELS.get(unit, unit)


def with_unit(name: str, unit: str | None) -> str:
    """``name (unit)``, or ``name`` for dimensionless quantities."""
    label = unit_label(unit)
    return f"{name} ({label})" if label else name


def format_value(value: float | None, unit: str | None, digits: int = 4) -> str:
    """A value with its unit, e.g. ``1.234 J/m²``; ``–`` for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    label = unit_label(unit)
    return f"{value:.{digits}g} {label}".strip()


def _empty(message: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(height=300)
    return fig


# --- overview and jobs --------------------------------------------------------------------

def job_status_bars(counts: pd.DataFrame) -> go.Figure:
    """Stacked bars of job runs per kind, coloured by status (``kind, status, n``)."""
    if counts.empty:
        return _empty("no job runs yet")
    colours = {"succeeded": "#2ca02c", "failed": "#d62728", "running": "#1f77b4", "skipped": "#7f7f7f"}
    fig = px.bar(counts, x="kind", y="n", color="status", color_discrete_map=colours,
                 labels={"n": "job runs", "kind": "job kind"})
    fig.update_layout(height=320, margin={"t": 30, "b": 10})
    return fig


# --- bulk properties ----------------------------------------------------------------------

#: Marker of a value that failed validation (kept with its flag at ingest).
FLAG_COLOUR = "#d62728"
FLAGGED_TRACE = "flagged values"


def pearson_r(x: pd.Series, y: pd.Series) -> float | None:
    """Pearson correlation coefficient of two columns, ``None`` below 3 points or without spread."""
    if len(x) < 3 or x.nunique() < 2 or y.nunique() < 2:
        return None
    return float(np.corrcoef(x.astype(float), y.astype(float))[0, 1])


def property_scatter(pairs: pd.DataFrame, *, x_name: str, y_name: str, show_flagged: bool = True,
                     flagged_in_r: bool = False) -> go.Figure:
    """Scatter of one bulk property against another, coloured by material, flagged values marked.

    Parameters
    ----------
    pairs:
        Output of :func:`matstore.dashboard.queries.bulk_pair` (``material, method, x, y,
        x_unit, y_unit, x_flag, y_flag`` and optionally ``source``); each point is one
        material × method (interatomic potential).
    x_name, y_name:
        Property names for the axis titles.
    show_flagged:
        Draw points with a flagged x or y value (ringed in red, the flag in the hover).
    flagged_in_r:
        Include flagged points in the Pearson r of the title (default: left out, said so).
    """
    if pairs.empty:
        return _empty(f"no material × method has both {x_name} and {y_name}")
    flag_x = pairs["x_flag"] if "x_flag" in pairs else pd.Series(None, index=pairs.index)
    flag_y = pairs["y_flag"] if "y_flag" in pairs else pd.Series(None, index=pairs.index)
    pairs = pairs.assign(flag=flag_x.fillna(flag_y).fillna(""), status=np.where(flag_x.notna() | flag_y.notna(),
                                                                                 "flagged", "passed"))
    flagged = pairs["status"] == "flagged"
    drawn = pairs if show_flagged else pairs[~flagged]
    hover = {c: True for c in ("method", "source", "flag") if c in drawn.columns}
    x_title = with_unit(x_name, pairs["x_unit"].iloc[0])
    y_title = with_unit(y_name, pairs["y_unit"].iloc[0])
    fig = px.scatter(drawn, x="x", y="y", color="material", hover_data=hover, labels={"x": x_title, "y": y_title},
                     render_mode="webgl" if len(drawn) > 2000 else "auto")
    fig.update_traces(marker={"size": 9, "line": {"width": 0.5, "color": "white"}})
    if show_flagged and flagged.any():
        marked = pairs[flagged]
        fig.add_trace(go.Scatter(x=marked["x"], y=marked["y"], mode="markers", name=FLAGGED_TRACE,
                                 marker={"size": 16, "symbol": "circle-open", "color": FLAG_COLOUR, "line": {"width": 2}},
                                 text=marked["method"] + "<br>" + marked["flag"],
                                 hovertemplate="%{text}<extra>flagged</extra>"))
    used = pairs if flagged_in_r else pairs[~flagged]
    r = pearson_r(used["x"], used["y"])
    left_out = "" if flagged_in_r or not flagged.any() else f"; {int(flagged.sum())} flagged left out"
    title = f"{len(used)} material × method pairs" + (f", Pearson r = {r:.3f}" if r is not None else "") + left_out
    fig.update_layout(title=title, height=480, margin={"t": 50})
    return fig


# --- surfaces -----------------------------------------------------------------------------

def orientation_label(row: pd.Series) -> str:
    """``(h,k,l)`` for rational surfaces, ``θ=…°, φ=…°`` for orientations given by angles."""
    if pd.notna(row.get("miller_h")):
        return f"({int(row['miller_h'])},{int(row['miller_k'])},{int(row['miller_l'])})"
    return f"θ={row['theta_deg']:.2f}°, φ={row['phi_deg']:.2f}°"


def surface_wide(values: pd.DataFrame) -> pd.DataFrame:
    """One row per surface with γ, τ, S (and the other surface properties) as columns.

    Parameters
    ----------
    values:
        Long form from :func:`matstore.dashboard.queries.surface_values`.

    Returns
    -------
    pandas.DataFrame
        ``surface_id, orientation, miller_h, miller_k, miller_l, theta_deg, phi_deg, normal_x,
        normal_y, normal_z``, one column per property name (values in the canonical unit,
        see :func:`surface_units`) and ``<property>_flag`` where a value of it is flagged,
        sorted by θ then φ.
    """
    keys = ["surface_id", "miller_h", "miller_k", "miller_l", "theta_deg", "phi_deg",
            "normal_x", "normal_y", "normal_z"]
    if values.empty:
        return pd.DataFrame(columns=["orientation", *keys])
    geometry = values[keys].drop_duplicates("surface_id").set_index("surface_id")
    table = values.pivot_table(index="surface_id", columns="property", values="value", aggfunc="first")
    if "flag" in values.columns and values["flag"].notna().any():
        flags = values.dropna(subset=["flag"]).pivot_table(index="surface_id", columns="property", values="flag",
                                                           aggfunc="first")
        table = table.join(flags.add_suffix("_flag"))
    wide = geometry.join(table).reset_index()
    wide.insert(0, "orientation", wide.apply(orientation_label, axis=1))
    return wide.sort_values(["theta_deg", "phi_deg"]).reset_index(drop=True)


def surface_units(values: pd.DataFrame) -> dict[str, str]:
    """Canonical unit of each surface property in ``values`` (property → unit)."""
    if values.empty:
        return {}
    return dict(values.drop_duplicates("property")[["property", "unit"]].itertuples(index=False))


def surface_bars(wide: pd.DataFrame, units: dict[str, str]) -> go.Figure:
    """γ, τ and S per orientation as bar panels (each in its own unit); flagged bars in red.

    ``wide`` may carry ``<property>_flag`` columns (see :func:`surface_wide`).
    """
    present = [(name, sym) for name, sym in SURFACE_COLUMNS if name in wide.columns]
    if wide.empty or not present:
        return _empty("no surface energy, stress or stiffness for this material and method")
    fig = make_subplots(rows=1, cols=len(present),
                        subplot_titles=[with_unit(f"{sym} {name.replace('_', ' ')}", units.get(name))
                                        for name, sym in present])
    for i, (name, _sym) in enumerate(present, start=1):
        flags = wide.get(f"{name}_flag", pd.Series("", index=wide.index)).fillna("")
        colours = np.where(flags != "", FLAG_COLOUR, "#1f77b4")
        fig.add_trace(go.Bar(x=wide["orientation"], y=wide[name], name=name, showlegend=False,
                             marker={"color": list(colours)}, customdata=flags,
                             hovertemplate="%{x}: %{y:.4g} " + unit_label(units.get(name))
                             + "<br>%{customdata}<extra></extra>"),
                      row=1, col=i)
    fig.update_layout(height=360, margin={"t": 40, "b": 10})
    return fig


def stereographic_xy(normals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stereographic coordinates (X, Y) of unit normals (N, 3), projected from −[100]."""
    normals = np.atleast_2d(np.asarray(normals, dtype=float))
    denominator = 1.0 + normals[:, 0]
    return normals[:, 1] / denominator, normals[:, 2] / denominator


def _triangle_traces() -> list[go.Scatter]:
    t = np.linspace(0.0, 1.0, 60)[:, None]
    arc = (1 - t) * np.array([1.0, 1.0, 0.0]) + t * np.array([1.0, 1.0, 1.0])
    arc /= np.linalg.norm(arc, axis=1, keepdims=True)
    corners = np.array([[1.0, 0, 0], [1.0, 1.0, 0] / np.sqrt(2)])
    pts = np.vstack([corners, arc, [[1.0, 0, 0]]])
    x, y = stereographic_xy(pts)
    edge = go.Scatter(x=x, y=y, mode="lines", line={"color": "black", "width": 1.5},
                      hoverinfo="skip", showlegend=False)
    cx, cy = stereographic_xy(np.array([[1.0, 0, 0], [1, 1, 0] / np.sqrt(2), [1, 1, 1] / np.sqrt(3)]))
    labels = go.Scatter(x=cx, y=cy, mode="text", text=["[100] ", " [110]", " [111]"],
                        textposition=["middle left", "middle right", "middle right"],
                        hoverinfo="skip", showlegend=False, textfont={"size": 13, "color": "#555"})
    return [edge, labels]


def _triangle_layout(fig: go.Figure, title: str) -> go.Figure:
    fig.update_xaxes(visible=False, range=[-0.09, 0.5])
    fig.update_yaxes(visible=False, range=[-0.05, 0.42], scaleanchor="x", scaleratio=1)
    fig.update_layout(title=title, height=460, margin={"t": 50, "l": 10, "r": 10, "b": 10},
                      plot_bgcolor="white")
    return fig


def orientation_map(wide: pd.DataFrame, *, prop: str, unit: str | None) -> go.Figure:
    """A surface property over the standard stereographic triangle [100]–[110]–[111].

    Parameters
    ----------
    wide:
        Output of :func:`surface_wide` (needs ``normal_x/y/z``, ``orientation`` and ``prop``).
    prop:
        Property column to colour by, e.g. ``surface_energy``.
    unit:
        Its canonical unit (colour bar title).

    Values with a ``<prop>_flag`` are ringed in red (the flag in the hover).
    """
    if wide.empty or prop not in wide.columns or wide[prop].isna().all():
        return _empty(f"no {prop} values to map")
    data = wide.dropna(subset=[prop])
    x, y = stereographic_xy(data[["normal_x", "normal_y", "normal_z"]].to_numpy())
    fig = go.Figure(_triangle_traces())
    fig.add_trace(go.Scatter(
        x=x, y=y, mode="markers+text", text=data["orientation"], textposition="top center",
        marker={"size": 16, "color": data[prop], "colorscale": "Viridis", "showscale": True,
                "line": {"width": 1, "color": "black"},
                "colorbar": {"title": {"text": with_unit(prop.replace("_", " "), unit)}}},
        customdata=data[prop], showlegend=False,
        hovertemplate="%{text}: %{customdata:.4g} " + unit_label(unit) + "<extra></extra>",
    ))
    flag_column = f"{prop}_flag"
    if flag_column in data.columns and data[flag_column].notna().any():
        flagged = data[flag_column].notna().to_numpy()
        fig.add_trace(go.Scatter(x=x[flagged], y=y[flagged], mode="markers", name=FLAGGED_TRACE,
                                 marker={"size": 24, "symbol": "circle-open", "color": FLAG_COLOUR, "line": {"width": 2}},
                                 text=data.loc[flagged, flag_column], hovertemplate="%{text}<extra>flagged</extra>"))
    return _triangle_layout(fig, f"{prop.replace('_', ' ')} over the stereographic triangle")


def orientation_function_map(
    normals: np.ndarray, values: np.ndarray, *, title: str, points: pd.DataFrame | None = None
) -> go.Figure:
    """An orientation function g evaluated on a grid of normals, over the standard triangle.

    Parameters
    ----------
    normals:
        (N, 3) unit normals in the triangle (see :func:`matstore.dashboard.orientation_g.triangle_grid`).
    values:
        (N,) g at those normals (NaN where undefined).
    points:
        Optional surfaces to mark (``normal_x/y/z`` and ``orientation`` columns).
    """
    x, y = stereographic_xy(normals)
    ok = np.isfinite(values)
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=x[ok], y=y[ok], mode="markers", showlegend=False,
        marker={"size": 7, "color": values[ok], "colorscale": "Plasma", "showscale": True,
                "colorbar": {"title": {"text": "g"}}},
        customdata=values[ok], hovertemplate="g = %{customdata:.4g}<extra></extra>",
    ))
    for trace in _triangle_traces():
        fig.add_trace(trace)
    if points is not None and not points.empty:
        px_, py_ = stereographic_xy(points[["normal_x", "normal_y", "normal_z"]].to_numpy())
        fig.add_trace(go.Scatter(x=px_, y=py_, mode="markers+text", text=points["orientation"],
                                 textposition="top center", showlegend=False,
                                 marker={"size": 9, "color": "white", "line": {"width": 1.5, "color": "black"}}))
    return _triangle_layout(fig, title)


def wulff_shape(
    surfaces: pd.DataFrame, *, lattice_constant: float, energy_column: str = "surface_energy"
) -> tuple[go.Figure, dict[str, Any]]:
    """Equilibrium crystal shape (Wulff construction) of a cubic crystal.

    Uses :class:`pymatgen.analysis.wulff.WulffShape` on the conventional cubic lattice of
    edge ``lattice_constant`` with the surface energies of the surfaces that have a Miller
    index (orientations given only by angles, and flagged values, are left out).  The figure
    is drawn with two traces (all facets in one ``Mesh3d`` coloured by γ, all facet edges in
    one ``Scatter3d``) instead of pymatgen's one mesh per facet, so that a shape with a
    hundred facets renders in a browser in well under a second.

    Parameters
    ----------
    surfaces:
        Output of :func:`surface_wide` with ``miller_h/k/l`` and ``energy_column`` (J/m²).
    lattice_constant:
        Cubic lattice constant, Å.

    Returns
    -------
    figure:
        The shape in 3D, facets coloured by surface energy (J/m²), hover: Miller index and γ.
    metrics:
        ``projection`` (the same shape as a light 2D figure, see :func:`_wulff_projection`),
        ``shape_factor`` (pymatgen's surface area / volume^(2/3), dimensionless),
        ``anisotropy``, ``weighted_surface_energy`` (J/m²), ``effective_radius`` (Å),
        ``area_fraction`` ({"(h,k,l)": fraction}) and ``n_facets_used``.

    Raises
    ------
    ValueError
        If fewer than one surface with a Miller index and a positive energy is available.
    """
    from pymatgen.analysis.wulff import WulffShape
    from pymatgen.core import Lattice

    usable = surfaces.dropna(subset=["miller_h", energy_column]) if energy_column in surfaces else surfaces.iloc[0:0]
    if f"{energy_column}_flag" in usable.columns:
        usable = usable[usable[f"{energy_column}_flag"].isna()]
    usable = usable[usable[energy_column] > 0]
    if usable.empty:
        raise ValueError("no surface with a Miller index and a positive, unflagged surface energy")
    miller = [(int(r.miller_h), int(r.miller_k), int(r.miller_l)) for r in usable.itertuples()]
    shape = WulffShape(Lattice.cubic(float(lattice_constant)), miller, usable[energy_column].astype(float).tolist())
    metrics = {
        "shape_factor": float(shape.shape_factor),
        "anisotropy": float(shape.anisotropy),
        "weighted_surface_energy": float(shape.weighted_surface_energy),
        "effective_radius": float(shape.effective_radius),
        "area_fraction": {"(" + ",".join(map(str, hkl)) + ")": float(v) for hkl, v in shape.area_fraction_dict.items()},
        "n_facets_used": len(miller),
    }
    return _wulff_figure(shape), metrics | {"projection": _wulff_projection(shape)}


def _wulff_projection(shape: Any, view: tuple[float, float, float] = (0.31, 0.42, 0.85)) -> go.Figure:
    """The Wulff shape seen from ``view`` (a unit direction) as flat SVG polygons, one per facet.

    Facets facing the viewer (normal · view > 0) are drawn back to front in the plane normal to
    ``view``, coloured by their family's γ; a light 2D figure that renders at once (the 3D
    figure needs WebGL).
    """
    v = np.asarray(view, dtype=float) / np.linalg.norm(view)
    e1 = np.cross([0.0, 0.0, 1.0], v)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(v, e1)
    energies = [f.e_surf for f in shape.facets if f.points]
    lo, hi = min(energies), max(energies)
    scale = px.colors.sequential.PuBu
    fig = go.Figure()
    visible = [f for f in shape.facets if f.points and float(np.dot(f.normal, v)) > 1e-9]
    for facet in sorted(visible, key=lambda f: float(np.dot(f.normal, v))):
        ring = np.asarray(shape.get_line_in_facet(facet), dtype=float)[0::2]
        ring = np.vstack([ring, ring[:1]])
        level = 0.5 if hi == lo else (facet.e_surf - lo) / (hi - lo)
        colour = px.colors.sample_colorscale(scale, [0.15 + 0.8 * level])[0]
        hkl = "(" + ",".join(str(i) for i in shape.miller_list[facet.index]) + ")"
        fig.add_trace(go.Scatter(x=ring @ e1, y=ring @ e2, fill="toself", mode="lines", fillcolor=colour,
                                 line={"color": "black", "width": 1}, name=hkl, showlegend=False,
                                 hovertemplate=f"{hkl}: γ = {facet.e_surf:.4g} J/m²<extra></extra>"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, scaleanchor="x", scaleratio=1)
    fig.update_layout(height=420, margin={"t": 10, "l": 0, "r": 0, "b": 0}, plot_bgcolor="white")
    return fig


def _wulff_figure(shape: Any) -> go.Figure:
    """Facets of a pymatgen ``WulffShape`` as one Mesh3d and their edges as one Scatter3d."""
    vertices, faces, energy, labels = [], [], [], []
    edge_x: list[float | None] = []
    edge_y: list[float | None] = []
    edge_z: list[float | None] = []
    for facet in shape.facets:
        if not facet.points:
            continue
        hkl = "(" + ",".join(str(i) for i in shape.miller_list[facet.index]) + ")"
        for triangle in facet.points:
            start = len(vertices)
            vertices.extend(np.asarray(triangle, dtype=float))
            faces.append((start, start + 1, start + 2))
            energy.extend([facet.e_surf] * 3)
            labels.extend([hkl] * 3)
        # Edges drawn 0.3 % outside the faces, so that the faces do not hide them (z-fighting).
        line = 1.003 * np.asarray(shape.get_line_in_facet(facet), dtype=float)
        for a, b in zip(line[0::2], line[1::2], strict=False):
            edge_x += [a[0], b[0], None]
            edge_y += [a[1], b[1], None]
            edge_z += [a[2], b[2], None]
    xyz, ijk = np.asarray(vertices), np.asarray(faces)
    fig = go.Figure([
        go.Mesh3d(x=xyz[:, 0], y=xyz[:, 1], z=xyz[:, 2], i=ijk[:, 0], j=ijk[:, 1], k=ijk[:, 2],
                  intensity=energy, intensitymode="vertex", colorscale="PuBu", flatshading=True, name="facets",
                  colorbar={"title": {"text": "γ (J/m²)"}}, text=labels,
                  hovertemplate="%{text}: γ = %{intensity:.4g} J/m²<extra></extra>"),
        go.Scatter3d(x=edge_x, y=edge_y, z=edge_z, mode="lines", line={"color": "black", "width": 2},
                     hoverinfo="skip", showlegend=False, name="edges"),
    ])
    axis = {"visible": False}
    fig.update_layout(height=480, margin={"t": 10, "l": 0, "r": 0, "b": 0},
                      scene={"xaxis": axis, "yaxis": axis, "zaxis": axis, "aspectmode": "data"})
    return fig


def method_comparison(values: pd.DataFrame, *, prop: str) -> go.Figure:
    """One surface property per orientation, one bar group per method (side by side).

    Parameters
    ----------
    values:
        Output of :func:`matstore.dashboard.queries.surface_comparison` with an
        ``orientation`` column added (and optionally ``source``).
    prop:
        Property name for the axis title.
    """
    if values.empty:
        return _empty(f"no {prop} values for these methods")
    unit = values["unit"].iloc[0]
    order = values.sort_values(["theta_deg", "phi_deg"])["orientation"].drop_duplicates().tolist()
    data = values.assign(flag=values["flag"].fillna(""),
                         pattern=np.where(values["flag"].notna(), "flagged", "passed"))
    fig = px.bar(data, x="orientation", y="value", color="method", barmode="group", pattern_shape="pattern",
                 pattern_shape_map={"passed": "", "flagged": "x"}, category_orders={"orientation": order},
                 hover_data={c: True for c in ("source", "flag") if c in data.columns},
                 labels={"value": with_unit(prop.replace("_", " "), unit), "orientation": "orientation"})
    for trace in fig.data:  # legend: the method; ", flagged" only on hatched bars
        trace.name = trace.name.removesuffix(", passed")
    fig.update_layout(height=440, margin={"t": 30}, legend={"title": "method"})
    return fig


# --- equations ----------------------------------------------------------------------------

def pareto_front(front: pd.DataFrame, *, selected: int | None, loss_title: str = "loss",
                 title: str | None = None) -> go.Figure:
    """Loss against complexity of the candidate equations, the selected one marked.

    Parameters
    ----------
    front:
        ``complexity, loss`` and optionally ``text`` per candidate.
    selected:
        Row position of the selected equation in ``front`` (``None``: unknown).
    loss_title:
        Axis title of the loss with its unit, e.g. ``training MSE ((J/m²)²)``.
    title:
        Figure title (e.g. which front this is).
    """
    if front.empty or not {"complexity", "loss"} <= set(front.columns):
        return _empty("no Pareto front stored")
    front = front.sort_values("complexity").reset_index()
    hover = front["text"] if "text" in front.columns else None
    fig = go.Figure(go.Scatter(x=front["complexity"], y=front["loss"], mode="lines+markers", name="Pareto front",
                               text=hover, hovertemplate="complexity %{x}<br>loss %{y:.4g}<br>%{text}<extra></extra>"))
    if selected is not None:
        chosen = front[front["index"] == selected]
        fig.add_trace(go.Scatter(x=chosen["complexity"], y=chosen["loss"], mode="markers", name="selected",
                                 marker={"size": 16, "symbol": "star", "color": "#d62728"}))
    positive = bool((front["loss"] > 0).all())
    fig.update_yaxes(type="log" if positive else "linear", title=loss_title, exponentformat="power")
    fig.update_xaxes(title="complexity")
    fig.update_layout(height=380, margin={"t": 40 if title else 30}, title=title)
    return fig


def parity_plot(predictions: pd.DataFrame, *, target: str, unit: str | None) -> go.Figure:
    """Predicted against observed values (fit and cross-validated), coloured by material."""
    if predictions.empty:
        return _empty("no predictions stored for this version")
    ids = ["material", "method", "observed"] + (["orientation"] if "orientation" in predictions.columns else [])
    long = predictions.melt(id_vars=ids, value_vars=["predicted", "cv_predicted"],
                            var_name="kind", value_name="value").dropna(subset=["value"])
    if long.empty:
        return _empty("no predictions stored for this version")
    fig = px.scatter(long, x="observed", y="value", color="material", symbol="kind", hover_data=ids[1:2] + ids[3:],
                     labels={"observed": with_unit(f"observed {target}", unit),
                             "value": with_unit(f"predicted {target}", unit)})
    lo = float(min(long["observed"].min(), long["value"].min()))
    hi = float(max(long["observed"].max(), long["value"].max()))
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", line={"dash": "dash", "color": "grey"},
                             name="y = x", hoverinfo="skip"))
    fig.update_layout(height=440, margin={"t": 30})
    return fig


def residuals_by_material(predictions: pd.DataFrame, *, unit: str | None) -> go.Figure:
    """Residuals (predicted − observed) of the fit per material, one box each."""
    data = predictions.dropna(subset=["predicted"]) if not predictions.empty else predictions
    if data.empty:
        return _empty("no predictions stored for this version")
    data = data.assign(residual=data["predicted"] - data["observed"])
    fig = px.box(data, x="material", y="residual", points="all", hover_data=["method"],
                 labels={"residual": with_unit("predicted − observed", unit)})
    fig.add_hline(y=0, line_dash="dash", line_color="grey")
    fig.update_layout(height=380, margin={"t": 30})
    return fig
