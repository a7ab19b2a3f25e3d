"""The chaos scenario of bench/chaos.py and tests/test_chaos.py: SIGKILL the processes of a study.

A :class:`Sandbox` is a throwaway folder with a tiny corpus and space (byte tokens, one layer of
width 16, 4096 training tokens: a trial trains in about a second on a CPU) that runs the real
command line, ``python -m workbench ...``. :func:`chaos_pg` starts ``load.workers`` ``workbench
worker`` processes on one PostgreSQL study, :func:`chaos_journal` a ``workbench run --workers``
on a journal; each also runs a ``workbench ingest --follow``. A seeded schedule SIGKILLs them
(a worker mid-trial or at any moment, the whole run mid-trial, the follower just after a trial
finished, while it copies it), restarts what it killed until the study reaches its target, and
:meth:`Chaos.check` lists what was lost or wrong; that list must be empty.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STUDY = "chaos"
INGEST_KILL = "ingest --follow mid-copy"

SENTENCES = [
    "In the beginning was the word, and the word was with the light.",
    "The memory of the model is a table of keys and values, read a few blocks at a time.",
    "And the evening and the morning were the first day of the study.",
    "A router picks the expert; a hash picks it without learning anything at all.",
]

# A continuous learning rate: every sampled design is new, so no trial is a reused duplicate.
SPACE = """
from workbench.space import Budget, Categorical, Fixed, Float, Objective, Space

space = Space(
    {name!r},
    {{
        "data.corpus": {corpus!r},
        "data.tokenizer": "byte",
        "model.seq_len": 32,
        "model.n_layers": 1,
        "model.n_heads": 2,
        "model.d_model": 16,
        "memory.kind": Categorical(["dense", "switch"]),
        "memory.d_ff": Fixed(64, when={{"memory.kind": "dense"}}),
        "memory.n_experts": Fixed(2, when={{"memory.kind": "switch"}}),
        "memory.expert_width": Fixed(32, when={{"memory.kind": "switch"}}),
        "train.batch_size": 8,
        "train.lr": Float(1e-3, 3e-2, log=True),
        "train.eval_tokens": 512,
    }},
    objectives=[Objective("val_ppl"), Objective("flops_per_token")],
    budget=Budget(tokens=4096),
    trials=4,
)
"""


# --------------------------------------------------------------------------------------------
# The sandbox: a folder, a tiny space, and the command line run as a user runs it.


class Sandbox:
    """A throwaway folder with a tiny corpus and space; runs ``python -m workbench`` in it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.corpus = root / "corpus.txt"
        self.corpus.write_text("\n".join(SENTENCES[i % len(SENTENCES)] for i in range(600)), encoding="utf-8")
        self.space = self.space_file("space.py", STUDY)
        self.env = {
            **os.environ,
            "WORKBENCH_CACHE": os.environ.get("WORKBENCH_CACHE") or str(root / "cache"),
            # The package from this checkout, wherever the command runs.
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
            # Several workers share the cores: one thread each, or they spin against each other.
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
        self.logs = root / "logs"
        self.logs.mkdir(exist_ok=True)
        self._n = 0
        self.log_of: dict[int, Path] = {}

    def space_file(self, name: str, study: str, text: str | None = None) -> Path:
        path = self.root / name
        path.write_text(text or SPACE.format(name=study, corpus=str(self.corpus)), encoding="utf-8")
        return path

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "workbench", *args]

    def cli(self, *args: str, timeout: float = 300, env: dict[str, str] | None = None) -> Result:
        start = time.monotonic()
        done = subprocess.run(
            self.argv(*args),
            capture_output=True,
            text=True,
            cwd=self.root,
            env={**self.env, **(env or {})},
            timeout=timeout,
        )
        # Paths inside the sandbox are shown relative to it (the report does not name a temp folder).
        out, err = (text.replace(f"{self.root}{os.sep}", "") for text in (done.stdout, done.stderr))
        return Result(done.returncode, out, err, time.monotonic() - start)

    def start(self, *args: str, label: str) -> subprocess.Popen[bytes]:
        """A background command in its own process group (so killing a run kills its workers)."""
        self._n += 1
        path = self.logs / f"{self._n:03d}-{label}.log"
        with open(path, "wb") as log:
            proc = subprocess.Popen(
                self.argv(*args),
                cwd=self.root,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.log_of[proc.pid] = path
        return proc

    def last_line(self, proc: subprocess.Popen[bytes]) -> str:
        """The last line ``proc`` wrote."""
        lines = self.log_of[proc.pid].read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else ""


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def lines(self) -> list[str]:
        return self.stderr.strip().splitlines()


def short(text: str, n: int = 150) -> str:
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= n else text[: n - 1] + "…"


# --------------------------------------------------------------------------------------------
# Chaos: workers on one study, killed at seeded random points and restarted until it is done.


@dataclass(frozen=True, kw_only=True)
class Load:
    workers: int = 4
    designs: int = 24
    kills: int = 8
    seed: int = 0
    heartbeat: int = 1  # seconds between a running trial's heartbeats (PostgreSQL)
    grace: int = 5  # seconds without one after which its worker is taken for dead
    deadline: float = 900  # seconds the whole scenario may take


@dataclass
class Kill:
    kind: str  # what was killed and when: "worker mid-trial", "whole run mid-trial", INGEST_KILL, ...
    pid: int
    trials: list[int]  # trials the killed processes were running


@dataclass
class Report:
    storage: str
    load: Load
    kills: list[Kill] = field(default_factory=list)
    states: dict[str, int] = field(default_factory=dict)
    died: int = 0  # trials failed as "worker died"
    retried: int = 0  # of them, re-queued and trained again
    unsampled: int = 0  # of them, killed before the sampler chose their design (nothing to retry)
    designs: int = 0  # designs counted toward the target
    in_store: int = 0  # finished trials in DuckDB
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)  # what was lost or wrong; must be empty
    logs: str = ""

    def kinds(self) -> str:
        counts: dict[str, int] = {}
        for k in self.kills:
            counts[k.kind] = counts.get(k.kind, 0) + 1
        return "; ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))


class Trials:
    """The study's trials as the optuna storage holds them, read again on each call ([] until
    a worker has created the study)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._study: Any = None

    def __call__(self) -> list[Any]:
        if self._study is None:
            storage = self._storage()
            if storage is None:
                return []
            import optuna

            try:
                self._study = optuna.load_study(study_name=STUDY, storage=storage)
            except KeyError:
                return []
        return self._study.get_trials(deepcopy=False)

    def _storage(self) -> Any:
        import optuna

        if not self.url.startswith("postgresql"):
            from optuna.storages.journal import JournalFileBackend

            exists = Path(self.url).exists()
            return optuna.storages.JournalStorage(JournalFileBackend(self.url)) if exists else None
        import psycopg2

        from workbench.store.ingest import rdb_url

        # Only once a worker has made the schema and the study: optuna would make the schema too.
        con = psycopg2.connect(self.url)
        try:
            with con.cursor() as cur:
                cur.execute("SELECT to_regclass('studies') IS NOT NULL")
                made = cur.fetchone()[0]
                if made:
                    cur.execute("SELECT count(*) FROM studies WHERE study_name = %s", (STUDY,))
                    made = cur.fetchone()[0] > 0
        finally:
            con.close()
        return optuna.storages.RDBStorage(rdb_url(self.url), skip_compatibility_check=True) if made else None


def owner_pid(trial: Any) -> int | None:
    owner = trial.user_attrs.get("wb.owner")
    return owner.get("pid") if isinstance(owner, dict) else None


def running_of(trials: Sequence[Any], pids: set[int]) -> list[int]:
    return [t.number for t in trials if t.state.name == "RUNNING" and owner_pid(t) in pids]


def sigkill(proc: subprocess.Popen[bytes], group: bool = False) -> None:
    with contextlib.suppress(ProcessLookupError):
        if group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    proc.wait()


def children(pid: int) -> set[int]:
    """Descendant pids of ``pid`` (from /proc)."""
    parent: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parent[int(stat.parent.name)] = int(fields[1])
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        for child, ppid in parent.items():
            if ppid == p and child not in found:
                found.add(child)
                todo.append(child)
    return found


class Chaos:
    """One scenario: start the processes, kill them on a seeded schedule, restart, then check."""

    def __init__(self, sb: Sandbox, storage: str, url: str, load: Load, label: str) -> None:
        self.sb, self.url, self.load, self.label = sb, url, load, label
        self.rng = random.Random(load.seed)
        self.store = sb.root / f"{label}.duckdb"
        self.trials = Trials(url)
        self.report = Report(storage=storage, load=load)
        self.start = time.monotonic()
        self.follower: subprocess.Popen[bytes] | None = None
        self.killed_pids: set[int] = set()
        self._misses = 0
        self.alive: Callable[[], bool] = lambda: True  # whether the study's processes still run

    # The common options of every process of the study.
    def study_args(self) -> list[str]:
        return ["--storage", self.url, "--study-name", STUDY, "--max-retry", str(self.load.kills + 2)]

    def heartbeat_args(self) -> list[str]:
        return ["--heartbeat-interval", str(self.load.heartbeat), *self.grace_args()]

    def grace_args(self) -> list[str]:
        """An ingest runs no trial (no heartbeat) but fails those whose heartbeat is this old."""
        return ["--grace-period", str(self.load.grace)]

    def follow(self) -> subprocess.Popen[bytes]:
        args = ["ingest", *self.study_args(), *self.grace_args(), "--store", str(self.store)]
        return self.sb.start(*args, "--follow", "--interval", "0.5", label=f"{self.label}-follow")

    def left(self) -> float:
        return self.load.deadline - (time.monotonic() - self.start)

    def wait_for(self, what: Callable[[], Any], timeout: float, poll: float = 0.05) -> Any:
        """``what()`` once it is true; None after ``timeout`` or once the study's processes are gone."""
        end = time.monotonic() + min(timeout, max(self.left(), 0))
        while time.monotonic() < end and self.alive():
            got = what()
            if got:
                return got
            time.sleep(poll)
        return None

    def plan(self, kinds: Sequence[str]) -> list[str]:
        """``load.kills`` kills: every kind once (as far as they go), the rest drawn, in seeded order."""
        plan = list(kinds)[: self.load.kills]
        plan += [self.rng.choice(kinds) for _ in range(self.load.kills - len(plan))]
        self.rng.shuffle(plan)
        return plan

    def kill_follower_mid_ingest(self) -> None:
        """SIGKILL the follower just after a trial finished, while it copies it into DuckDB."""
        assert self.follower is not None
        self.check_follower()
        if self.follower.poll() is not None:
            return
        before = sum(1 for t in self.trials() if t.state.is_finished())
        if not self.wait_for(lambda: sum(1 for t in self.trials() if t.state.is_finished()) > before, 60):
            return
        time.sleep(self.rng.uniform(0.0, 0.6))
        sigkill(self.follower)
        self.report.kills.append(Kill(INGEST_KILL, self.follower.pid, []))
        self.follower = self.follow()

    def check_follower(self) -> None:
        """A follower that stopped by itself must have stopped cleanly (the study was done)."""
        assert self.follower is not None
        if self.follower.poll() not in (None, 0):
            self.report.problems.append(
                f"ingest --follow exited {self.follower.returncode}: {self.sb.last_line(self.follower)}"
            )

    def kill_mid_trial(
        self, pids: Callable[[], set[int]], kill: Callable[[int], set[int]], what: str
    ) -> int | None:
        """Wait until one of ``pids()`` (asked again as processes come and go) runs a trial, pause
        a random moment, and SIGKILL its owner (``kill(owner)`` kills it and returns the pids that
        died); None when none ran one."""
        if not self.wait_for(lambda: running_of(self.trials(), pids()), 60):
            return None
        time.sleep(self.rng.uniform(0.0, 0.3))
        candidates = pids()
        running = [t for t in self.trials() if t.state.name == "RUNNING" and owner_pid(t) in candidates]
        if not running:
            return None
        victim = owner_pid(self.rng.choice(running))
        assert victim is not None
        self.record(what, victim, kill(victim), running)
        return victim

    def again(self, plan: list[str], kind: str, victim: int | None) -> None:
        """Try a mid-trial kill again (twice at most per run) when its trial finished first."""
        last = self.report.kills[-1] if self.report.kills else None
        missed = victim is None or last is None or last.pid != victim or not last.trials
        if missed and self._misses < 2:
            self._misses += 1
            plan.insert(0, kind)

    def kill_any(self, pid: int, kill: Callable[[int], set[int]], what: str) -> None:
        """SIGKILL ``pid`` now, whatever it is doing."""
        running = [t for t in self.trials() if t.state.name == "RUNNING" and owner_pid(t) == pid]
        self.record(what, pid, kill(pid), running)

    def record(self, what: str, pid: int, dead: set[int], running: Sequence[Any]) -> None:
        """Note a kill of ``dead``: the trials of ``running`` (read just before) that did not
        finish first were killed mid-trial."""
        self.killed_pids |= dead
        after = {t.number: t for t in self.trials()}
        killed = [
            t.number
            for t in running
            if owner_pid(t) in dead
            and (
                after[t.number].state.name == "RUNNING"
                or after[t.number].user_attrs.get("wb.status") == "died"
            )
        ]
        self.report.kills.append(Kill(f"{what} {'mid-trial' if killed else 'between trials'}", pid, killed))

    # --- the checks ------------------------------------------------------------------------

    def finish(self, timeout: float) -> None:
        """Stop the follower, ingest once more, and check what the storage and the store hold."""
        if self.follower is not None:
            self.check_follower()
            self.follower.send_signal(signal.SIGINT)
            try:
                self.follower.wait(timeout=30)
            except subprocess.TimeoutExpired:
                sigkill(self.follower)
        final = self.sb.cli(
            "ingest", *self.study_args(), *self.grace_args(), "--store", str(self.store), timeout=timeout
        )
        if final.rc != 0:
            self.report.problems.append(f"the final ingest exited {final.rc}: {short(final.stderr[-300:])}")
        self.check()
        self.report.seconds = time.monotonic() - self.start
        self.report.logs = str(self.sb.logs)

    def check(self) -> None:
        import duckdb

        r, problems = self.report, self.report.problems
        trials = self.trials()
        by_number = {t.number: t for t in trials}
        for t in trials:
            r.states[t.state.name] = r.states.get(t.state.name, 0) + 1
        if r.states.get("RUNNING") or r.states.get("WAITING"):
            problems.append(
                f"left RUNNING {r.states.get('RUNNING', 0)}, WAITING {r.states.get('WAITING', 0)}"
            )
        counted = [
            t
            for t in trials
            if int(t.user_attrs.get("wb.replicate", 0)) == 0
            and (
                t.state.name == "COMPLETE"
                or (
                    t.state.is_finished()
                    and t.user_attrs.get("wb.status") in ("complete", "failed", "infeasible", "pruned")
                )
            )
        ]
        r.designs = len(counted)
        if r.designs != self.load.designs:
            problems.append(f"{r.designs} designs counted, the target is {self.load.designs}")
        not_complete = [t.number for t in counted if t.state.name != "COMPLETE"]
        if not_complete:
            problems.append(f"counted designs that did not complete: trials {not_complete}")
        # Killed trials: failed as died, with the reason, and trained again.
        died = [t for t in trials if t.user_attrs.get("wb.status") == "died"]
        r.died = len(died)
        for t in died:
            if t.state.name != "FAIL" or "died" not in str(t.user_attrs.get("wb.error", "")):
                problems.append(
                    f"trial {t.number} died but is {t.state.name} with error {t.user_attrs.get('wb.error')!r}"
                )
            if owner_pid(t) is not None and owner_pid(t) not in self.killed_pids:
                problems.append(
                    f"trial {t.number} was reaped as died, but its worker {owner_pid(t)} was never killed"
                )
            if not t.params and not {"fixed_params", "failed_trial"} & set(t.system_attrs):
                r.unsampled += 1  # killed before it sampled a design: nothing to train again
                continue
            series = int(t.system_attrs.get("failed_trial", t.number))
            again = [
                u
                for u in trials
                if u.number > t.number
                and u.user_attrs.get("wb.retry_of") == series
                and t.params.items() <= u.params.items()  # what it had sampled (maybe not all)
            ]
            if not again:
                problems.append(f"trial {t.number} died and was not queued again")
            elif any(u.state.name == "COMPLETE" or u.user_attrs.get("wb.status") == "died" for u in again):
                r.retried += 1
            else:
                problems.append(f"trial {t.number}'s retry {[u.number for u in again]} never completed")
        for kill in r.kills:
            for n in kill.trials:
                t = by_number.get(n)
                if t is None or t.user_attrs.get("wb.status") != "died":
                    state = None if t is None else (t.state.name, t.user_attrs.get("wb.status"))
                    problems.append(f"trial {n} was running in the killed pid {kill.pid} but ended {state}")
        # Every finished trial in DuckDB once, in its final state; no row of a trial twice.
        con = duckdb.connect(str(self.store), read_only=True)
        try:
            rows = con.execute(
                "SELECT trial_number, optuna_state FROM trials WHERE study_name = $s", {"s": STUDY}
            ).fetchall()
            dupes = con.execute(
                """
                SELECT 'params', count(*) FROM (SELECT trial_number, name FROM params WHERE study_name = $s
                                                GROUP BY ALL HAVING count(*) > 1)
                UNION ALL SELECT 'curves', count(*) FROM (SELECT trial_number, step, metric FROM curves
                                                WHERE study_name = $s GROUP BY ALL HAVING count(*) > 1)
                UNION ALL SELECT 'provenance', count(*) FROM (SELECT trial_number FROM provenance
                                                WHERE study_name = $s GROUP BY ALL HAVING count(*) > 1)
                """,
                {"s": STUDY},
            ).fetchall()
        finally:
            con.close()
        stored = dict(rows)
        r.in_store = len(stored)
        if len(rows) != len(stored):
            problems.append("a trial is in DuckDB twice")
        for table, n in dupes:
            if n:
                problems.append(f"{n} trials have duplicate rows in {table}")
        for t in trials:
            if t.state.is_finished() and stored.get(t.number) != t.state.name:
                problems.append(
                    f"trial {t.number} is {t.state.name} in optuna, {stored.get(t.number)} in DuckDB"
                )
        extra = set(stored) - {t.number for t in trials if t.state.is_finished()}
        if extra:
            problems.append(f"DuckDB holds trials optuna has not finished: {sorted(extra)}")


def chaos_pg(sb: Sandbox, url: str, load: Load) -> Report:
    """``load.workers`` ``workbench worker`` processes and a ``workbench ingest --follow`` on one
    PostgreSQL study; kills mid-trial, at any moment and mid-ingest; restarts until done."""
    c = Chaos(sb, "PostgreSQL", url, load, "pg")
    args = ["worker", str(sb.space), *c.study_args(), *c.heartbeat_args(), "--device", "cpu"]
    args += ["--trials", str(load.designs), "--no-progress"]
    workers = [sb.start(*args, label=f"pg-worker{i}") for i in range(load.workers)]
    everyone = list(workers)
    c.alive = lambda: any(w.poll() is None for w in workers)
    c.follower = c.follow()
    plan = c.plan(["mid-trial", "ingest", "any moment"])
    while plan and c.left() > 60 and c.alive():
        kind = plan.pop(0)
        time.sleep(c.rng.uniform(0.2, 2.0))
        if kind == "ingest":
            c.kill_follower_mid_ingest()
            continue

        def slots() -> dict[int, int]:
            return {w.pid: i for i, w in enumerate(workers) if w.poll() is None}

        def kill(pid: int) -> set[int]:
            sigkill(next(w for w in workers if w.pid == pid))
            return {pid}

        if kind == "mid-trial":
            victim = c.kill_mid_trial(lambda: set(slots()), kill, "worker")
            c.again(plan, kind, victim)
        else:
            victim = c.rng.choice(sorted(slots()))
            c.kill_any(victim, kill, "worker")
        if victim is None:
            continue
        i = next(i for i, w in enumerate(workers) if w.pid == victim)
        time.sleep(c.rng.uniform(0.0, 1.0))
        workers[i] = sb.start(*args, label=f"pg-worker{i}")
        everyone.append(workers[i])
    for w in everyone:
        try:
            w.wait(timeout=max(c.left(), 1))
        except subprocess.TimeoutExpired:
            c.report.problems.append(f"worker {w.pid} still running at the deadline")
            sigkill(w)
        if w.returncode not in (0, -signal.SIGKILL):
            c.report.problems.append(f"a worker exited {w.returncode}: {sb.last_line(w)}")
    c.finish(timeout=max(c.left(), 60))
    return c.report


def chaos_journal(sb: Sandbox, load: Load) -> Report:
    """``workbench run --workers N`` on the journal, with a follower; kills a worker mid-trial,
    the whole run mid-trial, and the follower mid-ingest; re-runs ``run`` until it finishes."""
    journal = str(sb.root / "chaos.optuna.journal")
    c = Chaos(sb, "journal", journal, load, "journal")
    args = ["run", str(sb.space), *c.study_args(), "--store", str(c.store), "--device", "cpu"]
    args += ["--trials", str(load.designs), "--workers", str(load.workers), "--no-progress"]
    run = sb.start(*args, label="journal-run")
    c.alive = lambda: run.poll() is None
    c.follower = c.follow()
    plan = c.plan(["worker", "run", "ingest"])
    while plan and c.left() > 60 and c.alive():
        kind = plan.pop(0)
        time.sleep(c.rng.uniform(0.2, 2.0))
        if kind == "ingest":
            c.kill_follower_mid_ingest()
            continue

        def helpers_now(run: subprocess.Popen[bytes] = run) -> set[int]:
            """The run's workers (and multiprocessing's resource tracker), asked again each time:
            a new run starts its workers seconds after it starts."""
            return children(run.pid)

        if kind == "run":

            def family_now(run: subprocess.Popen[bytes] = run) -> set[int]:
                return children(run.pid) | {run.pid}

            def kill_run(pid: int, run: subprocess.Popen[bytes] = run) -> set[int]:
                family = family_now(run)
                sigkill(run, group=True)
                return family

            victim = c.kill_mid_trial(family_now, kill_run, "whole run")
            if victim is not None:
                run = sb.start(*args, label="journal-run")
            c.again(plan, kind, victim)
            continue

        def kill_helper(pid: int) -> set[int]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            return {pid}

        c.again(plan, kind, c.kill_mid_trial(helpers_now, kill_helper, "run's worker"))
    try:
        run.wait(timeout=max(c.left(), 1))
    except subprocess.TimeoutExpired:
        c.report.problems.append("the run was still going at the deadline")
        sigkill(run, group=True)
    if run.returncode != 0:
        c.report.problems.append(f"the last run exited {run.returncode}: {sb.last_line(run)}")
    c.finish(timeout=max(c.left(), 60))
    return c.report
