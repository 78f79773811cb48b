"""The Predict tab of the Equations page: inputs filled from the store, interval shown.

The user picks a material and method that have the equation's bulk features stored (and, for
a formula stored under several crystal prototypes, which one: ``matstore predict
--prototype``), or a material configuration with its per-configuration values (their newest
values fill the inputs, each still editable) and, for an orientation-dependent
equation, an orientation as a Miller index, a normal or the angles (θ, φ) of the standard
triangle (:mod:`matstore.orientation`).  The result is shown with the version's stored
prediction interval when it has one, else with the residual σ, saying which.  Inputs outside
the version's training domain (a feature beyond its training range, an orientation the fit
never saw, a stored material of a crystal prototype the fit did not train on) are found by
the checks ``matstore predict`` runs (:func:`matstore.models.service.extrapolation`,
:func:`~matstore.models.service.prototype_extrapolation`): one warning each, in its words,
and the result is marked extrapolated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import streamlit as st

from matstore import orientation as ori
from matstore.dashboard import charts, expressions, queries, reports, state
from matstore.dashboard.orientation_g import ORIENTATION_NAMES, evaluate_on, orientation_descriptors

if TYPE_CHECKING:
    from matstore.schema import EquationVersion

_TYPED = "typed"  # URL value of "type the values yourself"


def _source_options(features: list[str], version_id: int) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """Where inputs can come from: material × method pairs (bulk values, key ``m:1:2``) and
    material configurations (per-configuration values, key ``c:17``); training rows first.

    A formula stored under several crystal prototypes with values under one method (Fe as
    Im-3m and Fm-3m) is one option, the first of its materials; the second dict maps its key
    to every one of them (key → label naming the prototype), for the prototype select box
    (:func:`_prototype_twins`, :func:`_stored_inputs`)."""
    names = tuple(features)
    options = {_TYPED: "type the values"}
    choices = queries.feature_choices(names=names, version_id=version_id)
    twins = _prototype_twins(choices, len(features))
    hidden = {key for first, group in twins.items() for key in group if key != first}
    for r in choices.itertuples():
        key = "m:" + state.material_method_key(r.material_id, r.method_id)
        if key not in hidden:
            several = f"; stored as {len(twins[key])} prototypes" if key in twins else ""
            options[key] = (f"{r.material} · {r.method} ({int(r.n_features)}/{len(features)} features stored"
                            f"{', in the training data' if r.trained else ''}{several})")
    for r in queries.configuration_feature_choices(names=names, version_id=version_id).itertuples():
        options[f"c:{int(r.configuration_id)}"] = (
            f"{r.material} · {r.method} · configuration {r.key} ({int(r.n_features)}/{len(features)} features"
            f"{', in the training data' if r.trained else ''})")
    return options, twins


def _prototype_twins(choices: pd.DataFrame, n_features: int) -> dict[str, dict[str, str]]:
    """The materials of one formula and method stored under several crystal prototypes.

    ``choices``: :func:`matstore.dashboard.queries.feature_choices` rows, most complete first.
    Returns, for each such (formula, method), the key of its first row → ``{key: label}`` of
    all its rows, e.g. ``{"m:3:1": {"m:3:1": "Fm-3m (2/2 features stored)", "m:2:1": "Im-3m
    (2/2 features stored)"}}`` (``material.prototype`` as stored, as ``matstore predict
    --prototype`` takes it); empty when every formula has one prototype per method.
    """
    out: dict[str, dict[str, str]] = {}
    for _, rows in choices.groupby(["material", "method_id"], sort=False):
        if len(rows) < 2:
            continue
        group = {}
        for r in rows.itertuples():
            identity = queries.material_identity(material_id=int(r.material_id))
            group["m:" + state.material_method_key(r.material_id, r.method_id)] = (
                f"{identity[1] if identity else '?'} ({int(r.n_features)}/{n_features} features stored"
                f"{', in the training data' if r.trained else ''})")
        out[next(iter(group))] = group
    return out


def _stored_inputs(features: list[str], version_id: int) -> tuple[pd.DataFrame, str]:
    """The stored feature values the user chose (empty when typing), and a widget-key suffix.

    For a formula stored under several prototypes (:func:`_prototype_twins`) a second select
    box picks the prototype whose values are read (URL ``prototype``), as ``matstore predict
    --prototype`` does; the suffix is then that material's key.
    """
    options, twins = _source_options(features, version_id)
    complete = [k for k, label in options.items() if f"({len(features)}/{len(features)}" in label]
    pick = state.choose("Fill the inputs from the store", options, param="from",
                        default=complete[0] if complete else _TYPED)
    if pick in twins:
        pick = state.choose(f"Crystal prototype of {options[pick].split(' · ')[0]} (stored under several)",
                            twins[pick], param="prototype")
    if pick.startswith("m:"):
        material_id, method_id = (int(x) for x in pick[2:].split(":"))
        return queries.feature_values(material_id=material_id, method_id=method_id, names=tuple(features)), pick
    if pick.startswith("c:"):
        return queries.configuration_feature_values(configuration_id=int(pick[2:]), names=tuple(features)), pick
    return pd.DataFrame(), pick


def _orientation_inputs() -> tuple[dict[str, float], ori.Orientation] | None:
    """Orientation as Miller index, normal or angles → every descriptor name, and the orientation
    reduced to the standard triangle; None if invalid."""
    how = st.radio("Orientation given as", ["Miller index", "normal", "angles (θ, φ)"], horizontal=True)
    c1, c2, c3 = st.columns(3)
    try:
        if how == "Miller index":
            hkl = [int(c.number_input(n, value=d, step=1, key=f"p_{n}")) for c, n, d in
                   zip((c1, c2, c3), ("h", "k", "l"), (1, 1, 1), strict=True)]
            o = ori.from_miller(*hkl)
        elif how == "normal":
            o = ori.from_normal([c.number_input(n, value=d, format="%.6g", key=f"p_{n}") for c, n, d in
                                 zip((c1, c2, c3), ("n_x", "n_y", "n_z"), (1.0, 1.0, 1.0), strict=True)])
        else:
            o = ori.from_angles(c1.number_input("θ from [100] (°)", value=54.7356, format="%.4f", key="p_theta"),
                                c2.number_input("φ about [100] (°)", value=45.0, format="%.4f", key="p_phi"))
    except ori.OrientationError as exc:
        st.warning(f"Not a valid orientation: {exc}")
        return None
    st.caption(f"Reduced to the standard triangle: {o.label}, normal ({', '.join(f'{c:.4f}' for c in o.normal)}), "
               f"θ = {o.theta_deg:.3f}°, φ = {o.phi_deg:.3f}°.")
    return orientation_descriptors(o), o


def _feature_inputs(features: list[str], units: dict[str, Any], stored: pd.DataFrame, key: str) -> dict[str, float]:
    by_name = stored.set_index("property") if not stored.empty else pd.DataFrame(columns=["value", "flag"])
    cols = st.columns(max(1, min(3, len(features))))
    inputs = {}
    for i, name in enumerate(features):
        known = name in by_name.index
        value = float(by_name.loc[name, "value"]) if known else float("nan")
        help_text = ("stored value" + (f"; flagged: {by_name.loc[name, 'flag']}" if pd.notna(by_name.loc[name, "flag"])
                                       else "")) if known else "no stored value: type one"
        inputs[name] = cols[i % len(cols)].number_input(
            charts.with_unit(name, units.get(name)), value=value if np.isfinite(value) else None, format="%.6g",
            key=f"x_{name}_{key}", help=help_text)
    return inputs


def prediction_form(version: dict[str, Any]) -> None:
    """Render the Predict tab for one equation version (a dict of its columns)."""
    try:
        expr = expressions.parse_srepr(version["equation_srepr"])
    except expressions.ExpressionError as exc:
        st.warning(f"The stored equation cannot be read: {exc}")
        return
    units = {f.get("name"): f.get("unit") for f in (version.get("features") or []) if isinstance(f, dict)}
    symbols = sorted(s.name for s in expr.free_symbols)
    features = [n for n in symbols if n not in ORIENTATION_NAMES or n in units]
    stored, source = _stored_inputs(features, int(version["id"])) if features else (pd.DataFrame(), _TYPED)
    inputs: dict[str, Any] = _feature_inputs(features, units, stored, key=source)
    orientation = None
    if any(n in ORIENTATION_NAMES and n not in units for n in symbols):
        given = _orientation_inputs()
        if given is None:
            return
        descriptors, orientation = given
        inputs |= {k: x for k, x in descriptors.items() if k not in inputs}
    missing = [n for n in symbols if inputs.get(n) is None]
    if missing:
        st.info(f"Give a value for {', '.join(missing)} to predict.")
        return
    value = float(evaluate_on(expr, pd.DataFrame([inputs]))[0])
    if not np.isfinite(value):
        st.warning("The equation is not a finite real number at these inputs.")
        return
    try:
        flags, lines = domain_check(version, {n: inputs[n] for n in features}, orientation)
    except (KeyError, TypeError) as exc:  # a version whose features are not stored as [{name, unit}]
        flags, lines = [], []
        st.caption(f"The training domain could not be checked: {exc!r}.")
    unseen = prototype_check(version, source)
    flags, lines = flags + (["prototype"] if unseen else []), lines + unseen
    for line in lines:
        st.warning(line)
    _show_result(version, value, flags)


def prototype_check(version: dict[str, Any], source: str) -> list[str]:
    """The warning ``matstore predict`` prints for a stored material of a prototype the fit did not train on.

    ``source``: the input choice of :func:`_stored_inputs` (``m:<material id>:<method id>``
    for a stored material; typed values and configurations are not checked).  The line is
    :func:`matstore.models.service.prototype_extrapolation`'s, e.g. ``"prototype Im-3m: the
    model was trained on Fm-3m only; the prediction is extrapolated and its interval is not
    calibrated there"``; empty otherwise (and for versions fitted before prototypes were stored).
    """
    from matstore.models.service import prototype_extrapolation
    if not source.startswith("m:"):
        return []
    identity = queries.material_identity(material_id=int(source.split(":")[1]))
    if identity is None:
        return []
    return prototype_extrapolation(_as_version(version), [identity[1]])


def _as_version(version: dict[str, Any]) -> EquationVersion:
    """The ``equation_version`` row (a dict of its columns) as the ORM object the models' checks take."""
    from matstore.schema import EquationVersion

    return EquationVersion(**{k: version[k] for k in EquationVersion.model_fields if k in version})


def domain_check(version: dict[str, Any], features: dict[str, float],
                 orientation: ori.Orientation | None) -> tuple[list[str], list[str]]:
    """The inputs outside the version's training domain and one warning line each, as ``matstore predict`` finds them.

    Calls the CLI's own check, :func:`matstore.models.service.extrapolation`, on the one row
    ``predict`` builds: the feature values (canonical units) and, for an orientation, its
    Miller index (NaN where irrational), unit normal and (θ, φ) in degrees
    (:data:`matstore.models.dataset.ORIENTATION_COLUMNS`).  The training domain is
    ``version['report']['domain']``; versions stored without one flag nothing.

    Parameters
    ----------
    version : the ``equation_version`` row (a dict of its columns)
    features : value of each equation feature, by name
    orientation : the orientation predicted at, or None

    Returns
    -------
    (flags, lines)
        The flagged names (features, ``"orientation"``) and the warning lines, e.g.
        ``"lattice_constant = 55.8 angstrom is outside the training range 3.52 … 4.09 angstrom (…):
        the prediction is extrapolated and its interval is not calibrated there"``; both empty
        inside the domain.
    """
    from matstore.models.dataset import ORIENTATION_COLUMNS
    from matstore.models.service import extrapolation

    row: dict[str, Any] = dict(features)
    if orientation is not None:
        row |= dict(zip(ORIENTATION_COLUMNS, [*(orientation.miller or (np.nan,) * 3), *orientation.normal,
                                              orientation.theta_deg, orientation.phi_deg], strict=True))
    flags, lines = extrapolation(_as_version(version), pd.DataFrame([row]))
    return flags[0], lines[0]


def positive_lower_bound(target: str, lower: float) -> float:
    """``lower`` at least 0 for a target positive in every stable crystal, as ``matstore predict`` shows it
    (:func:`matstore.models.service.positive_lower`)."""
    from matstore.models.service import positive_lower

    return float(positive_lower(target, lower))


def _show_result(version: dict[str, Any], value: float, extrapolated: list[str]) -> None:
    """The finite prediction ``value`` (target unit) with its interval (or ± residual σ), marked
    extrapolated with the names of ``extrapolated`` (:func:`domain_check`) when there are any."""
    unit = version["target_unit"]
    interval = reports.stored_interval(version)
    target = f"{version['target']} = {charts.format_value(value, unit, 5)}"
    if extrapolated:
        target += f" (extrapolated: {', '.join(extrapolated)})"
    if interval is not None:
        level = f"{interval.level:.0%} " if interval.level else ""
        lower, upper = interval.bounds(value)
        lower = positive_lower_bound(version["target"], lower)
        st.success(f"{target}; {level}prediction interval [{charts.format_value(lower, unit, 5)}, "
                   f"{charts.format_value(upper, unit, 5)}] ({interval.how})")
    elif version.get("residual_std"):
        st.success(f"{target} ± {charts.format_value(version['residual_std'], unit, 3)}")
        st.caption("± one standard deviation of the out-of-fold residuals; this version stores no calibrated "
                   "prediction interval.")
    else:
        st.success(target)
