"""PySR (SymbolicRegression.jl) as a matstore engine — optional, needs Julia.

PySR runs its search in Julia through ``juliacall``.  Importing ``pysr`` without a usable
Julia makes ``juliapkg`` try to *download* Julia and packages, which hangs or fails on
machines without network.  This module therefore checks for a Julia **before** importing
``pysr`` and raises :class:`~matstore.models.engines.base.EngineSetupError` at once when
there is none.

Environment variables (read by ``juliapkg``/``juliacall``, checked here):

``PYTHON_JULIAPKG_EXE``
    Path of the ``julia`` executable to use.  When set it must exist.
``PYTHON_JULIAPKG_OFFLINE``
    ``yes`` forbids juliapkg from downloading anything; then a Julia *and* the Julia
    packages (SymbolicRegression.jl) must already be installed in the depot.
``JULIA_DEPOT_PATH``
    Julia's package depot(s) (``:``-separated); where SymbolicRegression.jl is installed.
``PYTHON_JULIAPKG_PROJECT``
    Julia project used by juliapkg (default: a ``julia_env`` folder in the Python prefix).

A Julia is considered available when ``PYTHON_JULIAPKG_EXE`` names an existing file, when
``julia`` is on ``PATH`` (:func:`shutil.which`), or when juliapkg has already installed one
under ``<sys.prefix>/julia_env/pyjuliapkg/install/bin/julia``.

References
----------
.. [1] M. Cranmer, "Interpretable Machine Learning for Science with PySR and
   SymbolicRegression.jl", arXiv:2305.01582 (2023).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import sympy as sp

from matstore.models.engines.base import (
    Candidate,
    EngineFitError,
    EngineSetupError,
    SymbolicEngine,
    expression_complexity,
    mse_of,
)

_ENV_HELP = (
    "set PYTHON_JULIAPKG_EXE to a julia executable or put `julia` on PATH; with "
    "PYTHON_JULIAPKG_OFFLINE=yes the Julia packages must already be in JULIA_DEPOT_PATH"
)


def find_julia() -> str | None:
    """Path of a usable Julia executable, or ``None`` (never downloads, never imports pysr)."""
    exe = os.environ.get("PYTHON_JULIAPKG_EXE")
    if exe:
        path = shutil.which(exe) or (exe if Path(exe).is_file() else None)
        return path
    path = shutil.which("julia")
    if path:
        return path
    bundled = Path(sys.prefix) / "julia_env" / "pyjuliapkg" / "install" / "bin" / "julia"
    if bundled.is_file():
        return str(bundled)
    return None


def check_pysr_available() -> str:
    """Verify that PySR can run here, quickly.

    Returns
    -------
    str
        Path of the Julia executable.

    Raises
    ------
    EngineSetupError
        When ``pysr`` is not installed, no Julia is found, or ``PYTHON_JULIAPKG_EXE`` names a
        missing file; the message names the environment variables to set.
    """
    if importlib.util.find_spec("pysr") is None:
        raise EngineSetupError("PySR engine unavailable: the `pysr` package is not installed (pip install 'matstore[pysr]'); " + _ENV_HELP)
    exe = os.environ.get("PYTHON_JULIAPKG_EXE")
    julia = find_julia()
    if julia is None:
        if exe:
            raise EngineSetupError(f"PySR engine unavailable: PYTHON_JULIAPKG_EXE={exe!r} does not exist; " + _ENV_HELP)
        offline = os.environ.get("PYTHON_JULIAPKG_OFFLINE", "").lower() in ("1", "yes", "true")
        why = "offline mode (PYTHON_JULIAPKG_OFFLINE) forbids downloading one" if offline else "refusing to let juliapkg download one"
        raise EngineSetupError(
            f"PySR engine unavailable: no Julia executable found ({why}; JULIA_DEPOT_PATH="
            f"{os.environ.get('JULIA_DEPOT_PATH', '<unset>')}); " + _ENV_HELP
        )
    return julia


class PySREngine(SymbolicEngine):
    """PySR regularised-evolution symbolic regression (requires ``pysr`` and Julia).

    Parameters
    ----------
    niterations : int, default 40
    binary_operators : tuple of str, default ("+", "-", "*", "/")
    unary_operators : tuple of str, default ()
    maxsize : int, default 25
    populations : int, default 8
    time_limit : float, default 60
        Seconds (``timeout_in_seconds``).
    random_state : int, default 0
    deterministic : bool, default True
        Serial, seeded search (reproducible, slower).

    Attributes
    ----------
    pareto_front_ : list of Candidate

    Raises
    ------
    EngineSetupError
        From :meth:`fit` when PySR or Julia is unavailable (see module docstring).
    """

    name: ClassVar[str] = "pysr"
    default_parameters: ClassVar[dict[str, Any]] = {
        "niterations": 40,
        "binary_operators": ("+", "-", "*", "/"),
        "unary_operators": (),
        "maxsize": 25,
        "populations": 8,
        "time_limit": 60.0,
        "random_state": 0,
        "deterministic": True,
    }

    def __init__(
        self,
        niterations: int = 40,
        binary_operators: tuple[str, ...] = ("+", "-", "*", "/"),
        unary_operators: tuple[str, ...] = (),
        maxsize: int = 25,
        populations: int = 8,
        time_limit: float = 60.0,
        random_state: int | None = 0,
        deterministic: bool = True,
    ) -> None:
        self.niterations = niterations
        self.binary_operators = binary_operators
        self.unary_operators = unary_operators
        self.maxsize = maxsize
        self.populations = populations
        self.time_limit = time_limit
        self.random_state = random_state
        self.deterministic = deterministic

    def _fit_front(self, X: pd.DataFrame, y: np.ndarray) -> list[Candidate]:  # pragma: no cover - needs Julia
        check_pysr_available()
        try:
            from pysr import PySRRegressor
        except Exception as exc:  # noqa: BLE001 - juliacall raises many types at import
            raise EngineSetupError(f"PySR engine unavailable: importing pysr failed ({exc}); " + _ENV_HELP) from exc
        names = list(X.columns)
        placeholders = [f"x{i}" for i in range(len(names))]
        kwargs: dict[str, Any] = {
            "niterations": int(self.niterations),
            "binary_operators": list(self.binary_operators),
            "unary_operators": list(self.unary_operators),
            "maxsize": int(self.maxsize),
            "populations": int(self.populations),
            "timeout_in_seconds": float(self.time_limit),
            "random_state": 0 if self.random_state is None else int(self.random_state),
            "progress": False,
            "verbosity": 0,
            "temp_equation_file": True,
        }
        if self.deterministic:
            kwargs.update(deterministic=True, parallelism="serial")
        try:
            reg = PySRRegressor(**kwargs)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                reg.fit(X.to_numpy(dtype=float), y, variable_names=placeholders)
            table = reg.equations_
        except EngineSetupError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise EngineFitError(f"PySR failed while fitting: {type(exc).__name__}: {exc}") from exc
        mapping = {sp.Symbol(p): sp.Symbol(n) for p, n in zip(placeholders, names, strict=True)}
        cands = []
        for i in range(len(table)):
            try:
                expr = sp.sympify(reg.sympy(i)).xreplace(mapping)
            except Exception:  # noqa: BLE001
                continue
            loss = mse_of(expr, X, y)
            if np.isfinite(loss):
                cands.append(Candidate(expression_complexity(expr), loss, expr))
        if not cands:
            raise EngineFitError("PySR returned no equation that is finite on the training rows")
        return cands


__all__ = ["PySREngine", "check_pysr_available", "find_julia"]
