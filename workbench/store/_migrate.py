"""Apply numbered migrations (recorded in ``schema_migrations``) and (re)create the views."""

from __future__ import annotations

import datetime as dt

import duckdb

from workbench.errors import StoreError
from workbench.store import sqlfiles


def latest_version() -> int:
    """The schema version this code expects: the highest migration number."""
    found = sqlfiles.migrations()
    return found[-1].version if found else 0


def check_is_store(con: duckdb.DuckDBPyConnection, path: object) -> None:
    """Raise :class:`StoreError` when the file holds tables but no ``schema_migrations``: another
    program's DuckDB file, which migrating would write into. An empty file is a new store."""
    tables = [str(row[0]) for row in con.execute(sqlfiles.query("user_tables")).fetchall()]
    if tables and "schema_migrations" not in tables:
        shown = ", ".join(tables[:-1]) + f" and {tables[-1]}" if len(tables) > 1 else tables[0]
        raise StoreError(
            f"{path} is not a workbench store (it has tables {shown} and no schema_migrations); "
            "give another --store"
        )


def applied_versions(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Versions recorded in ``schema_migrations``; raises :class:`StoreError` if it is not a store."""
    try:
        rows = con.execute(sqlfiles.query("schema_migrations")).fetchall()
    except duckdb.CatalogException:
        raise StoreError(
            "the file is not a workbench store (no schema_migrations table); open it once in write mode"
        ) from None
    return [int(row[0]) for row in rows]


def migrate(con: duckdb.DuckDBPyConnection, path: object = "the file") -> list[int]:
    """Apply the pending migrations in order, each in its own transaction; returns their versions.

    Refuses (:func:`check_is_store`), before writing anything, a file that holds other tables.
    """
    check_is_store(con, path)
    con.execute(sqlfiles.query("schema_migrations_init"))
    done = set(applied_versions(con))
    applied: list[int] = []
    for migration in sqlfiles.migrations():
        if migration.version in done:
            continue
        con.begin()
        try:
            con.execute(migration.sql)
            con.execute(
                sqlfiles.query("record_migration"),
                {"version": migration.version, "name": migration.name, "applied_at": dt.datetime.now()},
            )
            con.commit()
        except duckdb.Error as exc:
            con.rollback()
            raise StoreError(f"migration {migration.version:03d}_{migration.name} failed: {exc}") from exc
        applied.append(migration.version)
    return applied


def create_views(con: duckdb.DuckDBPyConnection) -> None:
    """(Re)create every view. A view may read another: those whose inputs are missing wait a round."""
    pending = list(sqlfiles.views())
    while pending:
        failed: list[tuple[sqlfiles.View, duckdb.Error]] = []
        for view in pending:
            try:
                con.execute(view.sql)
            except duckdb.CatalogException as exc:
                failed.append((view, exc))
        if len(failed) == len(pending):
            first, error = failed[0]
            raise StoreError(f"view {first.name}: {error}")
        pending = [view for view, _ in failed]
