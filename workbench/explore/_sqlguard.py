"""Read-only SQL for the app's query box: check a statement, then run it where it cannot write.

Belt and braces. :func:`check_query` parses the text with DuckDB's own parser and refuses
anything but one SELECT-like statement (SELECT, WITH ... SELECT, FROM-first, VALUES, DESCRIBE,
SHOW, SUMMARIZE, EXPLAIN), any call of a function that reads files or runs SQL text
(``read_csv``, ``read_parquet``, ``glob``, ``query``, ...) and any FROM of a quoted file name.
:func:`run_query` then executes on a fresh read-only connection with
``enable_external_access=false`` (no file, network or extension access) and
``lock_configuration=true`` (the query cannot turn that back on), so even a function the parse
check missed cannot read or write a file; a timer interrupts long queries, which would
otherwise hold the store's read lock and keep a running study from writing.
"""

from __future__ import annotations

import random
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from workbench.errors import StoreError, WorkbenchError
from workbench.store import is_lock_conflict

MAX_ROWS = 10_000
TIMEOUT_S = 10.0
_LOCK_TIMEOUT_S = 15.0

_ALLOWED = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}
# Exact names, and name patterns, of functions that read files, scan other databases or run SQL text.
_FILE_FUNCTIONS = {
    "glob",
    "query",
    "query_table",
    "getenv",
    "checkpoint",
    "force_checkpoint",
    "load_extension",
    "icu_collate",
}
_FILE_PATTERNS = re.compile(
    r"^(read_\w*|parquet_\w*|sniff_\w*|\w+_scan|\w*_secrets?|iceberg_\w+|delta_\w+|sqlite_\w+|"
    r"postgres_\w+|mysql_\w+|st_read\w*|excel_\w+|http_\w+|ducklake_\w+)$"
)
_STATEMENT_WORD = re.compile(r"^\s*(?:--[^\n]*\n\s*|/\*.*?\*/\s*)*([A-Za-z_]+)", re.DOTALL)
_CLAUSES = {
    "select",
    "from",
    "join",
    "on",
    "using",
    "where",
    "group",
    "having",
    "qualify",
    "window",
    "order",
    "limit",
    "union",
    "except",
    "intersect",
}

CONFIG = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "lock_configuration": True,
}


class SqlRefused(WorkbenchError):
    """A statement the read-only query box does not run; the message says why and what is allowed."""


@dataclass(frozen=True)
class QueryResult:
    """Rows of a query (at most ``MAX_ROWS``; ``truncated`` when there were more)."""

    frame: pd.DataFrame
    truncated: bool
    seconds: float


ALLOWED_HELP = (
    "The SQL page is read-only: it runs one SELECT (or WITH … SELECT, FROM …, VALUES, DESCRIBE, SHOW, "
    "SUMMARIZE, EXPLAIN) over the store's tables and views."
)


def check_query(sql: str) -> str:
    """The single statement in ``sql`` if the query box may run it; raises :class:`SqlRefused` otherwise."""
    text = sql.strip().rstrip(";").strip()
    if not text:
        raise SqlRefused("Empty query. " + ALLOWED_HELP)
    try:
        statements = duckdb.extract_statements(text)
    except duckdb.Error as exc:
        raise SqlRefused(f"The query does not parse: {_first_line(exc)}") from None
    if len(statements) != 1:
        raise SqlRefused(
            f"Refused: {len(statements)} statements. Run one statement at a time. {ALLOWED_HELP}"
        )
    statement = statements[0]
    if statement.type not in _ALLOWED:
        word = _leading_word(statement.query) or statement.type.name
        raise SqlRefused(f"Refused: {word} statements are not allowed. {ALLOWED_HELP}")
    _check_tokens(text)
    return text


def _check_tokens(text: str) -> None:
    """Refuse calls of file-reading functions and FROM 'file.csv' (DuckDB's replacement scans)."""
    tokens = duckdb.tokenize(text)
    spans = []
    for i, (start, kind) in enumerate(tokens):
        end = tokens[i + 1][0] if i + 1 < len(tokens) else len(text)
        if kind != duckdb.token_type.comment:
            spans.append((text[start:end].strip(), kind))
    clause = ""  # the last clause keyword seen: a table list follows FROM and JOIN
    for i, (word, kind) in enumerate(spans):
        previous = spans[i - 1][0].lower() if i else ""
        following = spans[i + 1][0] if i + 1 < len(spans) else ""
        if kind in (duckdb.token_type.identifier, duckdb.token_type.keyword) and following.startswith("("):
            name = word.strip('"').lower()
            if name in _FILE_FUNCTIONS or _FILE_PATTERNS.match(name):
                raise SqlRefused(
                    f"Refused: {name}() reads files or runs other SQL, which the SQL page does not allow. "
                    "Query the store's tables (trials, params, curves, routing, studies, provenance, ...) instead."
                )
        in_table_list = previous in ("from", "join") or (previous == "," and clause in ("from", "join"))
        names_file = kind == duckdb.token_type.string_const or (
            kind == duckdb.token_type.identifier and word.startswith('"') and re.search(r"[./\\:]", word)
        )
        if in_table_list and names_file:
            raise SqlRefused(
                f"Refused: FROM {word} would read a file, which the SQL page does not allow. "
                "Query the store's tables instead."
            )
        if kind == duckdb.token_type.keyword and word.lower() in _CLAUSES:
            clause = word.lower()


def _leading_word(sql: str) -> str:
    match = _STATEMENT_WORD.match(sql)
    return match.group(1).upper() if match else ""


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def connect_read_only(path: str | Path, timeout_s: float = _LOCK_TIMEOUT_S) -> duckdb.DuckDBPyConnection:
    """A read-only connection without file, network or extension access, waiting out writers' locks."""
    deadline = time.monotonic() + timeout_s
    delay = 0.01
    while True:
        try:
            return duckdb.connect(str(path), read_only=True, config=dict(CONFIG))
        except duckdb.Error as exc:
            if not is_lock_conflict(exc) or time.monotonic() > deadline:
                raise StoreError(f"cannot open store {path}: {_first_line(exc)}") from exc
            time.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, 0.1)


def run_query(
    path: str | Path, sql: str, *, max_rows: int = MAX_ROWS, timeout_s: float = TIMEOUT_S
) -> QueryResult:
    """Check ``sql`` and run it on the store at ``path``; at most ``max_rows`` rows come back.

    Raises :class:`SqlRefused` for a refused statement and :class:`StoreError` when the query fails
    (the message is DuckDB's first line) or runs longer than ``timeout_s``.
    """
    statement = check_query(sql)
    start = time.perf_counter()
    con = connect_read_only(path)
    timer = threading.Timer(timeout_s, con.interrupt)
    timer.start()
    try:
        cursor = con.execute(statement)
        columns = [d[0] for d in cursor.description or []]
        rows = cursor.fetchmany(max_rows + 1)
    except duckdb.InterruptException:
        raise StoreError(f"query stopped after {timeout_s:g} s; add a LIMIT or a tighter WHERE") from None
    except duckdb.Error as exc:
        raise StoreError(f"query failed: {_first_line(exc)}") from None
    finally:
        timer.cancel()
        con.close()
    frame = pd.DataFrame.from_records(rows[:max_rows], columns=columns)
    return QueryResult(frame, len(rows) > max_rows, time.perf_counter() - start)
