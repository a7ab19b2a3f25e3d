"""The command line: one-line errors that leave the store unchanged, and the main commands."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.cli._launch import streamlit_command
from workbench.errors import WorkbenchError
from workbench.explore import STORE_ENV


def cli(
    *args: str, cwd: Path | None = None, env: dict | None = None, input: str | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "workbench", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        input=input,
        timeout=300,
    )


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "absent"


@pytest.fixture(scope="module")
def populated_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import SENTENCES, TINY_SPACE

    root = tmp_path_factory.mktemp("cli")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES[i % len(SENTENCES)] for i in range(600)))
    space = root / "space.py"
    space.write_text(TINY_SPACE.format(corpus=str(corpus), constraints=""))
    store = root / "wb.duckdb"
    result = cli(
        "run",
        str(space),
        "--trials",
        "2",
        "--device",
        "cpu",
        "--store",
        str(store),
        "--no-progress",
        env={"WORKBENCH_CACHE": str(root / "cache")},
    )
    assert result.returncode == 0, result.stderr
    assert "Pareto front" in result.stdout
    return store


BAD_SPACES = {
    "empty_choice": (
        "from workbench.space import Space, Categorical\n"
        "space = Space('x', {'memory.kind': Categorical([])})\n",
        "Categorical has no choices",
    ),
    "low_gt_high": (
        "from workbench.space import Space, Int\nspace = Space('x', {'model.d_model': Int(64, 32)})\n",
        "low (64) > high (32)",
    ),
    "unknown_layer": (
        "from workbench.space import Space\nspace = Space('x', {'memory.kind': 'mixture-of-nothing'})\n",
        "unknown memory layer 'mixture-of-nothing'",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_SPACES))
def test_bad_space_exits_nonzero_with_one_line_and_keeps_the_store(
    case: str, populated_store: Path, tmp_path: Path
) -> None:
    text, message = BAD_SPACES[case]
    space = tmp_path / f"{case}.py"
    space.write_text(text)
    before = digest(populated_store)
    result = cli("run", str(space), "--store", str(populated_store), "--device", "cpu")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert digest(populated_store) == before


def test_missing_space_file(populated_store: Path) -> None:
    before = digest(populated_store)
    result = cli("run", "missing.py", "--store", str(populated_store))
    assert result.returncode != 0
    assert (
        result.stderr.strip()
        == "error: space file 'missing.py' does not exist; pass a path like spaces/quickstart.py"
    )
    assert digest(populated_store) == before


def test_cuda_without_a_gpu(populated_store: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    before = digest(populated_store)
    space = Path(__file__).resolve().parents[1] / "spaces" / "quickstart.py"
    result = cli("run", str(space), "--device", "cuda", "--store", str(populated_store))
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "error: --device cuda: no CUDA device is visible on this machine; use --device cpu or auto"
    ]
    assert digest(populated_store) == before


def test_sql_prints_numbers(populated_store: Path) -> None:
    result = cli(
        "sql",
        "SELECT val_ppl, flops_per_token, params_total FROM trials",
        "--store",
        str(populated_store),
        "--format",
        "csv",
    )
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.strip().splitlines()
    assert header == "val_ppl,flops_per_token,params_total"
    assert len(rows) == 2 and all(float(v) > 0 for row in rows for v in row.split(","))


def test_sql_refuses_writes(populated_store: Path) -> None:
    before = digest(populated_store)
    result = cli("sql", "DELETE FROM trials", "--store", str(populated_store))
    assert result.returncode != 0 and result.stderr.startswith("error: ")
    assert digest(populated_store) == before


def test_ingest_twice_keeps_row_counts(populated_store: Path) -> None:
    counts = []
    for _ in range(2):
        assert cli("ingest", "--store", str(populated_store)).returncode == 0
        out = cli(
            "sql",
            "SELECT (SELECT count(*) FROM trials) t, (SELECT count(*) FROM params) p, "
            "(SELECT count(*) FROM curves) c",
            "--store",
            str(populated_store),
            "--format",
            "csv",
        )
        counts.append(out.stdout)
    assert counts[0] == counts[1]


def test_a_refused_ingest_names_the_drop_that_fixes_it(tmp_path: Path) -> None:
    from helpers_store import add_trial, build_study, make_study

    from workbench.store.ingest import open_optuna_storage

    store, journal = tmp_path / "wb.duckdb", tmp_path / "wb.optuna.journal"  # the store's default journal
    build_study("demo", open_optuna_storage(journal), uid="old-study")
    assert cli("ingest", "--store", str(store)).returncode == 0
    journal.unlink()
    new = make_study("demo", open_optuna_storage(journal), uid="new-study")
    add_trial(new, kind="dense", d_model=64)

    def rows() -> str:
        query = "SELECT * FROM trials ORDER BY ALL"
        return cli("sql", query, "--store", str(store), "--format", "csv").stdout

    before = rows()
    result = cli("ingest", "--store", str(store))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: store {store} holds rows of a different optuna study under the name 'demo' "
        f"(stored: uid old-stud from {journal}; being written: uid new-stud from {journal}), e.g. after its "
        "journal was deleted or another --storage was named; nothing was written, so the two are not mixed. "
        "Run under a new study name (workbench run SPACE --study-name NEW), or drop the stored rows first: "
        f"workbench drop demo --store {store}"
    ]
    assert rows() == before

    declined = cli("drop", "demo", "--store", str(store), input="n\n")
    assert declined.returncode != 0 and "delete study 'demo' (9 trials)" in declined.stdout
    assert rows() == before
    dropped = cli("drop", "demo", "--store", str(store), "--yes")
    assert dropped.returncode == 0, dropped.stderr
    assert dropped.stdout.startswith(f"dropped study 'demo' from {store}: 1 studies, 9 trials, ")
    assert cli("ingest", "--store", str(store)).stdout == "demo: 1 trials\n"
    assert journal.is_file() and len(rows().strip().splitlines()) == 2  # header and the new study's trial


def test_drop_of_an_unknown_study_or_store_changes_nothing(populated_store: Path, tmp_path: Path) -> None:
    result = cli("drop", "nope", "--store", str(populated_store), "--yes")
    assert result.returncode == 2
    assert (
        result.stderr.strip() == f"error: store {populated_store} holds no study 'nope'; studies there: tiny"
    )
    missing = tmp_path / "missing.duckdb"
    result = cli("drop", "tiny", "--store", str(missing), "--yes")
    assert result.returncode == 2 and "no store at" in result.stderr
    assert not missing.exists()


def test_help_explains_the_drop_command() -> None:
    result = cli("drop", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for words in ("every row of one study", "not touched", "workbench ingest", "--study-name", "--yes"):
        assert words in text


def test_layers_lists_the_registry() -> None:
    result = cli("layers")
    assert result.returncode == 0
    for name in ("dense", "switch"):
        assert name in result.stdout


def test_help_explains_the_run_command() -> None:
    result = cli("run", "--help")
    assert result.returncode == 0
    for flag in (
        "--trials",
        "--timeout",
        "--study-name",
        "--storage",
        "--store",
        "--device",
        "--seed",
        "--sampler",
    ):
        assert flag in result.stdout


def test_readme_layer_table_lists_every_registered_layer() -> None:
    from workbench import memory

    readme = Path(__file__).resolve().parents[1].joinpath("README.md").read_text()
    table = readme.split("## Memory layers", 1)[1].split("\n## ", 1)[0]
    for name in memory.names():
        cls = memory.get(name)
        knobs = ", ".join(f"`{k}`" for k in memory.knobs(name))
        row = f"| `{name}` | {cls.paper} | {knobs} | {cls.active_per_token} |"
        assert row in table, (
            f"README's layer table lacks {name!r} or its knobs; `workbench layers` has:\n{row}"
        )


# --- the app launcher ---------------------------------------------------------------------------------------


def test_streamlit_command_binds_localhost_headless(tmp_path: Path) -> None:
    argv, env = streamlit_command(tmp_path / "wb.duckdb", 8600)
    assert argv[:4] == [sys.executable, "-m", "streamlit", "run"] and argv[4].endswith("streamlit_app.py")
    flags = dict(zip(argv[5::2], argv[6::2], strict=True))
    assert flags["--server.address"] == "127.0.0.1" and flags["--server.port"] == "8600"
    assert flags["--server.headless"] == "true" and flags["--browser.gatherUsageStats"] == "false"
    assert env[STORE_ENV] == str((tmp_path / "wb.duckdb").resolve())
    with pytest.raises(WorkbenchError, match="--port"):
        streamlit_command(tmp_path / "wb.duckdb", 0)


# --- crash-proof studies: one-line errors, exit 2, the store unchanged (docs/RELIABILITY.md) ----------


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The single ``error: ...`` line of a refused command (exit 2, no traceback)."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def journal_store(tmp_path: Path) -> tuple[Path, Path]:
    """A store ingested from its default journal, which holds one study."""
    from helpers_store import build_study

    from workbench.store.ingest import open_optuna_storage

    store, journal = tmp_path / "wb.duckdb", tmp_path / "wb.optuna.journal"
    build_study("demo", open_optuna_storage(journal))
    assert cli("ingest", "--store", str(store)).returncode == 0
    return store, journal


def test_ingest_repairs_a_torn_journal_tail_and_refuses_a_corrupt_middle(tmp_path: Path) -> None:
    store, journal = journal_store(tmp_path)
    whole = journal.read_bytes()
    journal.write_bytes(whole[:-5])
    result = cli("ingest", "--store", str(store))
    assert result.returncode == 0, result.stderr
    (warning,) = result.stderr.strip().splitlines()
    (backup,) = tmp_path.glob("wb.optuna.journal.torn-*")
    assert warning.startswith(f"warning: optuna journal {journal}: its last line was torn")
    assert f"moved it to {backup}" in warning
    lines = journal.read_bytes().splitlines(keepends=True)
    lines[1] = b"{not json\n"
    journal.write_bytes(b"".join(lines))
    before = digest(store)
    error = one_error_line(cli("ingest", "--store", str(store)))
    assert error.startswith(f"error: optuna journal {journal}: line 2 of {len(lines)} is not valid JSON")
    assert digest(store) == before


def test_a_foreign_duckdb_file_is_refused_by_ingest_and_sql(tmp_path: Path) -> None:
    import duckdb

    theirs = tmp_path / "theirs.duckdb"
    con = duckdb.connect(str(theirs))
    con.execute("CREATE TABLE trials (x INTEGER)")
    con.close()
    before = digest(theirs)
    for args in (("ingest",), ("sql", "SELECT 1")):
        error = one_error_line(cli(*args, "--store", str(theirs)))
        assert error == (
            f"error: {theirs} is not a workbench store (it has tables trials and no schema_migrations); "
            "give another --store"
        )
    assert digest(theirs) == before


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("train.tokens=abc", "error: --set train.tokens='abc': train.tokens takes an integer, not str 'abc'"),
        (
            "model.d_model=abc",
            "error: --set model.d_model='abc': model.d_model takes an integer, not str 'abc'",
        ),
        ("train.tokens", "error: --set 'train.tokens': expected NAME=VALUE"),
    ],
)
def test_a_bad_set_value_names_the_field_and_its_type(
    populated_store: Path, setting: str, message: str
) -> None:
    before = digest(populated_store)
    space = Path(__file__).resolve().parents[1] / "spaces" / "quickstart.py"
    result = cli("run", str(space), "--set", setting, "--store", str(populated_store), "--device", "cpu")
    assert one_error_line(result).startswith(message)
    assert digest(populated_store) == before


def test_bad_store_and_storage_locations_are_one_line(tmp_path: Path) -> None:
    from conftest import TINY_SPACE

    space = tmp_path / "space.py"
    space.write_text(TINY_SPACE.format(corpus=str(tmp_path / "unused.txt"), constraints=""))
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    store = tmp_path / "wb.duckdb"
    cases = {
        (
            "--store",
            str(a_file / "sub" / "wb.duckdb"),
        ): f"error: --store {a_file / 'sub' / 'wb.duckdb'}: cannot create its folder",
        (
            "--storage",
            str(a_file / "x.journal"),
        ): f"error: cannot create the optuna journal {a_file / 'x.journal'}",
        (
            "--storage",
            "nosuchdb://host/db",
        ): "error: --storage 'nosuchdb://host/db': unknown database 'nosuchdb'",
        (
            "--storage",
            f"sqlite:///{a_file}/x.db",
        ): f"error: --storage 'sqlite:///{a_file}/x.db': folder {a_file} does not exist",
    }
    for flag, message in cases.items():
        extra = () if flag[0] == "--store" else ("--store", str(store))
        result = cli("run", str(space), *flag, *extra, "--device", "cpu", "--no-progress")
        assert one_error_line(result).startswith(message)
        assert not store.exists()


def test_a_storage_password_is_not_printed(tmp_path: Path) -> None:
    url = "postgresql://me:secret@127.0.0.1:1/x"  # nothing listens on port 1: connection refused
    space = tmp_path / "space.py"
    space.write_text("from workbench.space import Space\nspace = Space('x', {})\n")
    store = tmp_path / "wb.duckdb"
    for args in (("ingest", "--store", str(store)), ("worker", str(space), "--device", "cpu")):
        error = one_error_line(cli(*args, "--storage", url))
        assert "secret" not in error and "postgresql://me:***@127.0.0.1:1/x" in error, error
        assert "refused" in error or "driver is not installed" in error, error
    assert not store.exists()


def test_sql_runs_under_the_apps_guard(populated_store: Path, tmp_path: Path) -> None:
    before = digest(populated_store)
    out = tmp_path / "out.csv"
    for query in (
        f"COPY trials TO '{out}'",
        f"SELECT * FROM read_csv('{populated_store}')",
        "ATTACH ':memory:' AS m",
    ):
        one_error_line(cli("sql", query, "--store", str(populated_store)))
    assert not out.exists() and digest(populated_store) == before


def test_a_space_file_with_two_spaces_is_refused(populated_store: Path, tmp_path: Path) -> None:
    space = tmp_path / "two.py"
    space.write_text(
        "from workbench.space import Space\n"
        "space = Space('a', {'memory.kind': 'dense'})\n"
        "old = Space('b', {'memory.kind': 'dense'})\n"
    )
    error = one_error_line(cli("run", str(space), "--store", str(populated_store)))
    assert "defines 2 Space objects at module level (`space`, `old`)" in error


# --- several workers on one PostgreSQL study -------------------------------------------------------


def test_workers_on_postgresql_share_a_target_retry_a_killed_trial_and_follow_into_duckdb(
    pg_url: str, tmp_path: Path, tiny_corpus: Path
) -> None:
    import time

    import optuna
    from conftest import write_space

    from workbench import record
    from workbench.workers import Heartbeat, open_storage

    space = write_space(tmp_path, tiny_corpus)
    store = tmp_path / "wb.duckdb"
    worker = [sys.executable, "-m", "workbench", "worker", str(space), "--storage", pg_url]
    worker += ["--study-name", "pg", "--trials", "3", "--device", "cpu", "--no-progress"]
    worker += ["--heartbeat-interval", "1", "--grace-period", "10", "--set", "train.tokens=8000"]
    follow = [sys.executable, "-m", "workbench", "ingest", "--storage", pg_url, "--store", str(store)]
    follow += ["--study-name", "pg", "--follow", "--interval", "0.5", "--grace-period", "10"]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    procs = [subprocess.Popen(worker, **pipes) for _ in range(2)]
    follower = subprocess.Popen(follow, **pipes)
    storage = open_storage(pg_url, Heartbeat(interval=1, grace_period=10))
    victim, killed = procs[0], None
    try:
        deadline = time.monotonic() + 240
        while killed is None and time.monotonic() < deadline and victim.poll() is None:
            if "pg" in optuna.get_all_study_names(storage):
                for trial in optuna.load_study(study_name="pg", storage=storage).get_trials(deepcopy=False):
                    owner = trial.user_attrs.get(record.OWNER) or {}
                    running = trial.state == optuna.trial.TrialState.RUNNING
                    # Killed once its design is whole (every parameter sampled, its config
                    # recorded): a kill between two suggestions leaves the retry to sample the rest.
                    sampled = record.CONFIG in trial.user_attrs
                    if running and sampled and owner.get("pid") == victim.pid:
                        victim.kill()  # SIGKILL mid-trial
                        killed = trial.number
            time.sleep(0.2)
        assert killed is not None, "the first worker never ran a trial"
        procs.append(subprocess.Popen(worker, **pipes))  # a replacement joins
        for proc in procs[1:]:
            _, err = proc.communicate(timeout=600)
            assert proc.returncode == 0, err
        lines, err = follower.communicate(timeout=120)
        assert follower.returncode == 0, err
    finally:
        for proc in [*procs, follower]:
            proc.kill()
            proc.wait()
    study = optuna.load_study(study_name="pg", storage=storage)
    trials = study.get_trials(deepcopy=False)
    designs = [t for t in trials if t.user_attrs.get(record.STATUS) == "complete"]
    assert len(designs) == 3 and study.user_attrs[record.STUDY_TARGET] == 3
    dead = trials[killed]
    assert dead.state == optuna.trial.TrialState.FAIL and dead.user_attrs[record.STATUS] == "died"
    assert dead.user_attrs[record.ERROR].startswith("worker died")
    retries = [t for t in trials if t.user_attrs.get(record.RETRY_OF) == killed]
    assert len(retries) == 1 and retries[0].params == dead.params
    assert retries[0].user_attrs[record.STATUS] == "complete"
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    assert "pg: 3/3 designs done (3 trials), 0 running" in lines.strip().splitlines()[-1]
    # Every trial the storage finished is in the store exactly once, under its status.
    from workbench.store import Store

    finished = [t for t in trials if t.state.is_finished()]
    rows = Store.open(store, read_only=True).sql("SELECT trial_number, status FROM trials ORDER BY 1")
    assert list(rows.trial_number) == [t.number for t in finished]
    assert list(rows.status) == [t.user_attrs[record.STATUS] for t in finished]


def test_show_prints_every_choice_of_a_space() -> None:
    # A choice list such as [true, false] is printed as written, not read as rich markup.
    root = Path(__file__).resolve().parents[1]
    result = cli("show", str(root / "spaces" / "replicate" / "altup_decay.py"), env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert '{"choices": [true, false]}' in result.stdout
    assert '{"choices": ["altup", "recycled"]}' in result.stdout
