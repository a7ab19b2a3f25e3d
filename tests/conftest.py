"""Shared fixtures: a tiny text corpus and a tiny space file that train in seconds on CPU."""

from __future__ import annotations

import os
import textwrap
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
