"""Secrets: no password, or a piece of one, in any output, log line or ``job_run`` row.

Passwords with ``@ : / %`` and quotes used to leak through URL parse errors (the part after an
unencoded ``@`` became the "host" in ``failed to resolve host 'ss@localhost'``) and a failing
``grant-reader`` printed its SQL with the password literal.  One masking function
(:func:`matstore.masking.mask_secrets`) now filters every message and log line.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from matstore.config import normalise_database_url
from matstore.masking import MASK, MaskingFilter, mask_secrets, register_secret

BAD = Path(__file__).parent / "data" / "bad"

#: Passwords of every awkward shape: each holds at least one distinctive 4+ character piece.
PASSWORDS = (
    "Zq7@hunter@Xk9",
    "Zq7:hunter:Xk9",
    "Zq7/hunter/Xk9",
    "Zq7%hunter%zzXk9",
    "Zq7'hunter\"Xk9",
    "Zq7@hunter:x/y%'Xk9",
)


def _pieces(password: str) -> list[str]:
    return [password, *(p for p in re.split(r"[@:/%'\"]", password) if len(p) >= 4)]


def _raw_url(password: str, *, user: str = "postgres", host: str = "127.0.0.1", port: str = "5432",
             database: str = "postgres") -> str:
    # Deliberately NOT encoded: the user pasted it like this.
    return f"postgresql://{user}:{password}@{host}:{port}/{database}"


def _run(args: list[str], url: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MATSTORE_DATABASE_URL": url, "COLUMNS": "300"}
    env.pop("MATSTORE_READER_URL", None)
    return subprocess.run([sys.executable, "-m", "matstore", "-v", *args], capture_output=True, text=True,
                          env=env, timeout=120, check=False)


@pytest.mark.parametrize("password", PASSWORDS)
def test_mask_secrets_on_unparseable_urls_and_sql(password):
    register_secret(password)
    texts = (
        _raw_url(password),
        f"could not connect to {_raw_url(password, host='db.invalid')}: failed",
        f"(psycopg.errors.X) boom [SQL: ALTER ROLE \"r\" PASSWORD '{password.replace(chr(39), chr(39) * 2)}']",
        f"host=db user=u password={password} dbname=x",
    )
    for t in texts:
        masked = mask_secrets(t)
        assert MASK in masked, masked
        for piece in _pieces(password):
            assert piece not in masked, (t, masked)


def test_normalised_url_keeps_the_password_whole():
    for password in PASSWORDS:
        url = make_url(normalise_database_url(_raw_url(password)))
        assert (url.password, url.host, url.port, url.database) == (password, "127.0.0.1", 5432, "postgres")


def test_log_filter_masks_messages_and_tracebacks():
    register_secret("Vq8-logged-secret")
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "url %s", ("postgresql://u:Vq8-logged-secret@h/d",), None)
    try:
        raise RuntimeError("failed with Vq8-logged-secret")
    except RuntimeError:
        record.exc_info = sys.exc_info()
    MaskingFilter().filter(record)
    assert "Vq8-logged-secret" not in record.getMessage() and "Vq8-logged-secret" not in record.exc_text


@pytest.mark.parametrize("password", [PASSWORDS[0], PASSWORDS[-1]])  # a subprocess per shape: keep it short
def test_failing_connections_print_no_password(password, database_url):
    shapes = (
        _raw_url(password, user="no_such_role_x"),              # authentication / unknown role
        _raw_url(password, host="no-such-host.invalid"),        # name resolution
        _raw_url(password, port="notaport"),                    # port parse
        _raw_url(password, database="matstore_no_such_db"),     # unknown database
    )
    for url in shapes:
        proc = _run(["db", "info"], url)
        assert proc.returncode == 1, (url, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr
        for piece in _pieces(password):
            assert piece not in proc.stdout + proc.stderr, (url, piece, proc.stdout, proc.stderr)


def test_awkward_password_in_a_working_url_never_stored_or_printed(engine, database_url):
    """Trust auth ignores the password, so the commands run; it must appear nowhere."""
    password = PASSWORDS[-1]
    db = make_url(database_url)
    url = _raw_url(password, host=db.host, port=str(db.port), database=db.database)
    runs = ((["db", "info"], 0), (["sql", "SELECT 1"], 0),
            (["ingest", "structures", str(BAD / "truncated.extxyz")], 1),
            (["db", "grant-reader", "postgres"], 1))
    env_password = {"MATSTORE_READER_PASSWORD": "Rd9-reader-secret-Rd9"}
    for args, code in runs:
        os.environ.update(env_password)
        try:
            proc = _run(args, url)
        finally:
            os.environ.pop("MATSTORE_READER_PASSWORD")
        assert proc.returncode == code, (args, proc.stdout, proc.stderr)
        for piece in (*_pieces(password), "Rd9-reader-secret-Rd9"):
            assert piece not in proc.stdout + proc.stderr, (args, piece)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT j::text FROM job_run j")).scalars().all()
    assert rows, "the failed ingest records a job_run row"
    assert not any(piece in row for row in rows for piece in _pieces(password))
