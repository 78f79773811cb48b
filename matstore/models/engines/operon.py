"""Operon genetic-programming symbolic regression (``pyoperon``) as a matstore engine.

Settings follow what was measured on pyoperon 0.6.2: multi-objective NSGA-II
(``objectives=("r2", "length")``) with local Levenberg–Marquardt constant optimisation
(``optimizer_iterations > 0``) recovered an exact test formula in 3 of 3 seeds where the
defaults recovered 0 of 3, so those are the defaults here.  The whole non-dominated front
(``pareto_front_`` of the pyoperon estimator) is converted to SymPy expressions over the
real feature names, its float32 constants are re-optimised in float64
(:func:`~matstore.models.engines.base.refit_constants` to ``SCORING_FTOL``; the equation
an :class:`~matstore.models.estimators.EquationSearch` chooses is refitted to
``REFIT_FTOL``), and negligible additive constants are pruned.

Known behaviours handled here:

- fitted pyoperon estimators cannot be pickled: the engine keeps only SymPy expressions;
- with division allowed it readily returns equations with poles: they are *not* filtered
  here beyond the training rows — callers run
  :func:`matstore.models.validation.is_finite_and_bounded` on each candidate;
- pyoperon 0.6.2 raises a ``TypeError`` in its post-processing, after the whole run, when
  the target array is read-only: ``FitLeastSquares`` takes float32 predictions and the
  float64 target, and its binding converts the target to float32 only when it may write to
  it.  pandas' copy-on-write hands out read-only views, so the engine passes writeable
  float64 copies of ``X`` and ``y``.  Any other ``TypeError`` of the wrapper is retried once
  with float32 arrays, under what is left of the time limit (at least 1 s).

Determinism: results are reproducible for a fixed ``random_state`` when ``n_threads=1`` and
the run ends on ``generations``/``max_evaluations`` rather than on ``time_limit``; the time
limit is a safety cap.

Time limits: pyoperon's clock counts whole seconds, so a limit below one second is met by
capping the generations instead, at ``generation_rate`` (generations per second measured by
an earlier run on the same data, ``generation_rate_``); such a paced run ends on its
generations and is reproducible for that rate.

References
----------
.. [1] B. Burlacu, G. Kronberger, M. Kommenda, "Operon C++: an efficient genetic
   programming framework for symbolic regression", GECCO 2020 Companion,
   doi:10.1145/3377929.3398099.
"""

from __future__ import annotations

import re
import time
import warnings
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import sympy as sp

from matstore.models.engines.base import (
    MIN_RUN_SECONDS,
    SCORING_FTOL,
    Candidate,
    EngineFitError,
    EngineSetupError,
    SymbolicEngine,
    expression_complexity,
    mse_of,
    prune_small_terms,
    refit_constants,
)

#: Generations of the shortest paced run (a time limit below one second met by a generation cap).
MIN_PACED_GENERATIONS = 5

#: Functions pyoperon's infix formatter may print, as SymPy callables.
_OPERON_FUNCTIONS: dict[str, Any] = {
    "exp": sp.exp,
    "log": sp.log,
    "sqrt": sp.sqrt,
    "sin": sp.sin,
    "cos": sp.cos,
    "tan": sp.tan,
    "tanh": sp.tanh,
    "abs": sp.Abs,
    "square": lambda a: a**2,
    "cbrt": lambda a: sp.cbrt(a),
    "aq": lambda a, b: a / sp.sqrt(1 + b**2),
    "logabs": lambda a: sp.log(sp.Abs(a)),
    "sqrtabs": lambda a: sp.sqrt(sp.Abs(a)),
    "pow": lambda a, b: a**b,
    "fmin": sp.Min,
    "fmax": sp.Max,
}


def _writeable(values: Any, dtype: type) -> np.ndarray:
    """A C-contiguous, writeable copy of ``values`` as ``dtype`` (see the module notes)."""
    return np.array(values, dtype=dtype, order="C", copy=True)


def operon_string_to_sympy(text: str, names: list[str]) -> sp.Expr:
    """Parse a pyoperon infix model string written with placeholders ``X0 … X{n-1}``.

    Parameters
    ----------
    text : str
        Output of ``SymbolicRegressor.get_model_string(tree, precision, names=[X0, …])``;
        ``^`` denotes a power.
    names : list of str
        Real feature names; placeholder ``X{i}`` becomes ``Symbol(names[i])``.

    Returns
    -------
    sympy.Expr

    Raises
    ------
    ValueError
        If the string cannot be parsed.
    """
    from sympy.parsing.sympy_parser import convert_xor, parse_expr, standard_transformations

    local: dict[str, Any] = dict(_OPERON_FUNCTIONS)
    for i, n in enumerate(names):
        local[f"X{i}"] = sp.Symbol(n)
    try:
        return parse_expr(
            text, local_dict=local, global_dict={**vars(sp)}, transformations=(*standard_transformations, convert_xor)
        )
    except (SyntaxError, TypeError, ValueError, sp.SympifyError) as exc:
        raise ValueError(f"cannot parse operon model {text!r}: {exc}") from exc


class OperonEngine(SymbolicEngine):
    """Operon (pyoperon) multi-objective genetic programming.

    Parameters
    ----------
    allowed_symbols : str, default "add,sub,mul,div,constant,variable"
        pyoperon primitive set (e.g. add ``exp,log,sqrt,square,pow``).
    objectives : tuple of str, default ("r2", "length")
        Two objectives select NSGA-II; one objective a single-objective GP.
    optimizer_iterations : int, default 10
        Levenberg–Marquardt iterations of local constant optimisation per individual.
    population_size : int, default 500
    generations : int, default 200
    max_evaluations : int, default 500000
    max_length : int, default 30
        Largest tree length.
    time_limit : float, default 30
        Wall-clock cap in seconds (whole seconds, at least one, for pyoperon; below one
        second with ``generation_rate``, a generation cap).
    generation_rate : float, optional
        Generations per second of an earlier run on the same data (``generation_rate_``).
        With a ``time_limit`` below one second the run is capped at
        ``max(MIN_PACED_GENERATIONS, generation_rate · time_limit)`` generations.
    n_threads : int, default 1
        Worker threads; > 1 is faster but not reproducible.
    random_state : int, default 0
    polish : bool, default True
        Re-optimise constants in float64 and prune negligible additive constants.

    Attributes
    ----------
    pareto_front_ : list of Candidate
    raw_models_ : list of str
        The pyoperon model strings (placeholders ``X0…``), for provenance.
    time_limit_applied_ : float
        The limit the run had, seconds (whole seconds unless paced).
    shortest_run_seconds_ : float
        The least time a run under that kind of limit takes: 1 s, or
        :data:`MIN_PACED_GENERATIONS` generations of a paced run.
    generations_run_ : int or None
        Generations the run went through (None when pyoperon reports none).
    generation_rate_ : float or None
        Generations per second of this run (None when pyoperon reports no generations).
    """

    name: ClassVar[str] = "operon"
    default_parameters: ClassVar[dict[str, Any]] = {
        "allowed_symbols": "add,sub,mul,div,constant,variable",
        "objectives": ("r2", "length"),
        "optimizer_iterations": 10,
        "population_size": 500,
        "generations": 200,
        "max_evaluations": 500000,
        "max_length": 30,
        "time_limit": 30.0,
        "generation_rate": None,
        "n_threads": 1,
        "random_state": 0,
        "polish": True,
    }

    def __init__(
        self,
        allowed_symbols: str = "add,sub,mul,div,constant,variable",
        objectives: tuple[str, ...] = ("r2", "length"),
        optimizer_iterations: int = 10,
        population_size: int = 500,
        generations: int = 200,
        max_evaluations: int = 500000,
        max_length: int = 30,
        time_limit: float = 30.0,
        generation_rate: float | None = None,
        n_threads: int = 1,
        random_state: int | None = 0,
        polish: bool = True,
    ) -> None:
        self.allowed_symbols = allowed_symbols
        self.objectives = objectives
        self.optimizer_iterations = optimizer_iterations
        self.population_size = population_size
        self.generations = generations
        self.max_evaluations = max_evaluations
        self.max_length = max_length
        self.time_limit = time_limit
        self.generation_rate = generation_rate
        self.n_threads = n_threads
        self.random_state = random_state
        self.polish = polish

    def _make_regressor(self) -> Any:
        try:
            from pyoperon.sklearn import SymbolicRegressor
        except ImportError as exc:  # pragma: no cover - pyoperon is a dependency
            raise EngineSetupError(f"pyoperon is not importable ({exc}); pip install pyoperon") from exc
        seed = 0 if self.random_state is None else int(self.random_state)
        generations = self._limit_generations()
        return SymbolicRegressor(
            allowed_symbols=self.allowed_symbols,
            objectives=list(self.objectives),
            optimizer_iterations=int(self.optimizer_iterations),
            population_size=int(self.population_size),
            pool_size=int(self.population_size),
            generations=generations,
            max_evaluations=int(self.max_evaluations),
            max_length=int(self.max_length),
            max_time=max(1, int(self.time_limit_applied_)),
            n_threads=int(self.n_threads),
            random_state=seed,
        )

    def _limit_generations(self) -> int:
        """Generations of this run; sets ``time_limit_applied_`` and ``shortest_run_seconds_``."""
        limit, rate = float(self.time_limit), self.generation_rate
        if rate is None or not np.isfinite(rate) or rate <= 0 or limit >= MIN_RUN_SECONDS:
            self.time_limit_applied_ = float(max(1, int(limit)))  # whole seconds, never above the limit
            self.shortest_run_seconds_ = MIN_RUN_SECONDS
            return int(self.generations)
        self.time_limit_applied_ = limit
        self.shortest_run_seconds_ = MIN_PACED_GENERATIONS / float(rate)
        return min(int(self.generations), max(MIN_PACED_GENERATIONS, int(float(rate) * max(limit, 0.0))))

    def _fit_front(self, X: pd.DataFrame, y: np.ndarray) -> list[Candidate]:
        attempts = [  # writeable copies: pandas' copy-on-write hands out read-only views
            (_writeable(X.to_numpy(), np.float64), _writeable(y, np.float64)),
            (_writeable(X.to_numpy(), np.float32), _writeable(y, np.float32)),
        ]
        reg = None
        last: Exception | None = None
        started = time.perf_counter()
        for Xa, ya in attempts:
            reg = self._make_regressor()
            if last is not None:  # a retry: what is left of the limit (at least pyoperon's 1 s)
                left = self.time_limit_applied_ - (time.perf_counter() - started)
                reg.set_params(max_time=max(1, int(left)))
            try:
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    reg.fit(Xa, ya)
                self._measure_rate(reg, time.perf_counter() - t0)
                break
            except TypeError as exc:  # dtype problems inside the wrapper: retry
                last = exc
                reg = None
            except EngineSetupError:
                raise
            except Exception as exc:  # noqa: BLE001 - the C++ backend raises many types
                raise EngineFitError(f"operon failed while fitting: {type(exc).__name__}: {exc}") from exc
        if reg is None:
            raise EngineFitError(f"operon failed while fitting (dtype retries exhausted): {last}")
        return self._candidates(reg, X, y)

    def _measure_rate(self, reg: Any, seconds: float) -> None:
        """``generations_run_`` and ``generation_rate_`` (per second) of the run that just ended."""
        generations = getattr(reg, "stats_", {}).get("generations")
        self.generations_run_ = None if generations is None else int(generations)
        self.generation_rate_ = float(generations) / seconds if generations and seconds > 0 else None

    def _candidates(self, reg: Any, X: pd.DataFrame, y: np.ndarray) -> list[Candidate]:
        """The fitted front as polished SymPy candidates, plus the constant model."""
        names = list(X.columns)
        placeholders = [f"X{i}" for i in range(len(names))]
        cands: list[Candidate] = []
        raw: list[str] = []
        for model in getattr(reg, "pareto_front_", []):
            try:
                text = reg.get_model_string(model["tree"], 15, placeholders)
            except Exception:  # noqa: BLE001 - formatter errors: skip that model
                continue
            text = re.sub(r"\s+", " ", text)
            raw.append(text)
            try:
                expr = operon_string_to_sympy(text, names)
            except ValueError:
                continue
            if self.polish:
                expr = refit_constants(expr, X, y, ftol=SCORING_FTOL)  # the chosen one's again, to REFIT_FTOL
                expr = prune_small_terms(expr, X, y)
            loss = mse_of(expr, X, y)
            if np.isfinite(loss):
                cands.append(Candidate(expression_complexity(expr), loss, expr))
        self.raw_models_ = raw
        if not cands:
            raise EngineFitError("operon returned no equation that is finite on the training rows")
        # a constant model anchors the front (useful for knee selection)
        cands.append(Candidate(1, float(np.var(y)), sp.Float(float(np.mean(y)), 15)))
        return cands


__all__ = ["MIN_PACED_GENERATIONS", "OperonEngine", "operon_string_to_sympy"]
