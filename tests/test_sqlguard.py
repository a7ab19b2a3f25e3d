"""workbench.explore: the app's query box reads the store and nothing else."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from helpers_app import write_synthetic_store

from workbench.errors import StoreError
from workbench.explore import SqlRefused, check_query, connect_read_only, run_query


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_store(tmp_path_factory.mktemp("sqlguard") / "wb.duckdb", 50)


@pytest.fixture(scope="module")
def secret(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("files") / "secret.csv"
    path.write_text("a,b\n1,2\n")
    return path


REFUSED_STATEMENTS = {
    "INSERT INTO trials (study_name) VALUES ('x')": "INSERT statements are not allowed",
    "update trials set val_ppl = 1": "UPDATE statements are not allowed",
    "DELETE FROM trials": "DELETE statements are not allowed",
    "CREATE TABLE t AS SELECT 1": "CREATE statements are not allowed",
    "DROP TABLE trials": "DROP statements are not allowed",
    "ALTER TABLE trials ADD COLUMN x INT": "ALTER statements are not allowed",
    "COPY trials TO '/tmp/out.csv'": "COPY statements are not allowed",
    "ATTACH '/tmp/other.duckdb' AS other": "ATTACH statements are not allowed",
    "DETACH other": "DETACH statements are not allowed",
    "INSTALL httpfs": "INSTALL statements are not allowed",
    "LOAD httpfs": "LOAD statements are not allowed",
    "PRAGMA database_list": "PRAGMA statements are not allowed",
    "SET enable_external_access = true": "SET statements are not allowed",
    "EXPORT DATABASE '/tmp/dump'": "EXPORT statements are not allowed",
    "IMPORT DATABASE '/tmp/dump'": "IMPORT statements are not allowed",
    "CALL pragma_version()": "CALL statements are not allowed",
    "-- a comment first\nDELETE FROM trials": "DELETE statements are not allowed",
    "SELECT 1; DROP TABLE trials": "2 statements",
}

FILE_READERS = [
    "SELECT * FROM read_csv('{secret}')",
    "SELECT * FROM read_csv_auto('{secret}')",
    "select * from READ_PARQUET('{secret}')",
    "SELECT * FROM read_json_auto('{secret}')",
    "SELECT * FROM read_text('{secret}')",
    "SELECT * FROM read_blob('{secret}')",
    "SELECT * FROM parquet_scan('{secret}')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM sniff_csv('{secret}')",
    "SELECT * FROM main.\"read_csv\"('{secret}')",
    "SELECT * FROM query('SELECT 1')",
    "WITH x AS (SELECT * FROM read_csv('{secret}')) SELECT * FROM x",
]


@pytest.mark.parametrize("sql", sorted(REFUSED_STATEMENTS))
def test_writing_and_configuring_statements_are_refused(sql: str, store: Path) -> None:
    with pytest.raises(SqlRefused, match=REFUSED_STATEMENTS[sql]):
        run_query(store, sql)


@pytest.mark.parametrize("sql", FILE_READERS)
def test_file_reading_functions_are_refused(sql: str, secret: Path, store: Path) -> None:
    with pytest.raises(SqlRefused, match=r"reads files or runs other SQL"):
        run_query(store, sql.format(secret=secret))


@pytest.mark.parametrize("sql", ["SELECT * FROM '{secret}'", 'SELECT * FROM trials, "{secret}"'])
def test_replacement_scans_of_files_are_refused(sql: str, secret: Path, store: Path) -> None:
    with pytest.raises(SqlRefused, match="would read a file"):
        check_query(sql.format(secret=secret))


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT memory_kind, count(*) AS n FROM trials GROUP BY 1 ORDER BY 1",
        "WITH t AS (SELECT * FROM trial_overview) SELECT count(*) AS n FROM t",
        "FROM studies SELECT study_name",
        "SELECT 'read_csv(' AS looks_like_a_call, 'a', 'b'",
        "DESCRIBE trials",
        "EXPLAIN SELECT * FROM params",
        "SELECT name, value_json->>'$' AS v FROM params LIMIT 3;",
    ],
)
def test_reading_queries_run(sql: str, store: Path) -> None:
    result = run_query(store, sql)
    assert len(result.frame) > 0 and not result.truncated


def test_results_are_capped_and_errors_are_one_line(store: Path) -> None:
    result = run_query(store, "SELECT * FROM params", max_rows=100)
    assert len(result.frame) == 100 and result.truncated
    with pytest.raises(StoreError, match="query failed: Catalog Error"):
        run_query(store, "SELECT * FROM no_such_table")
    with pytest.raises(SqlRefused, match="does not parse"):
        run_query(store, "SELEC 1")
    with pytest.raises(SqlRefused, match="Empty query"):
        run_query(store, "  ;")


def test_long_queries_are_interrupted(store: Path) -> None:
    with pytest.raises(StoreError, match="stopped after"):
        run_query(store, "SELECT count(*) FROM range(100000000000) a", timeout_s=0.3)


def test_the_connection_itself_cannot_touch_files_or_be_reconfigured(store: Path, secret: Path) -> None:
    """Belt and braces: even SQL that slipped past the parse check cannot read, write or attach."""
    con = connect_read_only(store)
    try:
        for sql in (
            f"SELECT * FROM read_csv('{secret}')",
            f"SELECT * FROM '{secret}'",
            f"COPY (SELECT 1) TO '{secret.parent / 'out.csv'}'",
            f"ATTACH '{secret.parent / 'other.duckdb'}' AS other",
            "INSTALL httpfs",
        ):
            with pytest.raises(duckdb.PermissionException):
                con.execute(sql)
        with pytest.raises(duckdb.Error, match="locked"):
            con.execute("SET enable_external_access = true")
        with pytest.raises(duckdb.Error, match="read-only"):
            con.execute("DELETE FROM trials")
    finally:
        con.close()
    assert not (secret.parent / "out.csv").exists() and not (secret.parent / "other.duckdb").exists()
