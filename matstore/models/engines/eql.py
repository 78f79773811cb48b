"""The equation learner (EQL, EQL÷) as a matstore symbolic-regression engine, on JAX + optax.

An EQL is a feed-forward network whose hidden units are primitive functions instead of a
fixed activation [1]_: every hidden layer maps its input linearly, ``z = h W + b``, and
feeds the pre-activations to ``identity``, ``sin``, ``cos`` and ``multiply`` units (a
multiplication unit takes two pre-activations).  The output layer is linear or, as in
EQL÷ [2]_, a **division** ``n(h) / d(h)`` of two linear read-outs, computed only where the
denominator exceeds a threshold θ and paired with the pole-avoiding penalty
``Σ max(θ − d, 0)`` on the training rows *and* on points sampled in the data's bounding box
widened by ``extrapolation_margin`` (EQL÷'s "penalty epochs"), so the denominator stays
positive — no pole — around the data.  A bound penalty keeps the prediction on those
points within ``extrapolation_bound`` × the largest training |y| (EQL÷'s ``max(|y| − B, 0)``).

Training follows the phased schedule of [1]_ with Adam (optax): phase 1 (the first
``phases[0]`` of ``epochs``) without regularisation, phase 2 (up to ``phases[1]``) with an
L1 penalty ``λ Σ|w|`` on all weights and biases, phase 3 with the weights below the
smallest threshold fixed at zero (an L0 mask) and no L1, so the surviving weights are fitted
without shrinkage.  Several L1 strengths ``λ`` and random restarts are trained *at once*
(``jax.vmap`` over a ``jax.jit``-compiled ``lax.fori_loop``).  Inputs and target are
standardised for training; the read-off maps them back, so the SymPy expression is in the
original columns and units.

Read-off: for every trained network and every threshold in ``thresholds`` the weights
below the threshold are set to zero and the network is written out as a SymPy expression
(dead units vanish), its constants are refined by float64 least squares on the original
data (:func:`~matstore.models.engines.base.refit_constants`) and its training MSE is
computed.  The members of that front are then simplified: additive constants that do not
change the fit are dropped (:func:`drop_negligible_constants`), ``sin``/``cos`` units whose
argument barely varies become their tangent line (:func:`linearize_small_arguments`), and
the expanded output's terms are re-selected by exhaustive ℓ0 least squares
(:func:`term_subsets`).  :meth:`SymbolicEngine.fit` keeps the Pareto front over
(complexity, MSE).  Callers still run the pole/finiteness checks of
:mod:`matstore.models.validation` on it.

Determinism: the same data, parameters and ``random_state`` give the same front, as long
as the run finishes its ``epochs`` inside ``time_limit`` (the limit is a safety cap: when it
is hit, training jumps to the pruned phase and the read-off stops early; the engine records
this in ``budget_exhausted_``).  The number of rows is padded to a multiple of 64 (padded
rows carry zero weight) so cross-validation folds of similar size reuse one compilation.

References
----------
.. [1] G. Martius, C. H. Lampert, "Extrapolation and learning equations",
   arXiv:1610.02995 (2016).
.. [2] S. S. Sahoo, C. H. Lampert, G. Martius, "Learning equations for extrapolation and
   control", ICML 2018, arXiv:1806.07259.
.. [3] D. P. Kingma, J. Ba, "Adam: a method for stochastic optimization", arXiv:1412.6980.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import sympy as sp

from matstore.models.engines.base import (
    Candidate,
    EngineFitError,
    EngineSetupError,
    SymbolicEngine,
    evaluate_expr,
    expression_complexity,
    mse_of,
    refit_constants,
)

#: Hidden-unit primitives and the number of pre-activations each consumes.
OPERATORS: dict[str, int] = {"identity": 1, "sin": 1, "cos": 1, "multiply": 2}
_PAD = 64
#: Read-offs with more Float constants keep their trained values (least squares would be slow).
_MAX_REFINED_CONSTANTS = 24


@dataclass(frozen=True)
class Architecture:
    """Shape of an EQL network.

    Attributes
    ----------
    n_inputs : int
        Number of input columns.
    n_layers : int
        Number of hidden layers.
    operators : tuple of str
        Unit types of each hidden layer, keys of :data:`OPERATORS`.
    units : int
        Units of each type per hidden layer.
    division : bool
        Output ``n/d`` (EQL÷) instead of a linear output.
    """

    n_inputs: int
    n_layers: int
    operators: tuple[str, ...]
    units: int
    division: bool

    @property
    def n_pre(self) -> int:
        """Pre-activations per hidden layer."""
        return self.units * sum(OPERATORS[o] for o in self.operators)

    @property
    def n_out(self) -> int:
        """Outputs per hidden layer (one per unit)."""
        return self.units * len(self.operators)

    def layer_shapes(self) -> list[tuple[int, int]]:
        """``(fan_in, fan_out)`` of every linear map, output layer last."""
        shapes, fan_in = [], self.n_inputs
        for _ in range(self.n_layers):
            shapes.append((fan_in, self.n_pre))
            fan_in = self.n_out
        shapes.append((fan_in, 2 if self.division else 1))
        return shapes


# --------------------------------------------------------------------------- network


def _jax():
    try:
        import jax
        import jax.numpy as jnp
        import optax
    except ImportError as exc:  # pragma: no cover - jax/optax are dependencies
        raise EngineSetupError(f"the eql engine needs jax and optax ({exc}); pip install jax optax") from exc
    return jax, jnp, optax


def init_params(rng: np.random.Generator, arch: Architecture, n_networks: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Random weights of ``n_networks`` networks: Glorot-normal W, zero b (EQL÷: denominator bias 1).

    Returns
    -------
    list of (W, b)
        ``W`` shape (n_networks, fan_in, fan_out), ``b`` shape (n_networks, fan_out), float32,
        one pair per layer.
    """
    params = []
    for fan_in, fan_out in arch.layer_shapes():
        W = rng.normal(0.0, np.sqrt(2.0 / (fan_in + fan_out)), (n_networks, fan_in, fan_out))
        params.append((W.astype(np.float32), np.zeros((n_networks, fan_out), np.float32)))
    if arch.division:
        params[-1][1][:, 1] = 1.0
    return params


def _hidden(jnp, z, arch: Architecture):
    """Apply the unit primitives to pre-activations ``z`` (n, n_pre) -> (n, n_out)."""
    out, j, u = [], 0, arch.units
    for op in arch.operators:
        if op == "identity":
            out.append(z[:, j : j + u])
        elif op == "sin":
            out.append(jnp.sin(z[:, j : j + u]))
        elif op == "cos":
            out.append(jnp.cos(z[:, j : j + u]))
        else:  # multiply
            out.append(z[:, j : j + u] * z[:, j + u : j + 2 * u])
        j += OPERATORS[op] * u
    return jnp.concatenate(out, axis=1)


def forward(params, X, arch: Architecture, xp=None):
    """Network output before division: (n,) prediction, or (n, 2) numerator/denominator.

    ``xp`` is the array module (default ``jax.numpy``; ``numpy`` for host evaluation).
    """
    xp = xp if xp is not None else _jax()[1]
    h = X
    for W, b in params[:-1]:
        h = _hidden(xp, h @ W + b, arch)
    W, b = params[-1]
    out = h @ W + b
    return out if arch.division else out[:, 0]


# --------------------------------------------------------------------------- training


@functools.lru_cache(maxsize=16)
def _make_trainer(arch: Architecture, learning_rate: float, pole_weight: float, theta_min: float, chunk: int):
    """Compiled ``chunk``-step trainer, vmapped over runs (L1 strength, restart)."""
    jax, jnp, optax = _jax()
    opt = optax.adam(learning_rate)

    def predict(params, X, theta):
        out = forward(params, X, arch)
        if not arch.division:
            return out, 0.0
        num, den = out[:, 0], out[:, 1]
        safe = jnp.where(den > theta, den, 1.0)
        return jnp.where(den > theta, num / safe, 0.0), jnp.maximum(theta - den, 0.0)

    def loss_fn(params, mask, lam, data, theta):
        X, y, w, Xp, bound = data
        params = jax.tree_util.tree_map(lambda p, m: p * m, params, mask)
        pred, pole = predict(params, X, theta)
        mse = jnp.sum(w * (pred - y) ** 2) / jnp.sum(w)
        l1 = sum(jnp.sum(jnp.abs(p)) for p in jax.tree_util.tree_leaves(params))
        loss = mse + lam * l1
        if arch.division:
            pred_p, pole_p = predict(params, Xp, theta)
            penalty = jnp.sum(w * pole) / jnp.sum(w) + jnp.mean(pole_p) + jnp.mean(jnp.maximum(jnp.abs(pred_p) - bound, 0.0))
            loss = loss + pole_weight * penalty
        return loss

    grad = jax.grad(loss_fn)

    def run_chunk(params, state, mask, lam, step0, data):
        def body(i, carry):
            p, s = carry
            # EQL÷: the division threshold decays as 1/sqrt(epoch + 1), floored at theta_min
            theta = jnp.maximum(theta_min, 1.0 / jnp.sqrt(1.0 + (step0 + i) / 10.0))
            g = grad(p, mask, lam, data, theta)
            upd, s = opt.update(g, s, p)
            p = optax.apply_updates(p, upd)
            return jax.tree_util.tree_map(lambda a, m: a * m, p, mask), s

        return jax.lax.fori_loop(0, chunk, body, (params, state))

    batched = jax.vmap(run_chunk, in_axes=(0, 0, 0, 0, None, None))
    return jax.jit(batched), opt


# --------------------------------------------------------------------------- read-off


def _affine_inputs(names: list[str], mean: np.ndarray, scale: np.ndarray) -> list[sp.Expr]:
    """Standardised inputs ``(x_i − mean_i)/scale_i`` as SymPy expressions."""
    return [(sp.Symbol(n) - sp.Float(float(m), 15)) / sp.Float(float(s), 15) for n, m, s in zip(names, mean, scale, strict=True)]


def _linear(h: list[sp.Expr], W: np.ndarray, b: np.ndarray) -> list[sp.Expr]:
    out = []
    for j in range(W.shape[1]):
        terms = [sp.Float(float(W[i, j]), 15) * h[i] for i in range(W.shape[0]) if W[i, j] != 0.0 and h[i] != 0]
        out.append(sp.Add(*terms, sp.Float(float(b[j]), 15) if b[j] != 0.0 else sp.Integer(0)))
    return out


def network_to_sympy(
    params: list[tuple[np.ndarray, np.ndarray]],
    arch: Architecture,
    names: list[str],
    x_mean: np.ndarray,
    x_scale: np.ndarray,
    y_mean: float,
    y_scale: float,
) -> sp.Expr:
    """Write a (pruned) EQL network out as a SymPy expression in the original columns.

    Parameters
    ----------
    params : list of (W, b)
        Float64 weights, zeros where pruned; shapes as :meth:`Architecture.layer_shapes`.
    arch : Architecture
    names : list of str, length n_inputs
        Column names (the symbols of the result).
    x_mean, x_scale : ndarray, shape (n_inputs,)
        Standardisation of the inputs (original units).
    y_mean, y_scale : float
        Standardisation of the target: ``y = y_mean + y_scale · network``.

    Returns
    -------
    sympy.Expr
    """
    h = _affine_inputs(names, x_mean, x_scale)
    u = arch.units
    for W, b in params[:-1]:
        z = _linear(h, W, b)
        h, j = [], 0
        for op in arch.operators:
            block = z[j : j + OPERATORS[op] * u]
            if op == "identity":
                h += block
            elif op == "sin":
                h += [sp.sin(e) for e in block]
            elif op == "cos":
                h += [sp.cos(e) for e in block]
            else:
                h += [block[k] * block[u + k] for k in range(u)]
            j += OPERATORS[op] * u
    W, b = params[-1]
    out = _linear(h, W, b)
    if arch.division and out[1] == 0:
        return sp.nan  # denominator pruned away: no equation
    core = out[0] / out[1] if arch.division else out[0]
    return sp.Float(float(y_mean), 15) + sp.Float(float(y_scale), 15) * core


# --------------------------------------------------------------------------- engine


class EQLEngine(SymbolicEngine):
    """Equation learner (EQL / EQL÷) on JAX: a sparse network of primitive units read off as SymPy.

    Parameters
    ----------
    n_layers : int, default 2
        Hidden layers (two allow products of sines, ratios of products, ...).
    units : int, default 4
        Units of each operator type per hidden layer.
    operators : tuple of str, default ("identity", "sin", "cos", "multiply")
        Hidden-unit primitives (subset of :data:`OPERATORS`).
    division : bool, default True
        EQL÷ division output with the pole-avoiding penalty; ``False``: linear output.
    epochs : int, default 3000
        Full-batch Adam steps per network (rounded up to a multiple of 250).
    learning_rate : float, default 0.01
    l1_strengths : tuple of float, default (1e-4, 1e-3, 3e-3, 1e-2, 3e-2)
        L1 strengths λ (on standardised data), one family of networks each.
    n_restarts : int, default 2
        Random initialisations per λ.
    thresholds : tuple of float, default (0.01, 0.03, 0.1, 0.3)
        Pruning thresholds on |weight|: the smallest is the training mask of phase 3, every
        one gives a read-off (larger thresholds: shorter equations).
    phases : tuple of float, default (0.25, 0.7)
        Ends of phase 1 (no regularisation) and phase 2 (L1) as fractions of ``epochs``.
    pole_weight : float, default 1.0
        Weight of the pole and bound penalties (division output).
    pole_threshold : float, default 1e-3
        Floor of the division threshold θ (standardised units).
    extrapolation_margin : float, default 0.25
        Penalty points are sampled in the bounding box widened by this fraction per side.
    extrapolation_bound : float, default 10.0
        |prediction| on penalty points is kept below this × max |standardised y|.
    n_extrapolation_points : int, default 256
    time_limit : float, default 60
        Wall-clock cap in seconds for the whole fit (compilation, training, read-off).
    max_candidates : int, default 24
        Most distinct read-offs written out and refined (fewest active weights first).
    max_active : int, default 40
        Pruned networks with more non-zero weights and biases are not read off (unless
        none is sparser: then the three sparsest are).
    random_state : int, default 0
        Seed of the NumPy generator of the initial weights and penalty points (training
        itself is deterministic: full-batch Adam, no dropout).

    Attributes
    ----------
    pareto_front_ : list of Candidate
    n_networks_ : int
        Networks trained (λ × restarts).
    budget_exhausted_ : bool
        ``True`` when ``time_limit`` cut training or read-off short (then results can
        depend on machine speed).
    train_seconds_ : float
        Wall time of compilation plus training.

    Examples
    --------
    >>> eng = EQLEngine(epochs=2000, time_limit=30).fit(X, y)   # doctest: +SKIP
    >>> eng.pareto_front_[-1].expr                              # doctest: +SKIP
    2.5*sin(x0) + x1*x2
    """

    name: ClassVar[str] = "eql"
    default_parameters: ClassVar[dict[str, Any]] = {
        "n_layers": 2,
        "units": 4,
        "operators": ("identity", "sin", "cos", "multiply"),
        "division": True,
        "epochs": 3000,
        "learning_rate": 0.01,
        "l1_strengths": (1e-4, 1e-3, 3e-3, 1e-2, 3e-2),
        "n_restarts": 2,
        "thresholds": (0.01, 0.03, 0.1, 0.3),
        "phases": (0.25, 0.7),
        "pole_weight": 1.0,
        "pole_threshold": 1e-3,
        "extrapolation_margin": 0.25,
        "extrapolation_bound": 10.0,
        "n_extrapolation_points": 256,
        "time_limit": 60.0,
        "max_candidates": 24,
        "max_active": 40,
        "random_state": 0,
    }

    def __init__(
        self,
        n_layers: int = 2,
        units: int = 4,
        operators: tuple[str, ...] = ("identity", "sin", "cos", "multiply"),
        division: bool = True,
        epochs: int = 3000,
        learning_rate: float = 0.01,
        l1_strengths: tuple[float, ...] = (1e-4, 1e-3, 3e-3, 1e-2, 3e-2),
        n_restarts: int = 2,
        thresholds: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3),
        phases: tuple[float, float] = (0.25, 0.7),
        pole_weight: float = 1.0,
        pole_threshold: float = 1e-3,
        extrapolation_margin: float = 0.25,
        extrapolation_bound: float = 10.0,
        n_extrapolation_points: int = 256,
        time_limit: float = 60.0,
        max_candidates: int = 24,
        max_active: int = 40,
        random_state: int | None = 0,
    ) -> None:
        self.n_layers = n_layers
        self.units = units
        self.operators = operators
        self.division = division
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.l1_strengths = l1_strengths
        self.n_restarts = n_restarts
        self.thresholds = thresholds
        self.phases = phases
        self.pole_weight = pole_weight
        self.pole_threshold = pole_threshold
        self.extrapolation_margin = extrapolation_margin
        self.extrapolation_bound = extrapolation_bound
        self.n_extrapolation_points = n_extrapolation_points
        self.time_limit = time_limit
        self.max_candidates = max_candidates
        self.max_active = max_active
        self.random_state = random_state

    # ------------------------------------------------------------------ checks
    def _architecture(self, n_inputs: int) -> Architecture:
        ops = tuple(str(o) for o in ([self.operators] if isinstance(self.operators, str) else self.operators))
        ops = tuple(o.strip() for op in ops for o in op.split(",") if o.strip())
        unknown = [o for o in ops if o not in OPERATORS]
        if unknown or not ops:
            raise ValueError(f"eql: operators must be a non-empty subset of {sorted(OPERATORS)}, got {list(ops)}")
        if int(self.n_layers) < 1 or int(self.units) < 1:
            raise ValueError(f"eql: n_layers and units must be >= 1, got {self.n_layers}, {self.units}")
        if not self.thresholds or min(self.thresholds) <= 0 or not self.l1_strengths or min(self.l1_strengths) < 0:
            raise ValueError("eql: thresholds must be positive and l1_strengths non-negative (both non-empty)")
        p1, p2 = (float(p) for p in self.phases)
        if not 0.0 <= p1 <= p2 <= 1.0:
            raise ValueError(f"eql: phases must satisfy 0 <= phase1 <= phase2 <= 1, got {self.phases}")
        return Architecture(n_inputs, int(self.n_layers), ops, int(self.units), bool(self.division))

    # ------------------------------------------------------------------ fit
    def _fit_front(self, X: pd.DataFrame, y: np.ndarray) -> list[Candidate]:
        t0 = time.perf_counter()
        arch = self._architecture(X.shape[1])
        names = list(X.columns)
        Xv = X.to_numpy(dtype=float)
        x_mean, x_scale = Xv.mean(axis=0), Xv.std(axis=0)
        x_scale[x_scale == 0] = 1.0
        y_mean, y_scale = float(np.mean(y)), float(np.std(y)) or 1.0
        params = self._train(arch, (Xv - x_mean) / x_scale, (y - y_mean) / y_scale, t0)
        self.train_seconds_ = time.perf_counter() - t0
        standardisation = (x_mean, x_scale, y_mean, y_scale)
        cands = self._read_off(params, arch, names, standardisation, X, y, t0)
        cands.append(Candidate(1, float(np.var(y)), sp.Float(float(np.mean(y)), 15)))
        return cands

    def _train(self, arch: Architecture, Xs: np.ndarray, ys: np.ndarray, t0: float) -> list[list[tuple[np.ndarray, np.ndarray]]]:
        """Train all (λ, restart) networks; return their float64 weights, masked, per network."""
        jax, jnp, _ = _jax()
        chunk = 250
        n_steps = max(chunk, int(np.ceil(int(self.epochs) / chunk)) * chunk)
        lams = np.repeat(np.asarray(self.l1_strengths, dtype=np.float32), int(self.n_restarts))
        self.n_networks_ = len(lams)
        rng = np.random.default_rng(0 if self.random_state is None else int(self.random_state))
        params = jax.tree_util.tree_map(jnp.asarray, init_params(rng, arch, len(lams)))
        data = self._training_data(jnp, Xs, ys, rng)
        trainer, opt = _make_trainer(arch, float(self.learning_rate), float(self.pole_weight),
                                     float(self.pole_threshold), chunk)
        state = jax.vmap(opt.init)(params)
        ones = jax.tree_util.tree_map(lambda p: np.ones(p.shape, np.float32), params)
        zero = jnp.zeros_like(jnp.asarray(lams))
        end1, end2 = (int(round(float(p) * n_steps / chunk)) * chunk for p in self.phases)
        step, mask, self.budget_exhausted_ = 0, ones, False
        budget = float(self.time_limit)
        while step < n_steps:
            if step >= end2 and mask is ones:
                mask = self._mask(params, min(self.thresholds))
            lam = zero if (step < end1 or step >= end2) else jnp.asarray(lams)
            params, state = trainer(params, state, mask, lam, step, data)
            step += chunk
            if step < n_steps and time.perf_counter() - t0 > 0.6 * budget:
                self.budget_exhausted_ = True
                if step < end2:  # jump to the pruned phase for one last chunk
                    mask = self._mask(params, min(self.thresholds))
                    params, state = trainer(params, state, mask, zero, n_steps, data)
                break
        if mask is ones:
            mask = self._mask(params, min(self.thresholds))
        host = [(np.asarray(W, dtype=float) * mW, np.asarray(b, dtype=float) * mb) for (W, b), (mW, mb) in zip(params, mask, strict=True)]
        return [[(W[r], b[r]) for W, b in host] for r in range(len(lams))]

    def _training_data(self, jnp, Xs: np.ndarray, ys: np.ndarray, rng: np.random.Generator):
        """Padded rows (weight 0 beyond n), penalty points in the widened box, the bound."""
        n, d = Xs.shape
        n_pad = int(np.ceil(n / _PAD)) * _PAD
        Xp = np.zeros((n_pad, d), dtype=np.float32)
        Xp[:n] = Xs
        yp = np.zeros(n_pad, dtype=np.float32)
        yp[:n] = ys
        w = np.zeros(n_pad, dtype=np.float32)
        w[:n] = 1.0
        lo, hi = Xs.min(axis=0), Xs.max(axis=0)
        span = np.where(hi > lo, hi - lo, 1.0)
        margin = float(self.extrapolation_margin)
        u = rng.random((int(self.n_extrapolation_points), d))
        pen = (lo - margin * span) + u * (1.0 + 2.0 * margin) * span
        bound = float(self.extrapolation_bound) * float(np.max(np.abs(ys)) or 1.0)
        return (jnp.asarray(Xp), jnp.asarray(yp), jnp.asarray(w), jnp.asarray(pen, dtype=jnp.float32), bound)

    @staticmethod
    def _mask(params, threshold: float):
        """0/1 arrays (as ``params``) keeping the weights with |w| >= ``threshold``."""
        import jax

        return jax.tree_util.tree_map(lambda p: (np.abs(np.asarray(p)) >= threshold).astype(np.float32), params)

    def _read_off(self, nets, arch, names, standardisation, X, y, t0) -> list[Candidate]:
        """SymPy read-off of the pruned networks, constants refined, negligible constants dropped.

        Every network is pruned at every threshold; the pruned networks are ranked by their
        number of active weights, then by their (float32) training error, and at most
        ``max_candidates`` distinct ones with at most ``max_active`` weights are written out
        and refined in float64.
        """
        from matstore.models.engines.base import pareto_filter

        x_mean, x_scale, y_mean, y_scale = standardisation
        Xs = (X.to_numpy(dtype=float) - x_mean) / x_scale
        ys = (y - y_mean) / y_scale
        ranked = []
        for r, net in enumerate(nets):
            for thr in sorted(self.thresholds):
                pruned = [(np.where(np.abs(W) >= thr, W, 0.0), np.where(np.abs(b) >= thr, b, 0.0)) for W, b in net]
                n_active = sum(int(np.count_nonzero(W)) + int(np.count_nonzero(b)) for W, b in pruned)
                ranked.append((n_active, _network_mse(pruned, arch, Xs, ys), r, thr, pruned))
        ranked.sort(key=lambda e: (e[0], e[1], e[2], e[3]))
        # networks cut short by the time limit may all be dense: then read off the sparsest few
        ranked = [e for e in ranked if e[0] <= int(self.max_active)] or ranked[:3]
        raw: dict[str, sp.Expr] = {}
        for *_, pruned in ranked:
            expr = network_to_sympy(pruned, arch, names, x_mean, x_scale, y_mean, y_scale)
            if expr.free_symbols and not expr.has(sp.zoo, sp.oo, -sp.oo, sp.nan):
                raw.setdefault(sp.srepr(expr), expr)
            if len(raw) >= int(self.max_candidates):
                break
        cands: list[Candidate] = []
        for k, expr in enumerate(raw.values()):
            if k >= 3 and time.perf_counter() - t0 > float(self.time_limit):
                self.budget_exhausted_ = True
                break
            cands.append(self._refined(expr, X, y))
        front = pareto_filter(c for c in cands if np.isfinite(c.loss))
        tol = 1e-6 * float(np.var(y))
        deadline = t0 + float(self.time_limit)
        for c in front:
            if time.perf_counter() > deadline:
                self.budget_exhausted_ = True
                break
            cands += [self._refined(e, X, y) for e in term_subsets(c.expr, X, y)]
            cands.append(self._refined(drop_negligible_constants(c.expr, X, y, tol, deadline), X, y))
            linear = linearize_small_arguments(c.expr, X, deadline=deadline)
            if linear != c.expr:
                linear = self._refined(linear, X, y).expr
                cands.append(self._refined(drop_negligible_constants(linear, X, y, tol, deadline), X, y))
        if not raw:
            raise EngineFitError("eql: every network was pruned to a constant or exceeds max_active weights")
        return [c for c in cands if np.isfinite(c.loss)]

    @staticmethod
    def _refined(expr: sp.Expr, X: pd.DataFrame, y: np.ndarray) -> Candidate:
        """``expr`` with its constants refined by float64 least squares (few constants only)."""
        if len(expr.atoms(sp.Float)) <= _MAX_REFINED_CONSTANTS:
            expr = refit_constants(expr, X, y, max_nfev=50)
        return Candidate(expression_complexity(expr), mse_of(expr, X, y), expr)


def _network_mse(params, arch: Architecture, Xs: np.ndarray, ys: np.ndarray) -> float:
    """Training MSE (standardised units) of a pruned network with a plain division output."""
    out = forward(params, Xs, arch, xp=np)
    with np.errstate(all="ignore"):
        pred = out[:, 0] / out[:, 1] if arch.division else out
    err = float(np.mean((pred - ys) ** 2))
    return err if np.isfinite(err) else float("inf")


def linearize_small_arguments(expr: sp.Expr, X: pd.DataFrame, limit: float = 0.1, deadline: float = np.inf) -> sp.Expr:
    """Replace ``sin(u)``/``cos(u)`` by their tangent line where ``u`` varies by less than ``limit``.

    A sine or cosine unit whose argument stays within ``ū ± limit`` on the rows of ``X``
    acts as a linear unit: ``f(u) ≈ f(ū) + f'(ū)(u − ū)`` (relative error below
    ``limit²/2``).  Writing it as such shortens the equation (``sin(0.01·x)`` → ``0.01·x``);
    the constant refit that follows absorbs the difference.  Repeated, innermost first,
    until nothing changes or ``time.perf_counter()`` passes ``deadline``.
    """
    columns = {sp.Symbol(c) for c in X.columns}
    changed = True
    while changed and time.perf_counter() < deadline:
        changed = False
        for node in sorted(expr.atoms(sp.sin, sp.cos), key=lambda e: (expression_complexity(e), sp.srepr(e))):
            arg = node.args[0]
            if not arg.free_symbols or not arg.free_symbols <= columns:
                continue
            vals = np.real_if_close(np.asarray(evaluate_expr(arg, X)))
            if not (np.all(np.isfinite(vals)) and np.isrealobj(vals)):
                continue
            centre = float(np.mean(vals))
            if float(np.max(np.abs(vals - centre))) < limit:
                c = sp.Float(centre, 15)
                expr = expr.xreplace({node: node.func(c) + sp.diff(node.func(sp.Symbol("u")), "u").subs("u", c) * (arg - c)})
                changed = True
                break
    return expr


def term_subsets(expr: sp.Expr, X: pd.DataFrame, y: np.ndarray, *, max_terms: int = 4, max_basis: int = 14,
                 per_size: int = 2) -> list[sp.Expr]:
    """Sparse linear re-fits over the additive terms of an expanded read-off.

    The expanded network output is a sum ``Σ c_i φ_i(x)`` of products of inputs and unit
    functions; the best subsets of at most ``max_terms`` of its ``φ_i`` (by least squares
    with an intercept, exhaustively, ``per_size`` per size) are returned as new equations.
    The network thus proposes the functional forms and ℓ0 regression picks among them — the
    read-off counterpart of EQL's pruning, which cannot remove a term that is present in the
    expansion but carried by a weight it must keep for another term.

    Returns
    -------
    list of sympy.Expr
        At most ``max_terms · per_size`` equations (none when ``expr`` has a single term).
    """
    from itertools import combinations

    expanded = sp.expand(expr)
    terms = expanded.args if isinstance(expanded, sp.Add) else (expanded,)
    basis: dict[str, tuple[sp.Expr, np.ndarray, float]] = {}
    for term in terms:
        coeff, rest = term.as_coeff_Mul()
        if not rest.free_symbols:
            continue
        vals = np.real_if_close(np.asarray(evaluate_expr(rest, X)))
        if np.isrealobj(vals) and np.all(np.isfinite(vals)) and np.std(vals) > 0:
            key = sp.srepr(rest)
            weight = abs(float(coeff)) * float(np.std(vals)) + (basis[key][2] if key in basis else 0.0)
            basis[key] = (rest, vals.astype(float), weight)
    if len(basis) < 2:
        return []
    chosen = sorted(basis.values(), key=lambda b: -b[2])[:max_basis]
    Phi = np.column_stack([b[1] for b in chosen])
    Phi_c, y_c = Phi - Phi.mean(axis=0), y - y.mean()
    out = []
    for k in range(1, min(max_terms, len(chosen)) + 1):
        fits = []
        for subset in combinations(range(len(chosen)), k):
            coef, *_ = np.linalg.lstsq(Phi_c[:, subset], y_c, rcond=None)
            fits.append((float(np.sum((Phi_c[:, subset] @ coef - y_c) ** 2)), subset, coef))
        for _, subset, coef in sorted(fits, key=lambda f: (f[0], f[1]))[:per_size]:
            intercept = float(y.mean() - Phi[:, subset].mean(axis=0) @ coef)
            out.append(sp.Add(*[sp.Float(float(c), 15) * chosen[i][0] for c, i in zip(coef, subset, strict=True)],
                              sp.Float(intercept, 15)))
    return out


def drop_negligible_constants(expr: sp.Expr, X: pd.DataFrame, y: np.ndarray, tol: float,
                              deadline: float = np.inf) -> sp.Expr:
    """Remove additive Float constants whose removal raises the training MSE by at most ``tol``.

    The read-off of standardised inputs leaves shifts such as ``(0.43*x1 + 1e-17)``; this
    drops them one at a time, smallest first (units of ``tol``: target unit²), until
    ``time.perf_counter()`` passes ``deadline``.
    """
    base = mse_of(expr, X, y)
    if not np.isfinite(base):
        return expr
    additive = sorted({a for node in sp.preorder_traversal(expr) if isinstance(node, sp.Add)
                       for a in node.args if isinstance(a, sp.Float)}, key=lambda f: (abs(float(f)), str(f)))
    for const in additive:
        if time.perf_counter() > deadline:
            break
        trial = expr.xreplace({const: sp.Integer(0)})
        if trial.free_symbols and mse_of(trial, X, y) <= base + tol:
            expr = trial
    return expr


__all__ = ["OPERATORS", "Architecture", "EQLEngine", "drop_negligible_constants", "forward", "linearize_small_arguments", "term_subsets", "init_params", "network_to_sympy"]
