"""Golden per-step training losses of a tiny dense and a tiny switch model on the CPU.

As torchtitan pins its loss curves: a fixed seed, a fixed text and fixed configs train for
:data:`STEPS` steps through :func:`workbench.train.train`, and every step's train loss (plus the
final validation loss) must match ``tests/golden/losses_<name>.json`` to within
:data:`TOLERANCE`. A refactor that claims to keep the numerics (model, memory layers, batching,
learning-rate schedule, optimizer, clipping) is held to it; on a mismatch the failure prints a
per-step table of expected, got and delta.

A deliberate change of numerics (or a new torch whose CPU kernels round differently) rewrites the
files::

    WORKBENCH_UPDATE_GOLDEN=1 python3 -m pytest -q -p no:cacheprovider tests/test_golden_losses.py

and the diff of ``tests/golden/`` goes into the change for review. In that mode the tests write the
files and skip instead of comparing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TypedDict

import numpy as np
import pytest
import torch

from workbench.config import ModelConfig, TrainConfig, TrialConfig
from workbench.data import eval_batches
from workbench.memory import MemoryConfig
from workbench.memory.dense import DenseConfig
from workbench.memory.switch import SwitchConfig
from workbench.model import GPT
from workbench.train import train

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE_ENV = "WORKBENCH_UPDATE_GOLDEN"
# Reruns on one CPU build agree to the last bit and 1 against 2 threads differ by under 1e-6;
# 1e-4 still catches any real change (a 0.1% change of the learning rate moves most steps by more).
TOLERANCE = 1e-4
STEPS = 40  # below 100, so the loop logs the train loss at every step (it logs about 50 points)
SEQ_LEN = 32
BATCH_SIZE = 8

# Genesis 1:1-8 (King James Version, public domain), written here so the goldens never depend on
# a corpus package or a tokenizer: characters are ids in sorted order.
TEXT = (
    "In the beginning God created the heaven and the earth. And the earth was without form, and "
    "void; and darkness was upon the face of the deep. And the Spirit of God moved upon the face "
    "of the waters. And God said, Let there be light: and there was light. And God saw the light, "
    "that it was good: and God divided the light from the darkness. And God called the light Day, "
    "and the darkness he called Night. And the evening and the morning were the first day. And God "
    "said, Let there be a firmament in the midst of the waters, and let it divide the waters from "
    "the waters. And God made the firmament, and divided the waters which were under the "
    "firmament from the waters which were above the firmament: and it was so. And God called the "
    "firmament Heaven. And the evening and the morning were the second day."
)

MEMORIES: dict[str, MemoryConfig] = {
    "dense": DenseConfig(d_ff=64),
    "switch": SwitchConfig(n_experts=4, expert_width=32),
}


class Curve(TypedDict):
    """What a golden file holds: the torch that recorded it, the loss at each step, the final val loss."""

    torch: str
    train_loss: dict[str, float]
    val_loss: float


def text_tokens() -> tuple[np.ndarray, int]:
    """The ids of :data:`TEXT` and the vocabulary size."""
    alphabet = sorted(set(TEXT))
    index = {ch: i for i, ch in enumerate(alphabet)}
    return np.array([index[ch] for ch in TEXT], dtype=np.uint16), len(alphabet)


def golden_config(memory: MemoryConfig) -> TrialConfig:
    model = ModelConfig(seq_len=SEQ_LEN, d_model=32, n_layers=2, n_heads=2, memory=memory)
    knobs = TrainConfig(
        tokens=STEPS * BATCH_SIZE * SEQ_LEN,
        batch_size=BATCH_SIZE,
        lr=1e-2,
        warmup_frac=0.1,
        eval_every=STEPS,  # no evaluation inside the run; the final one is pinned
        eval_tokens=4 * SEQ_LEN,
        dtype="float32",
        seed=0,
    )
    return TrialConfig(model=model, train=knobs)


def measure(cfg: TrialConfig) -> Curve:
    """Train ``cfg`` from its seed on :data:`TEXT`; the per-step train losses and the final val loss."""
    ids, vocab = text_tokens()
    split = len(ids) * 3 // 4
    torch.manual_seed(cfg.train.seed)
    model = GPT(cfg.model, vocab)
    # The goldens were recorded on the split's first windows; they pin the training numerics,
    # and where the eval windows lie is tested in tests/test_data.py.
    val = eval_batches(ids[split:], SEQ_LEN, cfg.train.eval_tokens, BATCH_SIZE, windows="head")
    result = train(cfg, model, ids[:split], val, torch.device("cpu"))
    losses = {str(step): value for step, metric, value in result.curve if metric == "train_loss"}
    assert len(losses) == STEPS, f"the loop logged {len(losses)} train losses, not one per step"
    return {"torch": torch.__version__, "train_loss": losses, "val_loss": result.val_loss}


def diff_table(expected: dict[str, float], got: dict[str, float]) -> tuple[list[str], int]:
    """One line per step (expected, got, delta), flagging the steps beyond the tolerance."""
    lines = [f"{'step':>5} {'expected':>12} {'got':>12} {'delta':>12}"]
    bad = 0
    for step in sorted(expected.keys() | got.keys(), key=int):
        want, have = expected.get(step), got.get(step)
        if want is None or have is None:
            bad += 1
            lines.append(f"{step:>5} {want!s:>12} {have!s:>12} {'missing':>12}  <-")
            continue
        delta = have - want
        off = abs(delta) > TOLERANCE
        bad += off
        lines.append(f"{step:>5} {want:12.6f} {have:12.6f} {delta:+12.2e}" + ("  <-" if off else ""))
    return lines, bad


@pytest.fixture
def one_thread() -> Iterator[None]:
    # One intra-op thread: the same reduction order on any machine's core count, and these tiny
    # matmuls only lose time to thread hand-offs on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", sorted(MEMORIES))
def test_training_losses_match_the_golden_curve(name: str, one_thread: None) -> None:
    path = GOLDEN / f"losses_{name}.json"
    got = measure(golden_config(MEMORIES[name]))
    if os.environ.get(UPDATE_ENV) == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(got, indent=2) + "\n", encoding="utf-8")
        pytest.skip(f"{UPDATE_ENV}=1: rewrote {path.name}")
    assert path.exists(), f"{path} is missing; create it with {UPDATE_ENV}=1"
    golden: Curve = json.loads(path.read_text(encoding="utf-8"))
    lines, bad = diff_table(golden["train_loss"], got["train_loss"])
    val_delta = got["val_loss"] - golden["val_loss"]
    val_off = abs(val_delta) > TOLERANCE
    bad += val_off
    lines.append(
        f"{'val':>5} {golden['val_loss']:12.6f} {got['val_loss']:12.6f} {val_delta:+12.2e}"
        + ("  <-" if val_off else "")
    )
    assert not bad, "\n".join(
        [
            f"{name}: {bad} losses differ from {path.name} by more than {TOLERANCE} "
            f"(golden recorded with torch {golden['torch']}, this is torch {got['torch']}); "
            f"if the change is deliberate, rerun with {UPDATE_ENV}=1",
            *lines,
        ]
    )
