"""Batches of next-token windows: random for training, fixed for evaluation.

Shape legend: B batch, T sequence length (``seq_len``), N tokens in an array.
A window of ``T + 1`` tokens gives inputs ``x_BT = w[:-1]`` and targets ``y_BT = w[1:]``.
"""

from __future__ import annotations

import numpy as np
import torch

from workbench.config import EVAL_WINDOWS
from workbench.errors import DataError

Batch = tuple[torch.Tensor, torch.Tensor]


def window_starts(n_tokens: int, batch_size: int, seq_len: int, generator: torch.Generator) -> torch.Tensor:
    """``batch_size`` random window starts in ``[0, n_tokens - seq_len - 1]``, drawn from ``generator`` (CPU)."""
    if n_tokens < seq_len + 1:
        raise DataError(
            f"model.seq_len: {seq_len} needs at least {seq_len + 1} tokens, but the split holds {n_tokens}; "
            "give a shorter seq_len or a larger corpus"
        )
    return torch.randint(0, n_tokens - seq_len, (batch_size,), generator=generator)


def random_batch(
    tokens: np.ndarray,
    batch_size: int,
    seq_len: int,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> Batch:
    """Random windows of ``tokens``: ``(x_BT, y_BT)`` int64 on ``device``, deterministic under ``generator``."""
    starts_B = window_starts(len(tokens), batch_size, seq_len, generator).tolist()
    w_BT1 = np.stack([tokens[s : s + seq_len + 1] for s in starts_B]).astype(np.int64)
    return _to_device(torch.from_numpy(w_BT1), device)


def eval_batches(
    val: np.ndarray,
    seq_len: int,
    n_tokens: int,
    batch_size: int,
    device: torch.device | str = "cpu",
    windows: str = "spread",
) -> list[Batch]:
    """Fixed, non-overlapping windows of ``val`` covering about ``n_tokens`` targets.

    Takes ``ceil(n_tokens / seq_len)`` windows, or as many as ``val`` holds; the last batch may
    be smaller than ``batch_size``. ``windows`` says where they lie: ``spread`` (the default)
    evenly over the whole split, ``head`` at its start. A corpus is the concatenation of its
    sources (en-mix: Wikipedia first, then kernel docs, ...), and its validation chunks are taken
    in order, so the head of the split is the first source alone: with ``head``, 65,536 tokens of
    en-mix's 1.88 M are all Wikipedia, 5% of what the model trains on (docs/METHODOLOGY.md,
    "Where the validation windows lie"). ``head`` is what every run stored before 2026-12-03 used.
    """
    if windows not in EVAL_WINDOWS:
        raise DataError(f"train.eval_windows: {windows!r} is not one of {', '.join(EVAL_WINDOWS)}")
    available = (len(val) - 1) // seq_len
    if available < 1:
        raise DataError(
            f"data.val_fraction: the validation split holds {len(val)} tokens, fewer than one window of "
            f"{seq_len + 1}; raise data.val_fraction or lower model.seq_len"
        )
    if n_tokens < 1:
        raise DataError(f"train.eval_tokens: {n_tokens} must be positive")
    n_windows = min(available, -(-n_tokens // seq_len))
    # Window i is val[i*T : (i+1)*T + 1]: neighbours share one token, so each target is scored once.
    all_WT1 = np.lib.stride_tricks.sliding_window_view(val[: available * seq_len + 1], seq_len + 1)[::seq_len]
    # spread: window j of n at floor(j * available / n), evenly spaced, distinct, the first included
    step = available if windows == "spread" else n_windows
    picked = np.arange(n_windows) * step // n_windows
    w_WT1 = torch.from_numpy(np.ascontiguousarray(all_WT1[picked], dtype=np.int64))
    return [_to_device(w_WT1[i : i + batch_size], device) for i in range(0, n_windows, batch_size)]


class DeviceTokens:
    """A token array moved to ``device`` once; batches are sliced there, without host copies.

    :class:`Batches` gathers training windows from it on the device.
    """

    def __init__(self, tokens: np.ndarray, device: torch.device | str) -> None:
        self.device = torch.device(device)
        # int32 halves device memory against int64 and still indexes every uint16 id.
        self.tokens_N = torch.from_numpy(np.asarray(tokens, dtype=np.int32)).to(self.device)

    def __len__(self) -> int:
        return self.tokens_N.numel()


class Batches:
    """The training windows of one run, in order: ``next()`` gives ``(x_BT, y_BT)`` on the device.

    On the CPU each batch is cut from the token array as :func:`random_batch`
    does. On a GPU the tokens sit in device memory and all window starts are drawn up front
    (the same draws, from the same generator, as step-by-step calls) and copied in one
    transfer, so no step waits on a host-to-device copy.
    """

    def __init__(
        self,
        tokens: np.ndarray | DeviceTokens,
        batch_size: int,
        seq_len: int,
        steps: int,
        generator: torch.Generator,
        device: torch.device,
    ) -> None:
        self.batch_size, self.seq_len, self.device = batch_size, seq_len, device
        self.generator = generator
        self.host: np.ndarray | None = None
        if device.type == "cpu" and not isinstance(tokens, DeviceTokens):
            self.host = tokens
            return
        self.tokens = tokens if isinstance(tokens, DeviceTokens) else DeviceTokens(tokens, device)
        starts_SB = window_starts(len(self.tokens), batch_size * steps, seq_len, generator).view(
            steps, batch_size
        )
        if device.type == "cuda":
            starts_SB = starts_SB.pin_memory()
        self.starts_SB = starts_SB.to(device, non_blocking=True)
        self.offsets_T1 = torch.arange(seq_len + 1, device=device)
        self.step = 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.host is not None:
            return random_batch(self.host, self.batch_size, self.seq_len, self.generator, self.device)
        w_BT1 = self.tokens.tokens_N[self.starts_SB[self.step][:, None] + self.offsets_T1].long()
        self.step += 1
        return w_BT1[:, :-1], w_BT1[:, 1:]


def _to_device(w_BT1: torch.Tensor, device: torch.device | str) -> Batch:
    device = torch.device(device)
    if device.type == "cuda":
        w_BT1 = w_BT1.pin_memory().to(device, non_blocking=True)
    return _split(w_BT1)


def _split(w_BT1: torch.Tensor) -> Batch:
    # Contiguous, so callers may .view() them (e.g. flattening targets for the loss).
    return w_BT1[:, :-1].contiguous(), w_BT1[:, 1:].contiguous()
