"""Selections kept in the page URL (``st.query_params``), so that a view survives a reload
and can be shared as a link; and links from a value to its provenance.

Each page reads its selections with :func:`get_int`, :func:`get_ints` or :func:`get_text`
to choose the widgets' defaults and writes them back with :func:`keep`.  Values that are
not valid (an id no longer in the store, text where a number is expected) are ignored, never
an error: a stale link opens the page with its defaults.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import streamlit as st

#: URL path of the provenance page (``pages/provenance.py``).
PROVENANCE_PAGE = "provenance"


def get_text(name: str, default: str = "") -> str:
    """The query parameter ``name`` as text (``default`` when absent)."""
    value = st.query_params.get(name)
    return str(value) if value is not None else default


def get_int(name: str, allowed: Iterable[int] | None = None) -> int | None:
    """The query parameter ``name`` as an integer, ``None`` if absent, not a number or not allowed."""
    try:
        value = int(st.query_params.get(name, ""))
    except ValueError:
        return None
    return value if allowed is None or value in set(allowed) else None


def get_ints(name: str, allowed: Iterable[int] | None = None) -> list[int]:
    """The query parameter ``name`` as a comma-separated list of integers (invalid ones dropped)."""
    keep_only = set(allowed) if allowed is not None else None
    out = []
    for part in get_text(name).split(","):
        try:
            value = int(part)
        except ValueError:
            continue
        if keep_only is None or value in keep_only:
            out.append(value)
    return out


def keep(name: str, value: Any) -> None:
    """Write a selection to the URL (``None``, ``""`` or an empty list removes it)."""
    if isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value)
    if value is None or value == "":
        if name in st.query_params:
            del st.query_params[name]
        return
    if st.query_params.get(name) != str(value):
        st.query_params[name] = str(value)


def index_of(options: Sequence[Any], value: Any, default: int = 0) -> int:
    """Position of ``value`` in ``options`` (``default`` when absent), for a widget's ``index``."""
    try:
        return list(options).index(value)
    except ValueError:
        return default


def choose(label: str, options: dict[str, str], *, param: str, default: str | None = None) -> str:
    """A selectbox over ``options`` (key → label) whose choice is kept in the URL as ``param``.

    Returns the chosen key; the URL's value wins over ``default`` (else the first option).
    """
    keys = list(options)
    fallback = index_of(keys, default) if default is not None else 0
    chosen = st.selectbox(label, keys, format_func=options.get, index=index_of(keys, get_text(param), fallback))
    keep(param, chosen)
    return chosen


def material_method_key(material_id: int, method_id: int) -> str:
    """URL form of a material × method choice, ``"12:3"``."""
    return f"{int(material_id)}:{int(method_id)}"


def provenance_url(scope: str, value_id: int) -> str:
    """Relative link to the provenance page of one stored value (``bulk`` or ``surface``)."""
    return f"{PROVENANCE_PAGE}?value={scope}:{int(value_id)}"
