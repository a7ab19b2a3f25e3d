"""docs/RELIABILITY.md's cases, tried again as a new user would, and a chaos run (no GPU needed).

    python -m bench.chaos [--workers 4] [--designs 24] [--kills 8] [--storage pg|journal|both]
                          [--pg-url URL] [--doc docs/RELIABILITY.md]

Every case runs the real command line (``python -m workbench ...``) in a throwaway folder on a
tiny space (byte tokens, one layer of width 16, 4096 training tokens: a trial trains in about a
second on a CPU). The mistakes must each exit 2 with one ``error:`` line and leave the store's
bytes as they were. The chaos run (bench/_chaos_scenario.py) starts ``--workers`` processes on
one study (``workbench worker`` on PostgreSQL, ``workbench run --workers`` on the journal) and an
ingest that follows it, SIGKILLs them at seeded random points (mid-trial, between trials,
mid-ingest, the whole run), restarts them until the study reaches its target, and then counts
what was lost.
Without ``--pg-url`` it starts its own PostgreSQL with scripts/postgres.sh. The result goes
into docs/RELIABILITY.md between the markers below; tests/test_chaos.py runs the same
scenarios at a smaller load.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._chaos_scenario import (
    INGEST_KILL,
    ROOT,
    SPACE,
    Load,
    Report,
    Result,
    Sandbox,
    Trials,
    chaos_journal,
    chaos_pg,
    owner_pid,
    short,
    sigkill,
)
from bench.common import md_table, write_section

BEGIN = "<!-- bench/chaos.py: begin (generated; edit bench/, not this block) -->"
END = "<!-- bench/chaos.py: end -->"


# --------------------------------------------------------------------------------------------
# Cases: each returns what it saw; ok when it matches what docs/RELIABILITY.md promises.


@dataclass
class Case:
    id: str
    case: str
    expected: str
    observed: str = ""
    ok: bool = False


@contextlib.contextmanager
def _case(c: Case) -> Iterator[None]:
    """A case that crashes the bench is a failed case, not a lost table."""
    try:
        yield
    except Exception as e:
        c.ok, c.observed = False, f"bench error: {short(repr(e))}"


def refusal(result: Result, unchanged: bool, needle: str = "", absent: str = "") -> tuple[bool, str]:
    """(ok, observed) for a mistake: exit 2, one ``error:`` line holding ``needle`` (and not
    ``absent``), files unchanged."""
    lines = result.lines
    one = len(lines) == 1 and lines[0].startswith("error: ")
    ok = result.rc == 2 and one and unchanged and needle in result.stderr
    ok = ok and not (absent and absent in result.stderr)
    said = f"`{short(lines[0])}`" if one else f"{len(lines)} lines: `{short(result.stderr[-300:])}`"
    return ok, f"exit {result.rc}, {said}, {'unchanged' if unchanged else 'CHANGED'}"


def run_args(sb: Sandbox, store: Path, *extra: str) -> list[str]:
    return ["run", str(sb.space), "--store", str(store), "--device", "cpu", "--no-progress", *extra]


def journal_of(store: Path) -> Path:
    return store.with_name(store.stem + ".optuna.journal")


def study_copy(sb: Sandbox, base: Path, name: str) -> tuple[Path, Path]:
    """A copy of the base store and its journal, for one case to damage."""
    folder = sb.root / name
    folder.mkdir()
    store = folder / "wb.duckdb"
    shutil.copy(base, store)
    shutil.copy(journal_of(base), journal_of(store))
    return store, journal_of(store)


def mistake_cases(sb: Sandbox, pg_url: str | None) -> list[Case]:
    """The numbered cases 1-8 of docs/RELIABILITY.md, each as its command line."""
    base = sb.root / "base" / "wb.duckdb"
    base.parent.mkdir()
    made = sb.cli(*run_args(sb, base, "--trials", "2"))
    if made.rc != 0:
        raise SystemExit(f"the base study failed:\n{made.stderr}")
    cases: list[Case] = []

    c = Case(
        "1",
        "journal's last line torn (`head -c -5`)",
        "ingest repairs it (backup, one warning), exit 0; the next run appends",
    )
    with _case(c):
        store, journal = study_copy(sb, base, "torn")
        data = journal.read_bytes()
        torn = len(data.splitlines(keepends=True)[-1]) - 5
        journal.write_bytes(data[:-5])
        r = sb.cli("ingest", "--store", str(store))
        backups = list(journal.parent.glob(journal.name + ".torn-*"))
        nxt = sb.cli(*run_args(sb, store, "--trials", "3"))
        whole = all(_is_json(line) for line in journal.read_bytes().splitlines())
        # Warnings only: the repair's, and "worker died" when the torn record was a trial's last.
        warned = all(line.startswith("warning: ") for line in r.lines) and "was torn" in r.stderr
        size = backups[0].stat().st_size if len(backups) == 1 else None
        c.ok = r.rc == 0 and warned and size == torn and nxt.rc == 0 and whole
        c.observed = (
            f"ingest exit {r.rc}, `{short(r.lines[0] if r.lines else '', 90)}`; backup {size} bytes "
            f"(the torn line's {torn}); "
            f"next run exit {nxt.rc}, journal {'all JSON' if whole else 'NOT JSON'}"
        )
    cases.append(c)

    c = Case(
        "1b", "a record appended onto the torn line", "the bad last line moved aside the same way, exit 0"
    )
    with _case(c):
        store, journal = study_copy(sb, base, "appended")
        data = journal.read_bytes()
        last = data.splitlines(keepends=True)[-1]
        journal.write_bytes(data[:-5] + last)
        r = sb.cli("ingest", "--store", str(store))
        whole = all(_is_json(line) for line in journal.read_bytes().splitlines())
        warned = all(line.startswith("warning: ") for line in r.lines) and "was torn" in r.stderr
        c.ok = r.rc == 0 and warned and whole
        c.observed = f"exit {r.rc}, `{short(r.lines[0] if r.lines else '', 90)}`, journal {'all JSON' if whole else 'NOT JSON'}"
    cases.append(c)

    c = Case("1c", "a line in the middle of the journal is not JSON", "refused, nothing repaired")
    with _case(c):
        store, journal = study_copy(sb, base, "corrupt")
        lines = journal.read_bytes().splitlines(keepends=True)
        lines[1] = b"{not json\n"
        journal.write_bytes(b"".join(lines))
        before = digest(store, journal)
        c.ok, c.observed = refusal(
            sb.cli("ingest", "--store", str(store)), digest(store, journal) == before, "line 2"
        )
    cases.append(c)

    c = Case(
        "2",
        "`--store` is another program's DuckDB file",
        "refused before anything is written (ingest, sql, run)",
    )
    with _case(c):
        import duckdb

        theirs = sb.root / "theirs.duckdb"
        con = duckdb.connect(str(theirs))
        con.execute("CREATE TABLE trials (x INTEGER)")
        con.close()
        before = digest(theirs)
        seen = []
        for args in (("ingest", "--store", str(theirs)), ("sql", "SELECT 1", "--store", str(theirs))):
            seen.append(refusal(sb.cli(*args), digest(theirs) == before, "not a workbench store"))
        seen.append(refusal(sb.cli(*run_args(sb, theirs, "--trials", "1")), digest(theirs) == before))
        c.ok = all(ok for ok, _ in seen)
        c.observed = seen[0][1] + f"; sql and run the same: {'yes' if c.ok else [s for _, s in seen[1:]]}"
    cases.append(c)

    c = Case("3", "a storage URL with a password", "never stored or printed (`user:***@`)")
    with _case(c):
        store = sb.root / "secret" / "wb.duckdb"
        r = sb.cli("ingest", "--store", str(store), "--storage", "postgresql://me:secret@127.0.0.1:9/x")
        ok, said = refusal(r, not store.exists(), "me:***@", absent="secret")
        c.observed = f"unreachable server: {said}"
        if pg_url is not None:
            # Trust authentication ignores the password, so the study runs and is stored.
            url = pg_url.replace("postgres@", "postgres:secret@", 1)
            ran = sb.cli(*run_args(sb, store, "--trials", "1", "--storage", url))
            rows = sb.cli("sql", "SELECT storage_url FROM studies", "--store", str(store))
            stored_ok = (
                ran.rc == 0
                and "postgres:***@" in rows.stdout
                and "secret" not in rows.stdout + ran.stdout + ran.stderr
            )
            ok = ok and stored_ok
            c.observed += f"; a study on PostgreSQL: run exit {ran.rc}, studies.storage_url {'masked' if stored_ok else 'NOT masked'}"
        c.ok = ok
    cases.append(c)

    c = Case(
        "4a", "`--set train.tokens=abc`, `--set model.d_model=abc`", "one line naming the field and its type"
    )
    with _case(c):
        before = digest(base, journal_of(base))
        seen = [
            refusal(
                sb.cli(*run_args(sb, base, "--set", s)),
                digest(base, journal_of(base)) == before,
                "takes an integer",
            )
            for s in ("train.tokens=abc", "model.d_model=abc")
        ]
        c.ok = all(ok for ok, _ in seen)
        c.observed = "; ".join(s for _, s in seen)
    cases.append(c)

    a_file = sb.root / "a-file"
    a_file.write_text("")

    c = Case("4b", "`--store` whose folder cannot be created", "one line, nothing created")
    with _case(c):
        store = a_file / "sub" / "wb.duckdb"
        c.ok, c.observed = refusal(
            sb.cli(*run_args(sb, store)), not store.exists(), "cannot create its folder"
        )
    cases.append(c)

    c = Case("4c", "a journal in a folder that cannot be written", "one line, before the store is opened")
    with _case(c):
        store = sb.root / "4c" / "wb.duckdb"
        r = sb.cli(*run_args(sb, store, "--storage", str(a_file / "x.journal")))
        c.ok, c.observed = refusal(r, not store.exists(), "cannot create the optuna journal")
    cases.append(c)

    c = Case(
        "4d",
        "unknown URL scheme; SQLite folder missing; a file that is not SQLite; no driver",
        "one line each, nothing created",
    )
    with _case(c):
        store = sb.root / "4d" / "wb.duckdb"
        shadow = sb.root / "no-driver"
        (shadow / "psycopg2").mkdir(parents=True)
        (shadow / "psycopg2" / "__init__.py").write_text(
            "raise ImportError(\"No module named 'psycopg2'\")\n"
        )
        no_driver = {"PYTHONPATH": f"{shadow}{os.pathsep}{sb.env['PYTHONPATH']}"}
        tries = [
            (("--storage", "nosuchdb://host/db"), {}, "unknown database"),
            (("--storage", f"sqlite:///{sb.root}/missing/x.db"), {}, "does not exist"),
            (("--storage", f"sqlite:///{sb.corpus}"), {}, "cannot open"),
            (("--storage", "postgresql://me@127.0.0.1:9/x"), no_driver, "driver is not installed"),
        ]
        seen = [refusal(sb.cli(*run_args(sb, store, *a), env=e), not store.exists(), n) for a, e, n in tries]
        c.ok = all(ok for ok, _ in seen)
        c.observed = "; ".join(
            s.split(", ")[0] + (", " + n if ok else ", " + s)
            for (ok, s), (_, _, n) in zip(seen, tries, strict=True)
        )
    cases.append(c)

    c = Case(
        "5", 'an expression that would never end: `Derived("9 ** 9 ** 9 * model.d_model")`', "refused at once"
    )
    with _case(c):
        text = (
            SPACE.format(name="expr", corpus=str(sb.corpus))
            .replace("Fixed(64, when", 'Derived("9 ** 9 ** 9 * model.d_model", when')
            .replace("import Budget,", "import Budget, Derived,")
        )
        space = sb.space_file("expr.py", "expr", text)
        store = sb.root / "5" / "wb.duckdb"
        r = sb.cli("run", str(space), "--store", str(store), "--device", "cpu", "--no-progress", timeout=120)
        ok, said = refusal(r, True, "above 64")
        c.ok, c.observed = ok and r.seconds < 60, f"{said} in {r.seconds:.0f} s"
    cases.append(c)

    c = Case(
        "6",
        "`workbench sql \"COPY trials TO 'f.csv'\"`, `read_csv`, `ATTACH`",
        "refused by the app's guard; no file written",
    )
    with _case(c):
        before = digest(base)
        out = sb.root / "out.csv"
        seen = [
            refusal(sb.cli("sql", q, "--store", str(base)), digest(base) == before and not out.exists())
            for q in (
                f"COPY trials TO '{out}'",
                f"SELECT * FROM read_csv('{base}')",
                "ATTACH ':memory:' AS m",
            )
        ]
        c.ok = all(ok for ok, _ in seen)
        c.observed = seen[0][1] + (
            "; read_csv and ATTACH the same" if c.ok else f"; {[s for _, s in seen[1:]]}"
        )
    cases.append(c)

    c = Case("7", "a space file defines two `Space` objects", "one line naming both")
    with _case(c):
        text = (
            SPACE.format(name="a", corpus=str(sb.corpus)) + "other = Space('b', {'memory.kind': 'dense'})\n"
        )
        two = sb.space_file("two.py", "two", text)
        before = digest(base, journal_of(base))
        r = sb.cli("run", str(two), "--store", str(base), "--device", "cpu")
        c.ok, c.observed = refusal(
            r, digest(base, journal_of(base)) == before, "Space objects at module level"
        )
    cases.append(c)

    c = Case(
        "8",
        "a fixed knob that can never work (`--set model.n_heads=3` with `d_model` 16)",
        "refused when the space is built",
    )
    with _case(c):
        before = digest(base, journal_of(base))
        r = sb.cli(*run_args(sb, base, "--set", "model.n_heads=3"))
        c.ok, c.observed = refusal(r, digest(base, journal_of(base)) == before, "does not divide")
    cases.append(c)
    return cases


def _is_json(line: bytes) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def digest(*paths: Path) -> str:
    """The bytes of ``paths`` (absent ones as "absent"), as one hash."""
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes() if p.exists() else b"absent")
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# Scale-out cases a user meets without any kill: shared targets, resumes, a dead run's trials.


def stored_trials(sb: Sandbox, store: Path) -> list[tuple[Any, ...]]:
    import duckdb

    con = duckdb.connect(str(store), read_only=True)
    try:
        return con.execute(
            "SELECT trial_number, optuna_state, status, config_hash, error FROM trials ORDER BY trial_number"
        ).fetchall()
    finally:
        con.close()


def scale_out_cases(sb: Sandbox) -> list[Case]:
    cases: list[Case] = []

    c = Case(
        "9", "two `workbench run --trials 3` at once on one study", "3 designs in all, none trained twice"
    )
    with _case(c):
        store = sb.root / "9" / "wb.duckdb"
        store.parent.mkdir()
        procs = [sb.start(*run_args(sb, store, "--trials", "3"), label=f"concurrent{i}") for i in range(2)]
        rcs = [p.wait(timeout=300) for p in procs]
        rows = stored_trials(sb, store)
        done = [r for r in rows if r[1] == "COMPLETE"]
        distinct = len({r[3] for r in done})
        c.ok = rcs == [0, 0] and len(done) == 3 and distinct == 3 and len(rows) == 3
        c.observed = (
            f"exits {rcs}; {len(done)} complete, {distinct} distinct configs, {len(rows)} trials stored"
        )
    cases.append(c)

    c = Case(
        "10", "`run --trials 2`, then `run --trials 4` on the same study", "2 new designs, no replayed design"
    )
    with _case(c):
        store = sb.root / "10" / "wb.duckdb"
        store.parent.mkdir()
        first, second = (sb.cli(*run_args(sb, store, "--trials", n)) for n in ("2", "4"))
        rows = stored_trials(sb, store)
        distinct = len({r[3] for r in rows if r[1] == "COMPLETE"})
        c.ok = first.rc == second.rc == 0 and len(rows) == 4 and distinct == 4
        c.observed = f"exits {first.rc}, {second.rc}; {len(rows)} trials, {distinct} distinct configs"
    cases.append(c)

    c = Case(
        "11",
        "a run SIGKILLed mid-trial on the journal (no heartbeat), then `workbench ingest`, then `run`",
        "ingest fails the trial (`worker died`) and re-queues it; the next run trains it",
    )
    with _case(c):
        store = sb.root / "11" / "wb.duckdb"
        store.parent.mkdir()
        run = sb.start(*run_args(sb, store, "--trials", "3"), label="reap-run")
        trials = Trials(str(journal_of(store)))
        end = time.monotonic() + 120
        busy: list[int] = []
        while not busy and time.monotonic() < end and run.poll() is None:
            busy = [t.number for t in trials() if t.state.name == "RUNNING" and owner_pid(t) == run.pid]
            time.sleep(0.05)
        sigkill(run, group=True)
        ingest = sb.cli("ingest", "--store", str(store))
        after = {t.number: t for t in Trials(str(journal_of(store)))()}
        reaped = [
            n
            for n in busy
            if after[n].state.name == "FAIL" and "died" in str(after[n].user_attrs.get("wb.error"))
        ]
        queued = [
            t.number
            for t in after.values()
            if t.state.name == "WAITING" and t.user_attrs.get("wb.retry_of") in busy
        ]
        rerun = sb.cli(*run_args(sb, store))
        rows = stored_trials(sb, store)
        complete = sum(1 for row in rows if row[1] == "COMPLETE")
        c.ok = (
            bool(busy)
            and reaped == busy
            and bool(queued)
            and ingest.rc == 0
            and rerun.rc == 0
            and complete == 3
        )
        said = short(ingest.lines[0], 110) if ingest.lines else "nothing"
        c.observed = (
            f"killed trial {busy}; ingest exit {ingest.rc}: `{said}`; retry queued {queued}; "
            f"next run exit {rerun.rc}, {complete} of 3 designs complete"
        )
    cases.append(c)
    return cases


def chaos_cases(reports: Sequence[Report]) -> list[Case]:
    cases = []
    for report in reports:
        kinds = {k.kind for k in report.kills}
        mid = sum(len(k.trials) for k in report.kills)
        ok = not report.problems
        observed = (
            f"{report.load.workers} workers, target {report.load.designs}: kills {report.kinds() or 'none'}; "
            f"{mid} trials killed mid-trial, {report.died} failed as died, {report.retried} retried"
            + (f" ({report.unsampled} died before sampling a design)" if report.unsampled else "")
            + "; "
            f"{report.designs} designs; {report.in_store} finished trials in DuckDB once each; "
            + ("nothing lost" if ok else "PROBLEMS: " + short("; ".join(report.problems), 400))
        )
        if report.storage == "PostgreSQL":
            cases.append(
                Case(
                    "12",
                    "`workbench worker` processes on PostgreSQL SIGKILLed mid-trial and between trials",
                    "heartbeat fails the trial (`worker died`), re-queued; the target reached exactly",
                    observed,
                    ok and any("mid-trial" in k for k in kinds),
                )
            )
        else:
            cases.append(
                Case(
                    "13",
                    "`run --workers` on the journal: a worker, or the whole run, SIGKILLed mid-trial; run again",
                    "the dead owner's trial failed (`worker died`) and re-queued; the target reached exactly",
                    observed,
                    ok and any("mid-trial" in k for k in kinds),
                )
            )
    ingests = [r for r in reports if any(k.kind == INGEST_KILL for k in r.kills)]
    if ingests:
        n = sum(1 for r in ingests for k in r.kills if k.kind == INGEST_KILL)
        # The problems of the store or the follower, not the workers'.
        wrong = [p for r in ingests for p in r.problems if "DuckDB" in p or "ingest" in p]
        cases.append(
            Case(
                "14",
                "`workbench ingest --follow` SIGKILLed while it copies a finished trial",
                "restarted, it catches up; every finished trial in DuckDB exactly once",
                f"{n} kills ({', '.join(r.storage for r in ingests)}); "
                + ("stores complete, no duplicate row" if not wrong else short("; ".join(wrong), 300)),
                not wrong,
            )
        )
    return cases


# --------------------------------------------------------------------------------------------
# PostgreSQL, the report, the command line.


@contextlib.contextmanager
def postgres(url: str | None) -> Iterator[str | None]:
    """``url``, or a throwaway server started with scripts/postgres.sh (None if it cannot start)."""
    if url:
        yield url
        return
    # Its own folder in /tmp: the server's user must reach it (not through a private parent).
    folder = Path(tempfile.mkdtemp(prefix="wb-chaos-pg-"))
    started = subprocess.run(
        ["bash", str(ROOT / "scripts" / "postgres.sh"), "start", str(folder)], capture_output=True, text=True
    )
    if started.returncode != 0:
        print(f"note: no PostgreSQL ({started.stderr.strip()}); its cases are skipped", file=sys.stderr)
        yield None
        return
    try:
        yield started.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run(["bash", str(ROOT / "scripts" / "postgres.sh"), "stop", str(folder)], check=False)


def new_database(url: str, name: str) -> str:
    """A new empty database on the server of ``url``; its URL."""
    import urllib.parse

    import psycopg2

    con = psycopg2.connect(url)
    con.autocommit = True
    try:
        with con.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            cur.execute(f"CREATE DATABASE {name}")
    finally:
        con.close()
    return urllib.parse.urlsplit(url)._replace(path=f"/{name}").geturl()


def server_version(url: str | None) -> str:
    if url is None:
        return "none"
    import psycopg2

    con = psycopg2.connect(url)
    try:
        with con.cursor() as cur:
            cur.execute("SHOW server_version")
            return f"PostgreSQL {cur.fetchone()[0].split()[0]}"
    finally:
        con.close()


def provenance_line(command: str, pg: str) -> str:
    import optuna
    import torch

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, cwd=ROOT)
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"Generated by `{command}` on {date}: {platform.machine()}, {os.cpu_count()} cores, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}, torch {torch.__version__}, "
        f"optuna {optuna.__version__}, {pg}; commit {commit.stdout.strip() or '?'}"
        f"{' with local changes' if dirty.stdout.strip() else ''}."
    )


def report(cases: Sequence[Case], reports: Sequence[Report], command: str, pg: str) -> str:
    rows = [(c.id, c.case, c.expected, c.observed, "yes" if c.ok else "**NO**") for c in cases]
    load_rows = [
        (
            r.storage,
            r.load.workers,
            r.load.designs,
            sum(r.states.values()),
            f"{len(r.kills)} ({r.kinds()})",
            r.died,
            r.retried,
            r.designs,
            r.in_store,
            r.states.get("RUNNING", 0) + r.states.get("WAITING", 0),
            "nothing" if not r.problems else short("; ".join(r.problems), 300),
            f"{r.seconds:.0f}",
        )
        for r in reports
    ]
    failed = [c.id for c in cases if not c.ok]
    verdict = (
        f"**All {len(cases)} cases behave as documented; nothing was lost.**"
        if not failed
        else f"**Cases {', '.join(failed)} do not behave as documented.**"
    )
    parts = [
        provenance_line(command, pg),
        verdict,
        md_table(["#", "case", "expected", "observed", "ok"], rows),
    ]
    if load_rows:
        parts += [
            "**Load held by the chaos runs** (tiny models on the CPU; a kill is a SIGKILL; heartbeat every "
            f"{reports[0].load.heartbeat} s, grace {reports[0].load.grace} s):",
            md_table(
                [
                    "storage",
                    "workers",
                    "target designs",
                    "trials started",
                    "kills",
                    "died",
                    "retried",
                    "designs done",
                    "in DuckDB",
                    "running or queued at the end",
                    "lost",
                    "seconds",
                ],
                load_rows,
            ),
        ]
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--designs", type=int, default=24, help="the study's target of designs")
    parser.add_argument("--kills", type=int, default=8, help="SIGKILLs per chaos run")
    parser.add_argument("--storage", choices=("pg", "journal", "both"), default="both")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill schedule")
    parser.add_argument(
        "--pg-url", default=os.environ.get("WORKBENCH_TEST_PG_URL"), help="a PostgreSQL server to use"
    )
    parser.add_argument("--doc", default="docs/RELIABILITY.md")
    parser.add_argument("--keep", action="store_true", help="keep the sandbox (logs, stores) and print where")
    args = parser.parse_args(argv)
    load = Load(workers=args.workers, designs=args.designs, kills=args.kills, seed=args.seed)
    command = "python -m bench.chaos " + " ".join(
        f"--{k} {v}"
        for k, v in (
            ("workers", args.workers),
            ("designs", args.designs),
            ("kills", args.kills),
            ("storage", args.storage),
        )
    )
    tmp = Path(tempfile.mkdtemp(prefix="wb-chaos-"))
    try:
        with postgres(args.pg_url) as url:
            pg = server_version(url)
            cases = mistake_cases(Sandbox(tmp / "cases"), url)
            cases += scale_out_cases(Sandbox(tmp / "scale"))
            reports = []
            if args.storage in ("pg", "both") and url is not None:
                reports.append(chaos_pg(Sandbox(tmp / "pg"), new_database(url, "wb_chaos"), load))
            if args.storage in ("journal", "both"):
                reports.append(chaos_journal(Sandbox(tmp / "journal"), load))
            cases += chaos_cases(reports)
    finally:
        if args.keep:
            print(f"sandbox kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    body = report(cases, reports, command, pg)
    write_section(Path(args.doc), body, BEGIN, END)
    print(body)
    return 0 if all(c.ok for c in cases) else 1


if __name__ == "__main__":
    raise SystemExit(main())
