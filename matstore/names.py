"""Text that becomes a stored name or key: no control characters, no bidirectional overrides.

Material formulas and prototypes, method names, kinds and potentials, configuration keys,
mapping keys and values, structure-file metadata and vocabulary units and symbols are stored
and later printed to whoever reads the store (``matstore models show``, ``predict``, the
dashboard).  A name holding a terminal escape sequence (ESC ``]0;…`` sets the terminal's
title, ESC ``[8m`` hides the text after it) or a bidirectional override (U+202E shows
``abc`` as ``cba``: the Trojan Source attack, CVE-2021-42574) would act on that reader's
terminal, or disguise one name as another.  So ingest refuses them where they enter:

- names and keys (:data:`NAME`): every character of Unicode category Cc (C0 U+0000–U+001F,
  DEL U+007F, C1 U+0080–U+009F) and the bidirectional embeddings, overrides and isolates
  U+202A–U+202E, U+2066–U+2069;
- free-text descriptions and citations (:data:`TEXT`): the same, except tab (U+0009) and
  line feed (U+000A), which a multi-line YAML description holds (YAML turns CR LF into LF).

Any other character is allowed: ``DFT–PBE (Müller)``, ``L1₂``, ``γ-TiAl`` are names. Ingest
(:mod:`matstore.ingest`) and the writers of :mod:`matstore.crud` both use it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from typing import Any, Literal

#: Which characters a text may hold: ``name`` (names, keys, units) or ``text`` (descriptions).
Policy = Literal["name", "text"]
NAME: Policy = "name"
TEXT: Policy = "text"

_BIDI = "\u202a-\u202e\u2066-\u2069"
_UNSAFE: dict[str, re.Pattern[str]] = {
    NAME: re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI}]"),
    TEXT: re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}]"),
}
#: Abbreviations of the C0 controls, DEL and the C1 controls (ISO 6429), by code point.
_CONTROL_NAMES = (
    "NUL SOH STX ETX EOT ENQ ACK BEL BS HT LF VT FF CR SO SI DLE DC1 DC2 DC3 DC4 NAK SYN ETB CAN EM SUB ESC FS GS RS US".split()
    + ["DEL"]
    + "PAD HOP BPH NBH IND NEL SSA ESA HTS HTJ VTS PLD PLU RI SS2 SS3 DCS PU1 PU2 STS CCH MW SPA EPA SOS SGCI SCI CSI "
      "ST OSC PM APC".split()
)
#: At most this many characters of the offending text are shown in a message.
SHOWN_CHARS = 60


def _control_name(code: int) -> str:
    return _CONTROL_NAMES[code] if code < 0x20 else _CONTROL_NAMES[code - 0x7F + 0x20]


def describe_character(char: str) -> str:
    """``'the control character U+001B (ESC)'`` or ``'the bidirectional formatting character U+202E (RIGHT-TO-LEFT OVERRIDE)'``.

    ``char`` is one character that :func:`unsafe_reason` refuses.
    """
    code = ord(char)
    if code < 0x20 or 0x7F <= code <= 0x9F:
        return f"the control character U+{code:04X} ({_control_name(code)})"
    return f"the bidirectional formatting character U+{code:04X} ({unicodedata.name(char)})"


def escaped(text: str) -> str:
    """``text`` as Python's ``repr`` quotes it (control and format characters as ``\\x1b``, ``\\u202e``;
    backslashes doubled), cut at :data:`SHOWN_CHARS` characters.

    Printable characters, non-ASCII ones included, are kept as they are (``'Ni₃Al'``), so the
    message shows the name as its author typed it, without acting on the terminal.
    """
    return repr(text[:SHOWN_CHARS]) + ("…" if len(text) > SHOWN_CHARS else "")


def unsafe_reason(text: str, what: str, policy: Policy = NAME) -> str | None:
    """Why ``text`` may not be stored, in one line, or ``None`` when it may.

    Parameters
    ----------
    text
        The name, key or description.
    what
        What it is, for the message (``"the method name"``, ``"method.name"``).
    policy
        :data:`NAME` (no control character at all) or :data:`TEXT` (tab and line feed allowed).

    Returns
    -------
    str or None
        E.g. ``"the method name 'PBE\\x1b[8m' contains the control character U+001B (ESC)"``.
    """
    found = _UNSAFE[policy].search(text)
    if found is None:
        return None
    return f"{what} {escaped(text)} contains {describe_character(found[0])}"


class UnsafeTextError(ValueError):
    """A name, key or description holds a control character or a bidirectional override."""


def check_text(text: str | None, what: str, policy: Policy = NAME) -> None:
    """Raise :class:`UnsafeTextError` (message from :func:`unsafe_reason`) if ``text`` may not be stored; ``None`` passes."""
    if text is not None:
        reason = unsafe_reason(text, what, policy)
        if reason is not None:
            raise UnsafeTextError(reason)


def strings_in(node: Any, loc: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str, bool]]:
    """Every string of a parsed YAML/JSON tree: ``(key path, text, is_a_key)``, keys before their values.

    Lists contribute their indices (as strings) to the path; non-string leaves are skipped.
    """
    if isinstance(node, str):
        yield loc, node, False
    elif isinstance(node, dict):
        for key, value in node.items():
            if isinstance(key, str):
                yield (*loc, key), key, True
            yield from strings_in(value, (*loc, str(key)))
    elif isinstance(node, (list, tuple)):
        for k, value in enumerate(node):
            yield from strings_in(value, (*loc, str(k)))


__all__ = ["NAME", "SHOWN_CHARS", "TEXT", "Policy", "UnsafeTextError", "check_text", "describe_character", "escaped",
           "strings_in", "unsafe_reason"]
