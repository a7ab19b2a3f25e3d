"""Find the store's SQL files: numbered migrations, views (one per file) and named queries.

A wheel carries them as ``workbench/store/_sql/{migrations,views,queries}`` (hatch force-include in
``pyproject.toml``); an editable install or a source checkout reads the repository's
``store/{migrations,views,queries}``. The packaged copy wins when both exist.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Literal, NamedTuple

from workbench.errors import StoreError

SqlKind = Literal["migrations", "views", "queries"]

_ROOTS = (
    Path(__file__).resolve().parent / "_sql",  # installed wheel
    Path(__file__).resolve().parents[2] / "store",  # source checkout / editable install
)
_MIGRATION_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
# A statement ends with ';' at the end of a line; our own files keep to that, so a plain split is safe.
_STATEMENT_END = re.compile(r";[ \t]*(?:--[^\n]*)?$", re.MULTILINE)


class Migration(NamedTuple):
    version: int
    name: str
    sql: str


class View(NamedTuple):
    name: str
    sql: str


@functools.cache
def sql_dir(kind: SqlKind) -> Path:
    """The folder holding SQL files of ``kind``; raises :class:`StoreError` naming where it looked."""
    for root in _ROOTS:
        folder = root / kind
        if folder.is_dir():
            return folder
    tried = ", ".join(str(root / kind) for root in _ROOTS)
    raise StoreError(f"SQL folder '{kind}' not found (looked in {tried}); reinstall the package")


@functools.cache
def query(name: str) -> str:
    """The text of ``store/queries/<name>.sql``; an unknown name lists the valid ones."""
    path = sql_dir("queries") / f"{name}.sql"
    if not path.is_file():
        valid = sorted(p.stem for p in sql_dir("queries").glob("*.sql"))
        raise StoreError(f"unknown query '{name}'; valid: {', '.join(valid)}")
    return path.read_text(encoding="utf-8")


def statements(sql: str) -> list[str]:
    """Split a file of several statements, dropping ``--`` comments (DuckDB binds parameters only in
    single statements). Our own files keep ``;`` and ``--`` out of string literals."""
    parts = (_strip_comments(part).strip() for part in _STATEMENT_END.split(sql))
    return [part for part in parts if part]


def _strip_comments(sql: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in sql.splitlines())


@functools.cache
def migrations() -> tuple[Migration, ...]:
    """All migrations, ordered by version; a misnamed file or a duplicate version is an error."""
    found: dict[int, Migration] = {}
    for path in sorted(sql_dir("migrations").glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if match is None:
            raise StoreError(f"{path}: migration files are named NNN_snake_case.sql")
        version = int(match.group(1))
        if version in found:
            raise StoreError(f"{path}: migration version {version:03d} is used twice")
        found[version] = Migration(version, match.group(2), path.read_text(encoding="utf-8"))
    return tuple(found[v] for v in sorted(found))


@functools.cache
def views() -> tuple[View, ...]:
    """All view definitions (``CREATE OR REPLACE VIEW <file stem> ...``), ordered by file name."""
    return tuple(
        View(path.stem, path.read_text(encoding="utf-8")) for path in sorted(sql_dir("views").glob("*.sql"))
    )
