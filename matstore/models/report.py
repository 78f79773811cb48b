"""The honest report of a fit: nested CV, fixed-form CV, per-fold forms, per-group errors, intervals.

Given a fitting procedure (an estimator from :mod:`matstore.models.estimators`), the selected
equation and the folds of the one CV policy (:func:`matstore.models.cv.make_cv`):

(a) **nested CV** — :func:`cross_fit` re-runs the whole procedure (search, validation and
    selection) on each fold's training rows: the estimate of what the procedure achieves on
    an unseen group; a fold that fails is counted, with its reason, and a fit whose folds all
    failed has no nested score (None), never one made of the failures;
(b) **fixed-form CV** — the selected equation's form is kept and its constants refitted per
    fold (:class:`matstore.models.cv.FixedForm`): what the chosen equation achieves;
(c) the **form selected in each fold** and the fold agreement (k of n folds chose the
    full-data form), and, when (a) and (b) differ by more than 0.1 in R², the folds and forms
    responsible;
(d) **errors per group** (material, element, ...) of the nested out-of-fold predictions;

and calibrated **prediction intervals** by grouped cross-conformal prediction: the
conformity scores are the nested out-of-fold residuals of the whole procedure (so the
interval carries the uncertainty of the search and the selection), the quantile is MAPIE's
(``SplitConformalRegressor``, prefit; the "CV" method of Barber, Candès, Ramdas &
Tibshirani, Ann. Statist. 49, 486 (2021), doi:10.1214/20-AOS1965; MAPIE: Cordier et al.,
PMLR 204, 549 (2023)), and the coverage is measured on held-out groups with the same score.

The conformity score is chosen by a fixed rule (:func:`conformity_score`), recorded with the
interval: the **relative** residual ``|y − ŷ|/ŷ`` (MAPIE's ``GammaConformityScore(sym=True)``,
interval ``ŷ·(1 ± q)``, ``q`` a dimensionless fraction) for a multiplicative model whose
errors scale with the prediction — a factorised fit ``C(bulk)·g(orientation)`` — when its
training targets and nested out-of-fold predictions are all > 0; the **absolute** residual
``|y − ŷ|`` (interval ``ŷ ± q``, ``q`` in the target unit) otherwise.
"""

from __future__ import annotations

import math
import re
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import sympy as sp
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from matstore.models.expressions import evaluate, form_of

#: Nested and fixed-form R² further apart than this are explained fold by fold.
DISCREPANCY_R2 = 0.1
#: Training-R² gain of the two-product over the one-product ceiling above which a single-product
#: report suggests a sum of products (on the calculators' data τ and S gain 0.05–0.25, γ ≤ 0.005).
SUM_HINT_R2 = 0.05


@dataclass
class CrossFit:
    """Out-of-fold predictions of one estimator over the folds of a splitter.

    Attributes
    ----------
    oof : ndarray, shape (n_rows,)
        Held-out predictions; a fold whose fit failed (or predicted non-finite values) is
        penalised with its training mean, as the procedure gives nothing usable there.  When
        *every* fold failed there is nothing to score: every entry is NaN, so the nested R²
        and the interval built from it are not available (never a number from the penalty).
    estimators : list
        The estimator fitted on each fold's training rows (unfitted where the fit failed).
    tests : list of ndarray
        Held-out row positions of each fold.
    failed : list of bool
    reasons : list of str
        Why each fold failed, e.g. ``"ValueError: the constants of this form cannot be
        determined from these rows"`` or ``"non-finite predictions on 1 held-out row"``;
        empty for a fold that did not fail.
    """

    oof: np.ndarray
    estimators: list[Any]
    tests: list[np.ndarray]
    failed: list[bool]
    reasons: list[str] = field(default_factory=list)


def failure_reason(exc: BaseException) -> str:
    """An exception as one line: ``"ValueError: its message"`` (first line, at most 200 characters)."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text if len(text) <= 200 else text[:199] + "…"


def cross_fit(estimator: Any, X: pd.DataFrame, y: np.ndarray, groups: np.ndarray | None, cv: Any,
              n_jobs: int | None = None) -> CrossFit:
    """Fit a clone of ``estimator`` on every training split and predict its held-out rows.

    Each fold fits a clone on its training rows (``groups`` go to the splitter and, split per
    fold, to ``fit``), so a model-selecting estimator is nested CV by construction.  A fold
    whose fit raises, whose prediction raises or is not finite, fails: it is penalised with
    its training mean, and its reason is kept (:attr:`CrossFit.reasons`).  When every fold
    failed, the out-of-fold predictions are NaN (see :class:`CrossFit`).  ``n_jobs`` > 1 fits
    the folds in that many worker processes (joblib's loky backend, through scikit-learn's
    ``Parallel``); the fitted fold estimators come back pickled.  A worker that dies (killed
    for memory, say) breaks the pool: the folds are then fitted again in this process.
    """
    from concurrent.futures import BrokenExecutor

    folds = [(np.asarray(tr), np.asarray(te)) for tr, te in cv.split(X, y, groups)]
    try:
        fitted = _fit_folds(estimator, X, y, groups, folds, n_jobs)
    except BrokenExecutor:
        fitted = _fit_folds(estimator, X, y, groups, folds, None)
    oof, failed, reasons = np.full(len(y), np.nan), [], []
    for (est, reason), (train, test) in zip(fitted, folds, strict=True):
        pred = None
        if not reason:
            try:
                pred = np.asarray(est.predict(X.iloc[test]), dtype=float).reshape(-1)
                bad = int(np.sum(~np.isfinite(pred)))
                if bad:
                    reason = f"non-finite predictions on {bad} held-out row{'s' if bad > 1 else ''}"
            except Exception as exc:  # noqa: BLE001 - a failed fold is penalised, not fatal
                reason = "predict: " + failure_reason(exc)
        oof[test] = pred if not reason else float(np.mean(y[train]))
        failed.append(bool(reason))
        reasons.append(reason)
    if failed and all(failed):
        oof[:] = np.nan
    return CrossFit(oof, [est for est, _ in fitted], [te for _, te in folds], failed, reasons)


def _fit_fold(estimator: Any, X: pd.DataFrame, y: np.ndarray, groups: np.ndarray | None,
              train: np.ndarray) -> tuple[Any, str]:
    """``estimator`` fitted on rows ``train``, and ``""``; or, where its fit raised, unfitted and the reason."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if groups is None:
                estimator.fit(X.iloc[train], y[train])
            else:
                estimator.fit(X.iloc[train], y[train], groups=np.asarray(groups)[train])
        except Exception as exc:  # noqa: BLE001 - a failed fold is recorded with its reason, not fatal
            return estimator, failure_reason(exc)
    return estimator, ""


def _fit_folds(estimator: Any, X: pd.DataFrame, y: np.ndarray, groups: np.ndarray | None,
               folds: list[tuple[np.ndarray, np.ndarray]], n_jobs: int | None) -> list[tuple[Any, str]]:
    """(fitted clone, failure reason) per fold, the folds ``n_jobs`` at a time."""
    from sklearn.utils.parallel import Parallel, delayed

    return Parallel(n_jobs=n_jobs)(delayed(_fit_fold)(clone(estimator), X, y, groups, train) for train, _ in folds)


def scores(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """``r2``, ``rmse``, ``mae`` (target unit) over the finite predictions; NaN with fewer than 2."""
    ok = np.isfinite(pred)
    if ok.sum() < 2:
        return {"r2": float("nan"), "rmse": float("nan"), "mae": float("nan")}
    return {"r2": float(r2_score(y[ok], pred[ok])), "rmse": float(np.sqrt(mean_squared_error(y[ok], pred[ok]))),
            "mae": float(mean_absolute_error(y[ok], pred[ok]))}


def selected_forms(estimator: Any) -> dict[str, str]:
    """The forms that decide fold agreement, keyed by part.

    Returns
    -------
    dict of str to str
        ``equation``: the whole equation's form (:func:`~matstore.models.expressions.form_of`);
        for a factorised model it is ``(C form)*(g form)`` and ``coefficient`` and
        ``orientation`` hold the two parts' forms as well, so a fold that kept C's form but
        chose another orientation function g does not count as agreeing.
    """
    scales = getattr(estimator, "scales_", None)
    if scales is not None:  # a sum of products: the scales as a set, the g_j in the scales' order
        order = sorted(range(len(scales)), key=lambda j: form_of(scales[j]))
        return {"equation": form_of(estimator.equation_),
                "coefficient": " + ".join(form_of(scales[j]) for j in order),
                "orientation": " | ".join(form_of(estimator.orientations_[j].equation_) for j in order)}
    coefficient, orientation = getattr(estimator, "coefficient_", None), getattr(estimator, "orientation_", None)
    if coefficient is None or orientation is None:
        return {"equation": form_of(estimator.equation_)}
    c_form, g_form = form_of(coefficient.equation_), form_of(orientation.equation_)
    return {"equation": f"({c_form})*({g_form})", "coefficient": c_form, "orientation": g_form}


def fold_agreement(folds: list[dict[str, Any]], full: dict[str, str]) -> dict[str, Any]:
    """How many folds selected the full-data form: of the whole equation and, factorised, of C and of g.

    Returns
    -------
    dict
        ``agree``, ``n``, ``fraction`` and ``full_form`` (whole equation); for a factorised
        model also ``coefficient`` and ``orientation``, each ``{"agree", "full_form"}``,
        the latter with ``max_deviation``, the largest fold's :func:`orientation_deviation`.
    """
    n = len(folds)
    agree = sum(f["same_as_full"] for f in folds)
    out: dict[str, Any] = {"agree": int(agree), "n": n, "fraction": agree / n if n else None,
                           "full_form": full["equation"]}
    for part in ("coefficient", "orientation"):
        if part in full:
            out[part] = {"agree": int(sum(f.get(f"{part}_form") == full[part] for f in folds)), "full_form": full[part]}
    deviations = [f["orientation_deviation"] for f in folds if f.get("orientation_deviation") is not None]
    if "orientation" in full and deviations:
        out["orientation"]["max_deviation"] = max(deviations)
    return out


def _held_out(groups: np.ndarray | None, test: np.ndarray) -> list[str]:
    return [] if groups is None else sorted(map(str, pd.unique(groups[test])))[:10]


def agreement_text(agreement: dict[str, Any] | None) -> str:
    """A stored ``fold_agreement`` in words.

    E.g. ``"3 of 7 folds selected the full-data form (C: 7 of 7, g: 3 of 7, every fold's g
    within 0.012×rms(g) of the full-data g)"``; the last part is the largest
    :func:`orientation_deviation` (the g values at the table's orientations).

    Empty for a missing or empty record.  Reports of factorised fits stored before the
    parts were counted (session 5) compared C's form only and carry no part counts.
    """
    if not isinstance(agreement, dict) or not agreement.get("n"):
        return ""
    return f"{agreement.get('agree')} of {agreement['n']} folds selected the full-data form{_part_counts(agreement)}"


def _part_counts(agreement: dict[str, Any]) -> str:
    """`` (C: 7 of 7, g: 3 of 7, every fold's g within …)`` of a factorised fit's agreement; empty otherwise."""
    n = agreement["n"]
    parts = [f"{label}: {agreement[key].get('agree')} of {n}" for key, label in (("coefficient", "C"), ("orientation", "g"))
             if isinstance(agreement.get(key), dict)]
    deviation = (agreement.get("orientation") or {}).get("max_deviation")
    if deviation is not None:
        parts.append(f"every fold's g within {deviation:.2g}×rms(g) of the full-data g")
    return f" ({', '.join(parts)})" if parts else ""


def nested_agreement_text(agreement: dict[str, Any] | None, folds: list[dict[str, Any]] | None = None) -> str:
    """The nested-CV folds' own selections, in words that say what they count.

    Each nested-CV fold re-ran the whole search and selection without its held-out rows; this
    counts the folds whose selection is the full-data form, and names what the others chose
    (most frequent first, at most three forms), e.g. ``"nested CV: 1 of 4 held-out folds
    re-selected the full-data form: a*x; the others chose a*x + b (2), a (1)"``.  Not to be
    confused with the subsamples of stability selection (:func:`criterion_text`), which are
    counted on all rows.  Empty for a missing or empty record.
    """
    if not isinstance(agreement, dict) or not agreement.get("n"):
        return ""
    text = (f"nested CV: {agreement.get('agree')} of {agreement['n']} held-out folds re-selected the full-data form"
            f"{_part_counts(agreement)}: {agreement.get('full_form', '')}")
    others = Counter(f.get("form") or "nothing (failed)" for f in folds or [] if not f.get("same_as_full"))
    if others:
        shown = [f"{form} ({count})" for form, count in others.most_common(3)]
        text += f"; the others chose {', '.join(shown)}" + (", …" if len(others) > 3 else "")
    return text


def grouping_text(cv_scheme: str | None, group_by: str | None, repeated: int | None = None) -> str:
    """What the folds of a stored report held out together, and why, in one line.

    Parameters
    ----------
    cv_scheme
        The report's ``cv_scheme``, e.g. ``"LeaveOneGroupOut (4 groups) by chemical_system"``.
    group_by
        The spec's ``group_by`` (``hyperparameters['group_by']``), e.g. ``"material"``.
    repeated
        For shuffled folds: how many materials have more than one training row (e.g. one per
        method); ``None`` when not known.

    E.g. ``"LeaveOneGroupOut (4 groups) by chemical_system (the default for a bulk target
    whose chemical systems hold several compositions)"``, or for shuffled folds
    ``"KFold(5, shuffle, random_state=0), not grouped although 3 materials have several rows:
    rows of one material are in training and test folds (--group-by chemical_system holds
    materials out; for elements one group per element)"``.
    """
    scheme = str(cv_scheme or "")
    if not scheme:
        return ""
    if " by " not in scheme:
        return _ungrouped_text(scheme, repeated)
    used = scheme.rsplit(" by ", 1)[1]
    if used == "chemical_system" and group_by in (None, "material"):
        return f"{scheme} (the default for a bulk target whose chemical systems hold several compositions)"
    if used == "configuration":
        return f"{scheme}: one configuration of one material per group, e.g. MoS2 [3v:17] (--group-by configuration_key)"
    if used == "configuration_key":
        return (f"{scheme}: each configuration key held out in every material that has it together (as fitted "
                "before configurations were grouped per material)")
    return scheme if group_by in (None, used) else f"{scheme} (--group-by {group_by})"


#: How to hold materials out of a bulk fit whose folds were not grouped (CLI warning, ``grouping_text``).
HOLD_OUT_MATERIALS = "--group-by chemical_system holds materials out; for elements one group per element"


def _ungrouped_text(scheme: str, repeated: int | None) -> str:
    """Shuffled folds in words: whether rows of one material were in training and test folds."""
    if repeated is None:
        return f"{scheme}, not grouped: rows of one material may be in training and test folds"
    if repeated == 0:
        return f"{scheme}, not grouped: every material has one row, so each fold holds out whole materials"
    return (f"{scheme}, not grouped although {repeated} material{'s have' if repeated > 1 else ' has'} several rows: "
            f"rows of one material are in training and test folds ({HOLD_OUT_MATERIALS})")


def failure_text(report: dict[str, Any] | None, part: str = "nested_cv") -> str:
    """The failed folds of a stored report's nested (or fixed-form) CV in one line; empty when none failed.

    E.g. ``"2 of 2 folds failed: ValueError: the constants of this form cannot be determined
    from these rows"``; several reasons are counted, most frequent first (``"3 of 10 folds
    failed: A (2 folds); B (1 fold)"``).  ``part``: ``"nested_cv"`` or ``"fixed_form_cv"``.
    Reports stored before the reasons were recorded say ``reason not recorded``.
    """
    cv = (report or {}).get(part) or {}
    failed = int(cv.get("failed_folds") or 0)
    if not failed:
        return ""
    folds = (report or {}).get("folds") or []
    n = int((report or {}).get("nested_cv", {}).get("n_folds") or len(folds))
    key = "failure" if part == "nested_cv" else "fixed_form_failure"
    reasons = Counter(f[key] for f in folds if f.get(key))
    if not reasons:
        why = "reason not recorded (fitted before fold failures were recorded)"
    elif len(reasons) == 1:
        why = next(iter(reasons))
    else:
        why = "; ".join(f"{r} ({c} fold{'s' if c > 1 else ''})" for r, c in reasons.most_common(3))
    return f"{failed} of {n} folds failed: {why}"


#: ``LeaveOneGroupOut (2 groups)``: a cv_scheme whose folds each fit one group and predict the other.
_TWO_GROUPS = re.compile(r"^LeaveOneGroupOut \(2 groups\)")


def cv_notes(report: dict[str, Any] | None) -> list[str]:
    """What a reader of a stored report's cross-validated scores must know, one line each.

    - ``"2 groups only: the nested R² is a 2-group transfer estimate (each fold fits one group
      and predicts the other), not an average over many unseen groups"``, for an outer CV of
      two groups;
    - ``"inner CV of the selection in 2 of 2 folds: KFold(5, shuffle, random_state=0),
      ungrouped: one group only (their training rows hold one group; grouped CV needs two)"``,
      where folds' inner CV fell back (:func:`matstore.models.cv.make_cv`);

    The failed folds are :func:`failure_lines`.
    """
    report = report or {}
    notes = []
    if _TWO_GROUPS.match(str(report.get("cv_scheme") or "")):
        notes.append("2 groups only: the nested R² is a 2-group transfer estimate (each fold fits one group and "
                     "predicts the other), not an average over many unseen groups")
    folds = report.get("folds") or []
    inner = Counter(f["inner_cv"] for f in folds if f.get("inner_cv"))
    for scheme, count in inner.items():
        notes.append(f"inner CV of the selection in {count} of {len(folds)} folds: {scheme} (their training rows "
                     "hold one group; grouped CV needs two)")
    return notes


def failure_lines(report: dict[str, Any] | None) -> list[str]:
    """The failed folds of a stored report's nested and fixed-form CV, one line each (:func:`failure_text`).

    E.g. ``["nested CV: 2 of 2 folds failed: ValueError: …; nested R² not available"]``; the
    last clause when every fold failed (the nested R² is then None, :class:`CrossFit`).
    """
    report = report or {}
    lines = []
    nested = failure_text(report)
    if nested:
        lines.append(f"nested CV: {nested}" + ("; nested R² not available" if all_folds_failed(report) else ""))
    fixed = failure_text(report, "fixed_form_cv")
    if fixed:
        lines.append(f"fixed-form CV: {fixed}")
    return lines


def all_folds_failed(report: dict[str, Any] | None) -> bool:
    """Whether every fold of a stored report's nested CV failed (its nested R² is then not available)."""
    cv = (report or {}).get("nested_cv") or {}
    return bool(cv.get("n_folds")) and cv.get("failed_folds") == cv.get("n_folds")


def scheme_text(report: dict[str, Any] | None, group_by: str | None = None, repeated: int | None = None) -> str:
    """A stored report's folds and why they were chosen, e.g. ``"LeaveOneGroupOut (10 groups) by material (the
    default for a bulk target whose materials have several rows (…): each fold holds out every row of its materials)"``.

    From ``cv_grouping`` (stored since the fits recorded why, see
    :func:`matstore.models.service._cv_grouping`); older reports are explained by
    :func:`grouping_text` from ``cv_scheme``, ``group_by`` and ``repeated``.
    """
    report = report or {}
    scheme = str(report.get("cv_scheme") or "")
    if scheme and report.get("cv_grouping"):
        return f"{scheme} ({report['cv_grouping']})"
    return grouping_text(scheme, group_by, repeated)


def methods_text(rows_per_method: dict[str, int] | None) -> str:
    """The methods of a training table with their rows, e.g. ``"DFT-PBE (45 rows), EAM (18), MEAM (24)"``.

    ``rows_per_method``: ``report['rows_per_method']`` (method name → training rows), listed
    by name (case ignored; a stored JSONB object keeps no order).  Empty when unknown
    (versions fitted before it was stored).
    """
    items = sorted((rows_per_method or {}).items(), key=lambda item: (item[0].casefold(), item[0]))
    return ", ".join(f"{name} ({n}{' rows' if i == 0 else ''})" for i, (name, n) in enumerate(items))


def methods_note(rows_per_method: dict[str, int] | None) -> str:
    """A warning when a fit mixes methods, e.g. ``"3 methods mixed in one fit: …"``; empty for one method."""
    n = len(rows_per_method or {})
    if n < 2:
        return ""
    return (f"{n} methods mixed in one fit: one equation for all of them, so their systematic differences count as "
            "scatter (--method NAME fits one)")


def prototypes_text(materials_per_prototype: dict[str, int] | None) -> str:
    """The crystal prototypes of a training table with their materials, e.g. ``"Fm-3m (7 materials), Im-3m (4)"``.

    ``materials_per_prototype``: ``report['materials_per_prototype']`` (``material.prototype``
    → training materials), listed by name as :func:`methods_text` lists methods.  Empty when
    unknown (versions fitted before it was stored).
    """
    items = sorted((materials_per_prototype or {}).items(), key=lambda item: (item[0].casefold(), item[0]))
    return ", ".join(f"{name} ({n}{' materials' if i == 0 and n != 1 else ' material' if i == 0 else ''})"
                     for i, (name, n) in enumerate(items))


def prototypes_note(materials_per_prototype: dict[str, int] | None, factorised: bool = False) -> str:
    """A warning when a fit's materials have several crystal prototypes; empty for one.

    E.g. ``"2 prototypes mixed in one fit: one C(bulk) and one g(orientation) for all of them,
    although a lattice constant is another length, and a Miller index another surface, in an
    fcc, a bcc or another cell (--prototype NAME fits one)"`` (``factorised``; a direct fit has
    ``one equation for all of them`` and no Miller index).  ``unknown`` (no prototype recorded
    at ingest) counts as a prototype of its own, and the note says what it means: its
    materials may have any structure, so one known prototype beside ``unknown`` is noted too.
    Prototype names are compared as stored: ``fcc`` and ``Fm-3m`` are two names (give both
    to ``--prototype`` to fit them together).
    """
    names = sorted(materials_per_prototype or {})
    if len(names) < 2:
        return ""
    shared = "one C(bulk) and one g(orientation)" if factorised else "one equation"
    surface = ", and a Miller index another surface," if factorised else ""
    unknown = "; unknown: no prototype recorded at ingest, any structure" if "unknown" in names else ""
    return (f"{len(names)} prototypes mixed in one fit: {shared} for all of them, although a lattice constant is "
            f"another length{surface} in an fcc, a bcc or another cell (--prototype NAME fits one){unknown}")


def methods_lines(rows_per_method: dict[str, int] | None) -> list[str]:
    """``["methods: DFT-PBE (45 rows), EAM (18)", "note: 2 methods mixed in one fit: …"]``, as ``fit``,
    ``models show`` and the dashboard show them (:func:`methods_text`, :func:`methods_note`); the
    note only when several methods are mixed; empty when unknown (versions fitted before it was stored)."""
    if not isinstance(rows_per_method, dict) or not rows_per_method:
        return []
    note = methods_note(rows_per_method)
    return [f"methods: {methods_text(rows_per_method)}"] + ([f"note: {note}"] if note else [])


def scaling_hint_lines(dimension_check: str | None, features: list[dict] | None, target_unit: str | None,
                       hyperparameters: dict | None) -> list[str]:
    """A note for a direct fit homogeneous in its units only through its fitted constants.

    E.g. ``2.79e-8*c11**3*c12/cohesive_energy + 60.89`` for C44 (GPa) is "consistent up to
    fitted constants": its constants carry whatever units balance it.  Where every feature and
    the target have units and some power law of the features has the target's dimension
    (:func:`matstore.models.dimensions.require_scaling_units`), the note names
    ``--coefficient-form scaling``.  None for factorised fits or fits already of that form.

    Returns
    -------
    list of str
        One ``note: …`` line, or none.
    """
    from matstore.models.dimensions import require_scaling_units
    from matstore.models.engines.sparse import SparseEngine

    options = hyperparameters or {}
    verdict = dimension_check or ""
    if options.get("factorize") or options.get("coefficient_form") == "scaling" \
            or not verdict.startswith(("consistent up to fitted constants", "inconsistent")):
        return []
    units = {f["name"]: f.get("unit") for f in features or []}
    defaults = SparseEngine.default_parameters
    try:
        require_scaling_units(list(units), units, target_unit, exponents=defaults["exponents"],
                              max_factors=defaults["max_factors"])
    except ValueError:
        return []
    return [f"note: this equation is {verdict.split(':')[0]} (its constants carry units); --coefficient-form scaling "
            "searches power laws of the features with the target's units"]


def prototypes_lines(materials_per_prototype: dict[str, int] | None, factorised: bool = False) -> list[str]:
    """``["prototypes: Fm-3m (7 materials), Im-3m (4)", "note: 2 prototypes mixed in one fit: …"]``, as
    ``fit``, ``models show`` and the dashboard show them (:func:`prototypes_text`,
    :func:`prototypes_note`); the note only when several are mixed; empty when unknown."""
    if not isinstance(materials_per_prototype, dict) or not materials_per_prototype:
        return []
    note = prototypes_note(materials_per_prototype, factorised)
    return [f"prototypes: {prototypes_text(materials_per_prototype)}"] + ([f"note: {note}"] if note else [])


def pooled_text(n_folds: float | None = None) -> str:
    """What the nested and fixed-form R², RMSE and MAE are computed over, e.g. ``"pooled over the held-out rows of
    all 11 folds"``: every row's out-of-fold prediction scored together (``metrics['cv_r2']``), not a mean of
    per-fold scores (:func:`per_fold_r2_text`)."""
    n = int(n_folds) if n_folds is not None and np.isfinite(n_folds) and n_folds > 0 else None
    return f"pooled over the held-out rows of all {n} folds" if n else "pooled over the held-out rows of all folds"


def per_fold_r2_text(report: dict[str, Any] | None) -> str:
    """The nested R² of each fold in one line, beside the pooled one; empty when no fold has one.

    E.g. ``"per-fold R²: mean -9.1, from -22 to 0.24 over 11 folds (metrics cv_r2_mean): each fold's
    held-out rows against their own mean, so a fold holding out one material scores only its
    spread within that material"``.  A fold's R² is ``1 − SS_res/SS_tot`` with ``SS_tot`` about
    the fold's own mean; held-out groups whose rows barely vary (one material's surfaces) give
    large negative values where the pooled R² (:func:`pooled_text`), whose ``SS_tot`` spans all
    groups, is high.  The mean is ``metrics['cv_r2_mean']`` (:func:`matstore.models.fitting._metrics`).
    """
    folds = (report or {}).get("folds") or []
    r2 = [f["nested_r2"] for f in folds if f.get("nested_r2") is not None]
    if not r2:
        return ""
    none = len(folds) - len(r2)
    without = (f"; {none} of {len(folds)} folds have none (a failed fit, or held-out rows too few or too alike "
               "for an R² of their own)") if none else ""
    return (f"per-fold R²: mean {np.mean(r2):.3g}, from {min(r2):.3g} to {max(r2):.3g} over {len(r2)} folds "
            "(metrics cv_r2_mean): each fold's held-out rows against their own mean, so a fold holding out one "
            f"material scores only its spread within that material{without}")


def time_budget_engines() -> list[str]:
    """Registered engines that honour ``--time-budget`` (those with a ``time_limit`` parameter), by name."""
    from matstore.models.engines.base import available_engines, engine_class

    return [name for name in available_engines() if "time_limit" in engine_class(name).default_parameters]


def time_lines(report: dict[str, Any] | None, engine: str | None = None) -> list[str]:
    """The wall time against ``--time-budget``, the least time of an overrun, and whether the engine honours it.

    E.g. ``["wall time 12.4 s (budget 10 s, 2.4 s over)", "the 10 s budget is below this
    fit's least time, ≈ 12 s: …" (:func:`budget_floor_text`), "the sparse engine has no time
    limit: --time-budget applies only to engines that honour it (eql, operon, pysr)"]``.
    Empty without a stored wall time.
    """
    report = report or {}
    seconds = (report.get("seconds") or {}).get("total")
    if seconds is None:
        return []
    budget, jobs = report.get("time_budget"), report.get("fold_jobs")
    over = f", {seconds - budget:.1f} s over" if budget and seconds > budget else ""
    lines = [f"wall time {seconds:.1f} s" + (f" (budget {budget:g} s{over})" if budget else "")
             + (f", CV folds {jobs} at a time" if jobs and jobs > 1 else "")]
    if report.get("time_budget_floor") and budget:
        lines.append(budget_floor_text(report["time_budget_floor"], budget))
    honour = time_budget_engines()
    if engine and budget and engine not in honour:
        lines.append(f"the {engine} engine has no time limit: --time-budget applies only to engines that honour it "
                     f"({', '.join(honour)})")
    return lines


#: Stored criteria of stability selection (:func:`matstore.models.selection.select_stable`,
#: ``select_stable_se``) and their wording for a reader.
_STABLE = re.compile(r"^stable: (AICc|SICc|max\(AICc, SICc(?:, EBIC[_0-9.]*)?\)|EBIC[_0-9.]*) form chosen in (\d+) of "
                     r"(\d+) subsamples \((.*?)\)(; .*)?$")
_STABLE_SE = re.compile(r"; form chosen in (\d+) of (\d+) folds$")


def criterion_text(criterion: str | None) -> str:
    """A stored selection criterion in words that say what its counts count.

    Stability selection chooses on all rows: its counts are of *subsamples* (all rows but
    one fold each), not of the nested-CV folds (:func:`nested_agreement_text`).  E.g.
    ``"stable: AICc form chosen in 4 of 4 subsamples (LeaveOneGroupOut (4 groups))"`` reads
    ``"stable — stability selection on all rows: the AICc chose this form in 4 of 4
    subsamples (each all rows but one fold of LeaveOneGroupOut (4 groups))"``.  Other
    criteria are returned as stored.
    """
    text = str(criterion or "")
    match = _STABLE.match(text)
    if match:
        ic, k, n, scheme, note = match.groups()
        return (f"stable — stability selection on all rows: the {ic} chose this form in {k} of {n} subsamples "
                f"(each all rows but one fold of {scheme}){note or ''}")
    return _STABLE_SE.sub(lambda m: f"; stability selection on all rows: the searches of {m[1]} of {m[2]} "
                                    "subsamples (all rows but one fold each) chose this form", text)


def parts_lines(parts: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The parts of a stored factorised fit as ``(line, how it was chosen)`` pairs, one per part.

    One product: ``("coefficient: 3.97*cohesive_energy/lattice_constant**2", "form scaling,
    engine sparse, selected by stable:1se")`` and the same for ``orientation``.  A sum of
    products (:class:`~matstore.models.estimators.SumOfProducts`): one line per product
    ``s_j · g_j`` with g's criterion, then the scales' choice.  Empty for a direct fit.
    """
    out = []
    for part, info in (parts or {}).items():
        if isinstance(info, dict) and info.get("text"):
            out.append((f"{part}: {info['text']}", _how(info)))
    for j, term in enumerate((parts or {}).get("products") or [], start=1):
        g = term.get("orientation") or {}
        out.append((f"product {j}: ({term.get('scale')}) · ({g.get('text')})", _how(g)))
    selection = (parts or {}).get("scale_selection")
    if isinstance(selection, dict):
        out.append((f"products: {selection.get('products')}", str(selection.get("criterion") or "")))
    return out


def _how(info: dict[str, Any]) -> str:
    return ", ".join(x for x in (info.get("form") and f"form {info['form']}", info.get("engine") and f"engine {info['engine']}",
                                 info.get("criterion") and f"selected by {criterion_text(info['criterion'])}") if x)


def ceiling_text(report: dict[str, Any] | None) -> str:
    """The product ceilings of a stored factorised-fit report in words; empty when it has none.

    E.g. ``"no C(bulk)·g(orientation) can exceed training R² 0.875 on these rows, a sum of two
    such products 0.999 (free value per material and orientation)"``
    (:func:`matstore.models.factorize.product_ceiling`).  Reports stored before session 7 carry
    the first ceiling only.  When a sum of two products reaches at least
    :data:`SUM_HINT_R2` more than one product and the fit is a single product, the text
    suggests ``--products 2`` (:class:`~matstore.models.estimators.SumOfProducts`).
    """
    one = (report or {}).get("product_ceiling_r2")
    if one is None:
        return ""
    two = report.get("two_product_ceiling_r2")
    hint = (two is not None and two - one >= SUM_HINT_R2 and not report.get("sum_of_products"))
    return (f"no C(bulk)·g(orientation) can exceed training R² {one:.3f} on these rows"
            + ("" if two is None else f", a sum of two such products C₁·g₁ + C₂·g₂ {two:.3f}")
            + " (free value per material and orientation)"
            + ("; the target is not one product: try a sum, --products 2" if hint else ""))


def budget_floor_text(floor: dict[str, float], budget: float | None) -> str:
    """Why a fit ran over its ``--time-budget``, in words (``report['time_budget_floor']``).

    E.g. ``"the 20 s budget is below this fit's least time, ≈ 45 s: 16 time-limited engine
    runs of at least 16.0 s in all, and ≈ 1.6 s of checks and selection per fit"``.
    """
    least = f"the {budget:g} s budget is below this fit's least time, ≈ {floor['floor_seconds']:.0f} s"
    runs = int(floor.get("engine_runs", 0))
    shortest = float(floor.get("engine_floor_seconds", runs))
    parts = ([f"{runs} time-limited engine runs of at least {shortest:.1f} s in all"] if runs else []) + [
        f"≈ {floor['fixed_seconds_per_fit']:.1f} s of checks and selection per fit"]
    return f"{least}: {', and '.join(parts)}"


def orientation_deviation(fold_estimator: Any, full_estimator: Any, X: pd.DataFrame) -> float | None:
    """How far a fold's orientation function g departs from the full-data g, over the data's orientations.

    Forms of g often differ between folds while their values at the orientations in the
    table barely do (few distinct orientations, many near-equivalent monomials); this says
    which case a fold is.  Both g are normalised to g(reference) = 1 (see
    :func:`matstore.models.factorize.normalise_g`).

    Parameters
    ----------
    fold_estimator, full_estimator : fitted FactorizedEquation (``orientation_equation_``), or
        SumOfProducts (``orientation_equations_``: each g_j is compared when both chose the
        same scales; the largest departure is returned)
    X : DataFrame, shape (n_rows, ...)
        With the orientation descriptor columns of the fit.

    Returns
    -------
    float or None
        ``max |g_fold − g_full| / rms(g_full)`` over the distinct orientations of ``X``
        (dimensionless; 0.02 means within 2 % of g's typical size); None for a model that
        is not factorised, a fold that failed, a sum whose fold chose other scales, or
        non-finite values.
    """
    pairs = _orientation_pairs(fold_estimator, full_estimator)
    if not pairs:
        return None
    points = X[list(full_estimator.orientation_features)].astype(float).drop_duplicates().reset_index(drop=True)
    deviations = [_relative_departure(evaluate(g_fold, points), evaluate(g_full, points)) for g_fold, g_full in pairs]
    deviation = max(deviations)
    return deviation if math.isfinite(deviation) else None


def _orientation_pairs(fold_estimator: Any, full_estimator: Any) -> list[tuple[Any, Any]]:
    """(fold g, full-data g) to compare: the one g of a product; each g_j of a sum with the same scales."""
    one = [getattr(e, "orientation_equation_", None) for e in (fold_estimator, full_estimator)]
    if None not in one:
        return [tuple(one)]
    scales = [getattr(e, "scales_", None) for e in (fold_estimator, full_estimator)]
    if None in scales or set(scales[0]) != set(scales[1]):
        return []
    fold = dict(zip(scales[0], fold_estimator.orientation_equations_, strict=True))
    return [(fold[s], g) for s, g in zip(scales[1], full_estimator.orientation_equations_, strict=True)]


def _relative_departure(fold_values: np.ndarray, full_values: np.ndarray) -> float:
    scale = float(np.sqrt(np.mean(full_values**2)))
    return float(np.max(np.abs(fold_values - full_values))) / scale if scale > 0 else math.nan


def fold_records(nested: CrossFit, fixed: CrossFit, y: np.ndarray, groups: np.ndarray | None,
                 full: dict[str, str], g_deviation: Callable[[Any], float | None] | None = None,
                 ) -> list[dict[str, Any]]:
    """One record per fold: held-out groups, selected form(s) and equation, nested and fixed-form R²/RMSE.

    ``full`` is :func:`selected_forms` of the full-data fit; a factorised fold record also
    carries ``coefficient_form``, ``orientation_form`` and ``orientation_deviation``
    (``g_deviation(fold_estimator)``, see :func:`orientation_deviation`).  A failed fold
    carries ``failure`` (its reason, :attr:`CrossFit.reasons`), a fold whose fixed-form refit
    failed ``fixed_form_failure``; a fold whose training rows hold one group only carries
    ``inner_cv``, the ungrouped folds its selection's inner CV fell back to
    (:func:`matstore.models.cv.make_cv`, e.g. ``"KFold(5, shuffle, random_state=0),
    ungrouped: one group only"``).
    """
    from matstore.models.cv import make_cv

    out = []
    for k, (est, test, bad) in enumerate(zip(nested.estimators, nested.tests, nested.failed, strict=True)):
        fitted = hasattr(est, "equation_")
        forms = selected_forms(est) if fitted else {}
        rec = {"fold": k, "held_out": _held_out(groups, test), "n_test": int(len(test)),
               "form": forms.get("equation", ""), "equation": sp.sstr(est.equation_) if fitted else "",
               "same_as_full": forms.get("equation") == full["equation"], "failed": bool(bad)}
        if bad and k < len(nested.reasons):
            rec["failure"] = nested.reasons[k]
        if fixed.failed[k] and k < len(fixed.reasons):
            rec["fixed_form_failure"] = fixed.reasons[k]
        train = np.setdiff1d(np.arange(len(y)), test)
        if groups is not None and len(train) and len(pd.unique(np.asarray(groups)[train])) < 2:
            rec["inner_cv"] = make_cv(len(train), np.asarray(groups)[train],
                                      random_state=getattr(est, "random_state", 0))[1]
        rec |= {f"{part}_form": forms.get(part, "") for part in ("coefficient", "orientation") if part in full}
        if "orientation" in full and g_deviation is not None:
            rec["orientation_deviation"] = g_deviation(est) if fitted else None
        rec |= {f"nested_{m}": v for m, v in _fold_scores(y[test], nested.oof[test]).items()}
        rec |= {f"fixed_form_{m}": v for m, v in _fold_scores(y[test], fixed.oof[test]).items()}
        out.append(rec)
    return out


def _fold_scores(y: np.ndarray, pred: np.ndarray) -> dict[str, float | None]:
    """R² (None for one row, no spread or non-finite predictions) and RMSE (NaN when not finite) of one fold."""
    if not np.all(np.isfinite(pred)):
        return {"r2": None, "rmse": float("nan")}
    rmse = float(np.sqrt(np.mean((y - pred) ** 2)))
    r2 = float(r2_score(y, pred)) if len(y) >= 2 and np.var(y) > 0 else None
    return {"r2": r2, "rmse": rmse}


def per_group_errors(y: np.ndarray, oof: np.ndarray, groups: np.ndarray | None) -> list[dict[str, Any]]:
    """Errors of the nested out-of-fold predictions per group, worst RMSE first.

    Returns
    -------
    list of dict
        ``group``, ``n``, ``rmse``, ``mae`` (target unit), ``r2`` (None for one row or no
        spread), ``mean_relative_error`` (mean |error| / |observed|, None at zero); the
        errors are None for a group with no finite prediction (every fold failed), listed last.
    """
    if groups is None:
        return []
    out = []
    for g in pd.unique(groups):
        m = (groups == g) & np.isfinite(oof)
        if not m.any():  # every fold failed: nothing predicted for this group
            out.append({"group": str(g), "n": int(np.sum(groups == g)), "rmse": None, "mae": None, "r2": None,
                        "mean_relative_error": None})
            continue
        err, obs = oof[m] - y[m], y[m]
        r2 = float(r2_score(obs, oof[m])) if m.sum() >= 2 and np.var(obs) > 0 else None
        rel = float(np.mean(np.abs(err) / np.abs(obs))) if np.all(obs != 0) else None
        out.append({"group": str(g), "n": int(m.sum()), "rmse": float(np.sqrt(np.mean(err**2))),
                    "mae": float(np.mean(np.abs(err))), "r2": r2, "mean_relative_error": rel})
    return sorted(out, key=lambda r: -math.inf if r["rmse"] is None else -r["rmse"])


def discrepancy(nested_r2: float, fixed_r2: float, folds: list[dict[str, Any]],
                full: dict[str, str] | None = None) -> str:
    """Empty when nested and fixed-form R² agree within 0.1; else the folds and forms responsible.

    ``full`` (:func:`selected_forms` of the full-data fit) lets a factorised fold say which
    part differs: C's form, or g's (and how far g's values are off).
    """
    if not (np.isfinite(nested_r2) and np.isfinite(fixed_r2)) or abs(nested_r2 - fixed_r2) <= DISCREPANCY_R2:
        return ""
    def loss(f: dict[str, Any]) -> float:
        return f["nested_rmse"] - f["fixed_form_rmse"]
    worst = sorted((f for f in folds if loss(f) > 0), key=loss, reverse=True)[:3]
    parts = [f"fold {f['fold']} ({', '.join(f['held_out']) or str(f.get('n_test', '')) + ' rows'}): selected {f['form'] or 'nothing (fit failed)'}"
             f"{_how_it_differs(f, full or {})}, RMSE {f['nested_rmse']:.3g} vs "
             f"{f['fixed_form_rmse']:.3g} with the full-data form" for f in worst]
    return f"nested R² {nested_r2:.3f} vs fixed-form R² {fixed_r2:.3f}: " + ("; ".join(parts) or "spread over folds")


def _how_it_differs(fold: dict[str, Any], full: dict[str, str]) -> str:
    """``""`` for the full-data form, else `` ≠ full-data form`` and, factorised, which part differs."""
    if fold["same_as_full"]:
        return ""
    parts = []
    if "coefficient" in full and fold.get("coefficient_form") != full["coefficient"]:
        parts.append("another C")
    if "orientation" in full and fold.get("orientation_form") != full["orientation"]:
        off = fold.get("orientation_deviation")
        parts.append("another g" + ("" if off is None else f", its values off by up to {off:.2g}×rms(g)"))
    return " ≠ full-data form" + (f" ({'; '.join(parts)})" if parts else "")


class OutOfFold(BaseEstimator, RegressorMixin):
    """A prefit "model" whose prediction for row ``i`` is the nested out-of-fold prediction of row ``i``.

    ``X`` holds row positions (shape (n, 1)).  It hands MAPIE the held-out residuals of the
    whole fitting procedure, so its conformity scores include the uncertainty of the search
    and of the selection, not only of the constants.

    Parameters
    ----------
    oof : array-like, shape (n_rows,)
    """

    def __init__(self, oof: Any = None) -> None:
        self.oof = oof

    def fit(self, X: Any = None, y: Any = None) -> OutOfFold:
        """Store ``oof`` (nothing is learned)."""
        self.oof_ = np.asarray(self.oof, dtype=float)
        self.is_fitted = True
        return self

    def predict(self, X: Any) -> np.ndarray:
        """The out-of-fold predictions of the rows whose positions are ``X[:, 0]``, shape (n,)."""
        return self.oof_[np.asarray(X)[:, 0].astype(int)]


#: Conformity scores of the stored interval: ``|y − ŷ|`` (target unit) or ``|y − ŷ|/ŷ`` (fraction).
ABSOLUTE, RELATIVE = "absolute", "relative"
SCORES = (ABSOLUTE, RELATIVE)


def conformity_score(factorised: bool, y: np.ndarray, oof: np.ndarray) -> str:
    """The conformity score of a fit's interval: :data:`RELATIVE` or :data:`ABSOLUTE`.

    Relative (``|y − ŷ|/ŷ``) for a factorised, multiplicative model ``C(bulk)·g(orientation)``
    — the material coefficient multiplies every orientation, so its errors scale with the
    prediction — whose training targets ``y`` and nested out-of-fold predictions ``oof``
    (shape (n_rows,)) are all finite and strictly positive (the support of MAPIE's Gamma
    score); absolute (``|y − ŷ|``) otherwise, e.g. for a target that can be ≤ 0 (surface
    stress, stiffness) or a non-factorised fit.  A fixed rule, not chosen by coverage.
    """
    y, oof = np.asarray(y, dtype=float), np.asarray(oof, dtype=float)
    scored = np.isfinite(oof)  # rows every fold failed on are not scored (see conformal_half_width)
    y, oof = y[scored], oof[scored]
    positive = bool(np.all(np.isfinite(y) & (y > 0)) and np.all(oof > 0))
    return RELATIVE if factorised and positive and len(y) else ABSOLUTE


def _mapie_score(score: str) -> Any:
    from mapie.conformity_scores import AbsoluteConformityScore, GammaConformityScore

    if score not in SCORES:
        raise ValueError(f"unknown conformity score {score!r}: use one of {', '.join(SCORES)}")
    return GammaConformityScore(sym=True) if score == RELATIVE else AbsoluteConformityScore()


def conformal_half_width(oof: np.ndarray, y: np.ndarray, rows: np.ndarray, level: float,
                         score: str = ABSOLUTE) -> float:
    """Half-width ``q`` of the cross-conformal interval from the nested out-of-fold predictions of ``rows``.

    MAPIE's ``SplitConformalRegressor`` (prefit, ``conformity_score`` from ``score``)
    conformalised on the out-of-fold predictions ``oof`` (shape (n_rows,)) of the rows at
    positions ``rows``: ``q`` is the ``⌈(n + 1)·level⌉``-th smallest score (the "CV" method of
    Barber et al. 2021), so the interval covers a new group's value with probability about
    ``level``.  ``score="absolute"``: scores ``|y − ŷ_oof|``, interval ``ŷ ± q``, ``q`` in the
    target unit.  ``score="relative"``: scores ``|y − ŷ_oof|/ŷ_oof`` (MAPIE's
    ``GammaConformityScore(sym=True)``, Cordier et al. 2023), interval ``ŷ·(1 ± q)``, ``q`` a
    dimensionless fraction.

    Rows whose out-of-fold prediction is NaN (a fit whose folds all failed,
    :class:`CrossFit`) are left out: no interval is built from failed folds.

    Raises
    ------
    ValueError
        With fewer than ``max(1/level, 1/(1 − level))`` rows (10 at 90 %) with a finite
        out-of-fold prediction, an unknown ``score``, or (relative) a target or prediction ≤ 0.
    """
    from mapie.regression import SplitConformalRegressor

    positions = np.asarray(rows, dtype=int).reshape(-1)
    unscored = int(np.sum(~np.isfinite(np.asarray(oof, dtype=float)[positions])))
    positions = positions[np.isfinite(np.asarray(oof, dtype=float)[positions])].reshape(-1, 1)
    if len(positions) < max(1.0 / level, 1.0 / (1.0 - level)):
        without = f", {unscored} rows without an out-of-fold prediction (every fold failed)" if unscored else ""
        raise ValueError(f"{len(positions)} rows are too few for a {level:.0%} conformal interval "
                         f"(at least {int(np.ceil(max(1 / level, 1 / (1 - level))))}{without})")
    mapie = SplitConformalRegressor(OutOfFold(oof).fit(), confidence_level=level, prefit=True,
                                    conformity_score=_mapie_score(score))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mapie.conformalize(positions, y[positions[:, 0]])
        pred, bounds = mapie.predict_interval(positions[:1])
    width = float((bounds[0, 1, 0] - bounds[0, 0, 0]) / 2.0)
    return width / float(pred[0]) if score == RELATIVE else width


def interval_bounds(pred: np.ndarray, width: float, score: str = ABSOLUTE) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper ends of the interval around predictions ``pred`` (shape (n,), target unit).

    ``score="absolute"``: ``pred ∓ width`` (``width`` in the target unit);
    ``score="relative"``: ``pred ∓ width·|pred|`` (``width`` a fraction), i.e. ``pred·(1 ∓ width)``
    for ``pred > 0`` (a prediction ≤ 0 keeps lower ≤ upper).

    Raises
    ------
    ValueError
        For an unknown ``score``.
    """
    if score not in SCORES:
        raise ValueError(f"unknown conformity score {score!r}: use one of {', '.join(SCORES)}")
    pred = np.asarray(pred, dtype=float)
    spread = width * np.abs(pred) if score == RELATIVE else np.full_like(pred, width)
    return pred - spread, pred + spread


def held_out_coverage(nested: CrossFit, y: np.ndarray, level: float, score: str = ABSOLUTE) -> float:
    """Fraction of rows inside intervals built without their fold (honest coverage).

    For each fold, the half-width comes from the out-of-fold predictions of the *other* folds
    only (:func:`conformal_half_width` with the same ``score`` as the stored interval); its
    held-out rows are then checked against ``ŷ_oof ± q`` (absolute) or ``ŷ_oof·(1 ± q)``
    (relative), see :func:`interval_bounds`.  NaN when no fold has enough rows outside it.
    """
    return pooled_coverage(*fold_coverage(nested, y, level, score))


def pooled_coverage(inside: np.ndarray, total: np.ndarray) -> float:
    """Rows inside their intervals over rows held out, summed over folds (shapes (n_folds,)); NaN without rows."""
    return float(inside.sum() / total.sum()) if total.sum() else float("nan")


def fold_coverage(nested: CrossFit, y: np.ndarray, level: float, score: str = ABSOLUTE) -> tuple[np.ndarray, np.ndarray]:
    """Rows inside their held-out interval and rows held out, per fold (shapes (n_folds,)).

    As :func:`held_out_coverage`; folds with too few rows outside them are left out.
    """
    inside, total = [], []
    for test in nested.tests:
        test = test[np.isfinite(nested.oof[test])]
        if not len(test):  # nothing predicted in this fold (every fold failed)
            continue
        others = np.setdiff1d(np.arange(len(y)), test)
        try:
            width = conformal_half_width(nested.oof, y, others, level, score)
        except ValueError:  # too few rows outside this fold
            continue
        lower, upper = interval_bounds(nested.oof[test], width, score)
        inside.append(int(np.sum((lower <= y[test]) & (y[test] <= upper))))
        total.append(len(test))
    return np.asarray(inside, dtype=float), np.asarray(total, dtype=float)


def coverage_text(interval: dict[str, Any]) -> str:
    """The held-out coverage of a stored interval with its spread, e.g. ``"83% ± 7% (folds 54%–100%)"``; ``"—"`` without one.

    An interval whose every fold left too few rows outside it to calibrate one of its own
    (:func:`fold_coverage`: 11 rows in 5 folds at 90 %) reads ``"— (no fold leaves enough rows
    outside it for a 90% interval of its own)"``.
    """
    value = interval.get("held_out_coverage")
    if value is None or not np.isfinite(value):
        has_width = interval.get("half_width") is not None or interval.get("relative_half_width") is not None
        level = interval.get("level")
        return (f"— (no fold leaves enough rows outside it for a {level:.0%} interval of its own)"
                if has_width and level is not None else "—")
    spread = interval.get("held_out_coverage_spread")
    if not spread:
        return f"{value:.0%}"
    return f"{value:.0%} ± {spread['standard_error']:.0%} (folds {spread['min']:.0%}–{spread['max']:.0%})"


def coverage_spread(inside: np.ndarray, total: np.ndarray) -> dict[str, float] | None:
    """How far the held-out coverage can be read: its spread over the held-out groups.

    Coverage is pooled over folds that hold out whole groups, so with few groups it moves in
    steps of a whole group.  Returns the lowest and highest coverage of one fold and the
    standard error of the pooled coverage with the folds as clusters
    (``sqrt(k/(k−1) · Σ_f (n_f/N)² (c_f − c)²)``, the cluster-robust form of the binomial
    error); None with fewer than two folds.
    """
    if len(total) < 2:
        return None
    per_fold, pooled, weight = inside / total, pooled_coverage(inside, total), total / total.sum()
    k = len(total)
    se = float(np.sqrt(k / (k - 1) * np.sum(weight**2 * (per_fold - pooled) ** 2)))
    return {"min": float(per_fold.min()), "max": float(per_fold.max()), "standard_error": se, "folds": k}


__all__ = ["ABSOLUTE", "DISCREPANCY_R2", "RELATIVE", "SCORES", "SUM_HINT_R2", "CrossFit", "OutOfFold", "agreement_text",
           "all_folds_failed", "criterion_text", "cv_notes", "failure_lines", "failure_reason", "failure_text",
           "grouping_text", "methods_lines", "methods_note", "per_fold_r2_text", "pooled_text", "prototypes_lines", "prototypes_note",
           "prototypes_text", "scheme_text",
           "methods_text", "nested_agreement_text", "time_budget_engines", "time_lines",
           "budget_floor_text", "ceiling_text", "conformal_half_width", "conformity_score", "coverage_spread",
           "coverage_text", "cross_fit", "discrepancy", "fold_agreement", "fold_coverage", "fold_records",
           "held_out_coverage", "interval_bounds", "orientation_deviation", "parts_lines", "per_group_errors", "pooled_coverage", "scores",
           "selected_forms"]
