"""Shared fixtures: a tiny text corpus and a tiny space file that train in seconds on CPU."""

from __future__ import annotations

import os
import textwrap
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

SENTENCES = [
    "In the beginning was the word, and the word was with the light.",
    "The memory of the model is a table of keys and values, read a few blocks at a time.",
    "And the evening and the morning were the first day of the study.",
    "A router picks the expert; a hash picks it without learning anything at all.",
]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests never write to the user's cache; one cache per session keeps BPE training to once.
    monkeypatch.setenv(
        "WORKBENCH_CACHE", os.environ.get("WORKBENCH_TEST_CACHE") or str(_session_cache(tmp_path_factory))
    )


_CACHE: list[Path] = []


def _session_cache(factory: pytest.TempPathFactory) -> Path:
    if not _CACHE:
        _CACHE.append(factory.mktemp("wb-cache"))
    return _CACHE[0]


@pytest.fixture
def tiny_corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(SENTENCES[i % len(SENTENCES)] for i in range(600)), encoding="utf-8")
    return path


TINY_SPACE = """
from workbench.space import Budget, Categorical, Constraint, Derived, Objective, Space

space = Space(
    "tiny",
    {{
        "data.corpus": {corpus!r},
        "data.tokenizer": "byte",
        "model.seq_len": 32,
        "model.n_layers": 1,
        "model.n_heads": 2,
        "model.d_model": 16,
        "memory.kind": Categorical(["dense", "switch"]),
        "memory.d_ff": Derived("4 * model.d_model", when={{"memory.kind": "dense"}}),
        "memory.n_experts": Categorical([2, 4], when={{"memory.kind": "switch"}}),
        "memory.expert_width": Derived("4 * model.d_model", when={{"memory.kind": "switch"}}),
        "train.batch_size": 8,
        "train.lr": Categorical([3e-3, 1e-2]),
        "train.eval_tokens": 512,
    }},
    constraints=[{constraints}],
    objectives=[Objective("val_ppl"), Objective("flops_per_token")],
    budget=Budget(tokens=4096),
    trials=4,
)
"""


@pytest.fixture
def tiny_space_file(tmp_path: Path, tiny_corpus: Path) -> Path:
    path = tmp_path / "tiny_space.py"
    path.write_text(
        textwrap.dedent(TINY_SPACE.format(corpus=str(tiny_corpus), constraints="")), encoding="utf-8"
    )
    return path


def write_space(tmp_path: Path, corpus: Path, constraints: str = "", name: str = "space.py") -> Path:
    path = tmp_path / name
    path.write_text(TINY_SPACE.format(corpus=str(corpus), constraints=constraints), encoding="utf-8")
    return path


@pytest.fixture
def pg_url() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database on the server ``WORKBENCH_TEST_PG_URL`` names
    (scripts/test.sh starts a throwaway one), dropped after the test. Without a server the test
    skips, unless WORKBENCH_REQUIRE_POSTGRES=1 (set by .ci/run), which makes it fail."""
    server = os.environ.get("WORKBENCH_TEST_PG_URL")
    reason = None
    if not server:
        reason = "no PostgreSQL server: WORKBENCH_TEST_PG_URL is unset (scripts/test.sh starts one)"
    else:
        try:
            import psycopg2
        except ImportError as e:
            reason = f"psycopg2 is not installed ({e}); pip install psycopg2-binary"
    if reason is not None:
        if os.environ.get("WORKBENCH_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{reason}; WORKBENCH_REQUIRE_POSTGRES=1 requires the PostgreSQL tests to run")
        pytest.skip(reason)
    assert server is not None
    name = f"wb_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(server)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name}")
        yield urllib.parse.urlsplit(server)._replace(path=f"/{name}").geturl()
        with admin.cursor() as cur:
            # FORCE: a worker the test killed may leave a connection behind for a moment.
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        admin.close()
