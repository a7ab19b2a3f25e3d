"""Shared by the benchmarks: timing on the device, peak rates, and the Markdown section writer.

Timing follows /work/.library/device/METHOD.md: warm up first, time with CUDA events around a
batch of repetitions, repeat and take the median.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from workbench.train.syncs import count_host_syncs

if TYPE_CHECKING:
    from workbench.store import Store

# Dense bf16 tensor-core peak of the H100 SXM (datasheet, without sparsity), the denominator of
# MFU as nanoGPT and PaLM define it; other devices fall back to a measured matmul rate.
PEAK_BF16 = {"H100": 989.4e12, "H200": 989.4e12, "A100": 312e12}

BEGIN = "<!-- bench/run.py: begin (generated; edit bench/, not this block) -->"
END = "<!-- bench/run.py: end -->"


def peak_flops(device: torch.device) -> tuple[float, str]:
    """(peak bf16 FLOP/s, where the figure comes from) for ``device``."""
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16.items():
        if key in name:
            return value, f"{key} datasheet dense bf16"
    return measured_matmul_rate(device), "measured 8192^3 bf16 matmul"


def measured_matmul_rate(device: torch.device, n: int = 8192) -> float:
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    ms = time_cuda(lambda: a @ b, warmup=3, iters=10, repeats=3)
    return 2 * n**3 / (ms * 1e-3)


def time_cuda(fn: Callable[[], Any], warmup: int = 3, iters: int = 10, repeats: int = 5) -> float:
    """Median milliseconds per call of ``fn`` (device time between events, after a warm-up)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / iters)
    return statistics.median(times)


def host_syncs(fn: Callable[[], Any]) -> int:
    """How many host synchronisations one call of ``fn`` makes (CUDA sync debug mode, warn)."""
    torch.cuda.synchronize()
    return count_host_syncs(fn)[1]


class Deadline:
    """A section's time budget: ``left()`` seconds remain; benches skip work once it runs out."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


def environment(device: torch.device) -> dict[str, str]:
    import datetime
    import platform

    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "torch": torch.__version__,
        "cuda": str(torch.version.cuda),
        "python": platform.python_version(),
    }


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        if v is None:
            return "—"
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(doc: Path, body: str, begin: str = BEGIN, end: str = END) -> None:
    """Put ``body`` between a benchmark's markers in ``doc`` (created with a title if missing);
    other sections of the file are left as they are."""
    text = doc.read_text(encoding="utf-8") if doc.exists() else f"# {doc.stem.title()}\n"
    block = f"{begin}\n{body.strip()}\n{end}"
    if begin in text and end in text:
        text = re.sub(re.escape(begin) + r".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text, encoding="utf-8")


def store_from_journals(folder: Path, into: Path, prefix: str) -> Store:
    """A store holding every ``<prefix>*.journal`` study of ``folder`` (the optuna journals the GPU
    runs wrote, kept in the repository), ingested into ``into`` and opened read-only. A journal
    of more than a few MB is kept xz-compressed (``<prefix>*.journal.xz``) and read from a
    decompressed copy next to ``into``."""
    import lzma

    from workbench.store import Store
    from workbench.store.ingest import ingest_storage

    journals = sorted(folder.glob(f"{prefix}*.journal"))
    for packed in sorted(folder.glob(f"{prefix}*.journal.xz")):
        plain = into.parent / packed.name.removesuffix(".xz")
        if packed.with_suffix("") in journals:
            raise SystemExit(f"{packed} and its uncompressed copy are both in {folder}: keep one")
        plain.write_bytes(lzma.decompress(packed.read_bytes()))
        journals.append(plain)
    if not journals:
        raise SystemExit(f"no {prefix}*.journal in {folder}: run bench/trust_gpu.sh on a GPU first")
    store = Store.open(into)
    for journal in journals:
        ingest_storage(store, journal)
    return Store.open(into, read_only=True)


def out_dir() -> Path:
    """Where raw results go: ``$OUT`` (the device tool's return folder) or ``/tmp/bench-out``."""
    out = Path(os.environ.get("OUT") or "/tmp/bench-out")
    out.mkdir(parents=True, exist_ok=True)
    return out


def save_json(name: str, data: Any) -> None:
    (out_dir() / name).write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")


def save_text(name: str, text: str) -> None:
    (out_dir() / name).write_text(text, encoding="utf-8")
