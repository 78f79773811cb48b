"""One masking function for every message, log line and stored error: :func:`mask_secrets`.

It removes, from any text:

- the password of a URL, ``scheme://user:SECRET@host``, including passwords that contain
  ``@ : / %`` or quotes (everything between ``user:`` and the *last* ``@`` of the URL);
- the literal of ``PASSWORD '...'`` in SQL text (``CREATE/ALTER ROLE``), as SQLAlchemy
  echoes it in ``[SQL: ...]``;
- ``password=...`` in libpq connection strings;
- every secret registered with :func:`register_secret` (the password of the configured
  database URLs, generated reader passwords), verbatim and in its percent-encoded form, plus
  the pieces a URL parser may cut it into when it is split at ``@``, ``:`` or ``/`` (so that
  an error such as ``failed to resolve host 'ss@localhost'`` cannot leak ``ss``).

:func:`install_log_filter` applies it to every record of the logging handlers in place.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import quote, unquote

MASK = "***"

#: Shortest piece of a registered secret that is masked on its own (shorter ones would mask
#: ordinary words; the whole secret is always masked).
MIN_PIECE = 4

_URL = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s'\"]*):(?P<rest>\S+)", re.I)
_SQL_PASSWORD = re.compile(r"(?P<kw>PASSWORD\s+E?)'(?:[^']|'')*'", re.I)
_SQL_DOLLAR_PASSWORD = re.compile(r"(?P<kw>PASSWORD\s+)\$(?P<tag>\w*)\$.*?\$(?P=tag)\$", re.I | re.S)
_CONNINFO_PASSWORD = re.compile(r"(?P<kw>\bpassword\s*=\s*)(?:'(?:[^'\\]|\\.)*'|\S+)", re.I)

_secrets: set[str] = set()


def register_secret(secret: str | None) -> None:
    """Remember ``secret`` so that :func:`mask_secrets` removes it from every later text.

    Parameters
    ----------
    secret:
        A password or token; ``None`` and the empty string are ignored.
    """
    if not secret:
        return
    variants = {secret, quote(secret, safe=""), unquote(secret)}
    for variant in list(variants):
        variants.update(p for p in re.split(r"[@:/]", variant) if len(p) >= MIN_PIECE)
    _secrets.update(v for v in variants if v)


def mask_secrets(text: str) -> str:
    """Return ``text`` with every password and registered secret replaced by ``***``.

    Parameters
    ----------
    text:
        Any message: an exception's text, a log line, SQL, a URL (parseable or not).

    Returns
    -------
    str
        The text with URL passwords, SQL ``PASSWORD`` literals, conninfo ``password=`` values
        and registered secrets masked.
    """
    text = str(text)
    text = _URL.sub(_mask_url, text)
    text = _SQL_PASSWORD.sub(lambda m: f"{m['kw']}'{MASK}'", text)
    text = _SQL_DOLLAR_PASSWORD.sub(lambda m: f"{m['kw']}'{MASK}'", text)
    text = _CONNINFO_PASSWORD.sub(lambda m: f"{m['kw']}{MASK}", text)
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def _mask_url(match: re.Match[str]) -> str:
    rest = match["rest"]
    at = rest.rfind("@")
    if at < 0:
        return match[0]  # "scheme://host:port/...": no user info
    return f"{match['head']}:{MASK}{rest[at:]}"


class MaskingFilter(logging.Filter):
    """A logging filter that masks secrets in each record's message (and drops its args)."""

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: D102 - logging API
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is still logged, masked
            message = str(record.msg)
        record.msg, record.args = mask_secrets(message), ()
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = mask_secrets(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def install_log_filter(logger: logging.Logger | None = None) -> None:
    """Add :class:`MaskingFilter` to every handler of ``logger`` (default: the root logger)."""
    logger = logger or logging.getLogger()
    for handler in logger.handlers:
        if not any(isinstance(f, MaskingFilter) for f in handler.filters):
            handler.addFilter(MaskingFilter())
