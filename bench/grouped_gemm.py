"""Would a custom grouped GEMM with the gather fused in make the expert layers faster?

The expert layers (workbench/memory/experts.py) gather token rows into expert order, then run
``torch._grouped_mm`` (CUTLASS on Hopper). This probe times, at the shapes of bench (a), each
GEMM of an expert FFN's forward and backward three ways against the cuBLAS GEMM of the dense
FFN of equal FLOPs: CUTLASS grouped with the weights in either layout, the gather followed by
CUTLASS (what the layer does), and a row-grouped Triton GEMM that loads its A rows through the
gather index (no gathered copy), in a few tile configurations. Every Triton result is checked
against ``torch._grouped_mm`` first (relative error printed). It is a measurement, not a code
path of the workbench: the answer is in docs/PERFORMANCE.md.

    python -m bench.grouped_gemm                  # d=768 and 512 with 16 experts, 768 with 64
    python -m bench.grouped_gemm --shapes 256:64  # d:experts pairs
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from bench.common import md_table, save_text, time_cuda

# (BM, BN, BK, warps, stages): the configurations tried; (128, 256, 64, 8, 4) was the fastest on
# the H100 at every shape probed.
CONFIGS = ((128, 256, 64, 8, 4), (128, 256, 64, 8, 3), (128, 128, 64, 8, 4), (256, 128, 64, 8, 3))


def _kernel() -> Any:
    import triton
    import triton.language as tl

    @triton.jit
    def gmm_rows(
        a_ptr, b_ptr, c_ptr, rows_ptr, ends_ptr, N, K,
        s_am, s_ak, s_be, s_bk, s_bn, s_cm, s_cn,
        E: tl.constexpr, E_P2: tl.constexpr, GATHER: tl.constexpr,
        BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
    ):  # fmt: skip
        # c[m] = a[rows[m]] @ b[e(m)], rows sorted by group, group e ending at ends[e]. The M
        # tiles never straddle two groups: each group owns cdiv(rows in it, BM) of them, found
        # from a cumulative sum of the ends (no host read of the group sizes).
        pid = tl.program_id(0)
        n_tiles_n = tl.cdiv(N, BN)
        pid_m = pid // n_tiles_n
        pid_n = pid % n_tiles_n
        e_idx = tl.arange(0, E_P2)
        ends = tl.load(ends_ptr + e_idx, mask=e_idx < E, other=0)
        starts = tl.load(ends_ptr + e_idx - 1, mask=(e_idx > 0) & (e_idx < E), other=0)
        ends = tl.where(e_idx < E, ends, starts)
        tiles = tl.cdiv(ends - starts, BM)
        cum = tl.cumsum(tiles, 0)
        if pid_m >= tl.sum(tiles):
            return
        group = tl.sum((cum <= pid_m).to(tl.int32))
        this = e_idx == group
        first_tile = tl.sum(tl.where(this, cum - tiles, 0))
        offs_m = tl.sum(tl.where(this, starts, 0)) + (pid_m - first_tile) * BM + tl.arange(0, BM)
        mask_m = offs_m < tl.sum(tl.where(this, ends, 0))
        if GATHER:  # noqa: SIM108 (a constexpr branch: Triton compiles only the one taken)
            src = tl.load(rows_ptr + offs_m, mask=mask_m, other=0).to(tl.int64)
        else:
            src = offs_m.to(tl.int64)
        offs_n = pid_n * BN + tl.arange(0, BN)
        offs_k = tl.arange(0, BK)
        a_ptrs = a_ptr + src[:, None] * s_am + offs_k[None, :] * s_ak
        b_ptrs = b_ptr + group.to(tl.int64) * s_be + offs_k[:, None] * s_bk + offs_n[None, :] * s_bn
        acc = tl.zeros((BM, BN), dtype=tl.float32)
        for _ in range(0, tl.cdiv(K, BK)):
            acc = tl.dot(tl.load(a_ptrs, mask=mask_m[:, None], other=0.0), tl.load(b_ptrs), acc)
            a_ptrs += BK * s_ak
            b_ptrs += BK * s_bk
        c_ptrs = c_ptr + offs_m[:, None].to(tl.int64) * s_cm + offs_n[None, :] * s_cn
        tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=mask_m[:, None] & (offs_n[None, :] < N))

    return gmm_rows


def triton_gmm(
    kernel: Any,
    a: torch.Tensor,
    b_EKN: torch.Tensor,
    ends_E: torch.Tensor,
    rows_M: torch.Tensor | None,
    config: tuple[int, int, int, int, int],
    poison: bool = False,
) -> torch.Tensor:
    """``a[rows] @ b[e]`` per group (``a`` itself where ``rows`` is None); K a multiple of BK.

    ``poison`` fills the output with NaN first, so a row the kernel does not write fails the check.
    """
    import triton

    BM, BN, BK, warps, stages = config
    E, K, N = b_EKN.shape
    M = rows_M.numel() if rows_M is not None else a.shape[0]
    if K % BK:
        raise ValueError(f"K={K} is not a multiple of BK={BK}")
    c = torch.empty(M, N, device=a.device, dtype=a.dtype)
    if poison:
        c.fill_(float("nan"))
    grid = ((triton.cdiv(M, BM) + E) * triton.cdiv(N, BN),)
    kernel[grid](
        a, b_EKN, c, rows_M if rows_M is not None else ends_E, ends_E, N, K,
        a.stride(0), a.stride(1), b_EKN.stride(0), b_EKN.stride(1), b_EKN.stride(2), c.stride(0), c.stride(1),
        E=E, E_P2=triton.next_power_of_2(E), GATHER=rows_M is not None,
        BM=BM, BN=BN, BK=BK, num_warps=warps, num_stages=stages,
    )  # fmt: skip
    return c


def _rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.float() - ref.float()).norm() / ref.float().norm())


def probe(d: int, experts: int, tokens: int, kernel: Any) -> list[list[Any]]:
    """Rows (d, experts, GEMM, variant, ms, TFLOP/s, error) at one shape."""
    dev, bf = torch.device("cuda"), torch.bfloat16
    width = 4 * d
    gen = torch.Generator(device="cpu").manual_seed(0)
    expert_M = torch.randint(0, experts, (tokens,), generator=gen).to(dev, torch.int32)
    sorted_M, order_M = torch.sort(expert_M, stable=True)
    ends_E = torch.searchsorted(
        sorted_M, torch.arange(1, experts + 1, device=dev, dtype=torch.int32), out_int32=True
    )
    x = torch.randn(tokens, d, device=dev, dtype=bf)
    xs = x.index_select(0, order_M)
    dh = torch.randn(tokens, width, device=dev, dtype=bf)
    w1 = torch.randn(experts, d, width, device=dev, dtype=bf) / d**0.5  # the layer's [E, D, G]
    w1_k_major = w1.transpose(1, 2).contiguous()
    w_dense = torch.randn(width, d, device=dev, dtype=bf) / d**0.5  # nn.Linear's [out, in]
    flops = 2 * tokens * d * width
    rows: list[list[Any]] = []

    def add(gemm: str, variant: str, fn: Callable[[], Any], err: float | None = None) -> None:
        ms = time_cuda(fn, warmup=3, iters=20, repeats=5)
        rows.append([d, experts, gemm, variant, ms, flops / ms / 1e9, err])

    add("x·W1 (forward)", "cuBLAS dense", lambda: F.linear(x, w_dense))
    add("x·W1 (forward)", "CUTLASS grouped, W1 [E,D,G]", lambda: torch._grouped_mm(xs, w1, offs=ends_E))
    add(
        "x·W1 (forward)",
        "CUTLASS grouped, W1 [E,G,D]ᵀ",
        lambda: torch._grouped_mm(xs, w1_k_major.mT, offs=ends_E),
    )
    add(
        "x·W1 (forward)",
        "gather + CUTLASS grouped (the layer)",
        lambda: torch._grouped_mm(x.index_select(0, order_M), w1, offs=ends_E),
    )
    add("dH·W1ᵀ (data grad)", "cuBLAS dense", lambda: dh @ w_dense)
    add("dH·W1ᵀ (data grad)", "CUTLASS grouped", lambda: torch._grouped_mm(dh, w1.mT, offs=ends_E))
    add("xᵀ·dH (weight grad)", "cuBLAS dense", lambda: dh.t() @ x)
    add("xᵀ·dH (weight grad)", "CUTLASS grouped along K", lambda: torch._grouped_mm(xs.t(), dh, offs=ends_E))
    if kernel is None:
        return rows
    ref_fwd = torch._grouped_mm(xs, w1, offs=ends_E)
    ref_dgrad = torch._grouped_mm(dh, w1.mT, offs=ends_E)
    for cfg in CONFIGS:
        try:
            err = _rel_err(triton_gmm(kernel, x, w1, ends_E, order_M, cfg, poison=True), ref_fwd)
            add(
                "x·W1 (forward)",
                f"Triton, gather fused {cfg}",
                lambda c=cfg: triton_gmm(kernel, x, w1, ends_E, order_M, c),
                err,
            )
            err = _rel_err(triton_gmm(kernel, dh, w1.mT, ends_E, None, cfg, poison=True), ref_dgrad)
            add(
                "dH·W1ᵀ (data grad)",
                f"Triton {cfg}",
                lambda c=cfg: triton_gmm(kernel, dh, w1.mT, ends_E, None, c),
                err,
            )
        except Exception as exc:  # a configuration the compiler rejects (shared memory, say)
            print(f"d={d} E={experts} {cfg}: {type(exc).__name__}: {str(exc)[:200]}", file=sys.stderr)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shapes", default="768:16,512:16,768:64", help="d:experts pairs, comma-separated")
    parser.add_argument("--tokens", type=int, default=32768, help="rows per step (bench (a) uses 32768)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench.grouped_gemm needs a CUDA device", file=sys.stderr)
        return 2
    try:
        kernel = _kernel()
    except ImportError:
        kernel = None
        print("triton is not installed: CUTLASS and cuBLAS rows only", file=sys.stderr)
    rows = []
    for pair in args.shapes.split(","):
        d, experts = (int(v) for v in pair.split(":"))
        rows += probe(d, experts, args.tokens, kernel)
    table = md_table(["d", "experts", "GEMM", "variant", "ms", "TFLOP/s", "rel. error"], rows)
    save_text("grouped_gemm.md", table)
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, {args.tokens} rows")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
