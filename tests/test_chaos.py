"""Workers SIGKILLed at random points lose nothing: bench/chaos.py's scenarios at a small load.

Each test starts real ``workbench`` processes on one study (4 ``workbench worker`` on PostgreSQL;
``workbench run --workers 4`` on the journal), each with a ``workbench ingest --follow``, and
SIGKILLs them on a seeded schedule: a worker mid-trial, a worker at any moment, the whole run
mid-trial, the follower while it copies a finished trial. Killed processes are restarted until
the study reaches its target. Then (bench._chaos_scenario.Chaos.check): every finished trial is in DuckDB
exactly once; every killed trial ended FAIL with ``worker died`` and was trained again; the
designs counted equal the target; nothing is RUNNING or WAITING. Tiny models (a trial trains in
about a second), a 1 s heartbeat and a 5 s grace period keep each test near a minute on 2 cores.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench._chaos_scenario import INGEST_KILL, Load, Report, Sandbox, chaos_journal, chaos_pg

pytestmark = pytest.mark.chaos


def assert_nothing_lost(report: Report, load: Load) -> None:
    where = f"(logs in {report.logs})"
    assert report.problems == [], f"{report.problems} {where}"
    assert report.designs == load.designs, where
    assert not report.states.get("RUNNING") and not report.states.get("WAITING"), report.states
    killed = sum(len(k.trials) for k in report.kills)
    assert killed >= 1, f"no kill landed mid-trial: {report.kills} {where}"
    assert report.died >= killed and report.retried + report.unsampled == report.died, where
    assert any(k.kind == INGEST_KILL for k in report.kills), f"the follower was never killed: {report.kills}"


def test_postgres_workers_killed_at_random_lose_nothing(pg_url: str, tmp_path: Path) -> None:
    load = Load(workers=4, designs=10, kills=4, seed=1, deadline=240)
    report = chaos_pg(Sandbox(tmp_path), pg_url, load)
    assert_nothing_lost(report, load)


def test_a_journal_run_killed_at_random_loses_nothing(tmp_path: Path) -> None:
    load = Load(workers=4, designs=8, kills=3, seed=2, deadline=240)
    report = chaos_journal(Sandbox(tmp_path), load)
    assert_nothing_lost(report, load)
    assert any(k.kind.startswith("whole run") for k in report.kills), report.kills
