"""The fast dispatch paths compute what the simple ones compute.

ExpertBank's ``grouped`` path (sort, one gather, two grouped matmuls, one combine) against the
``loop`` reference computed in float64, on fresh random inputs with dropped reads, empty
experts and K copies per token, forward and backward; the error is ‖fast − ref‖ / ‖ref‖ with
a bound per compute dtype. Then every expert-style layer with each dispatch, and the
EmbeddingBag reads of the table layers against a plain gather-and-sum. GPU cases (marked
``gpu``) add the trainer's bf16-autocast path and the absence of host synchronisation.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.memory import ForwardContext, LayerContext, config_from_dict
from workbench.memory._lookup import weighted_rows
from workbench.memory.experts import ExpertBank, resolve_impl

# Relative error bounds of the fast path against the float64 loop (METHOD.md: float32 lands far
# under 1e-3, bf16 operands between 1e-3 and 1e-2).
REL = {torch.float32: 1e-5, torch.bfloat16: 2e-2}
CUDA = torch.cuda.is_available()
D, V, T = 32, 64, 16


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    assert torch.isfinite(out).all()
    return float((out.double() - ref.double()).norm() / ref.double().norm().clamp_min(1e-30))


def problem(seed: int, n: int, k: int, n_experts: int, drop: float, device: str = "cpu") -> tuple:
    """Random tokens, expert ids (some dropped, expert 1 always empty) and weights, all fresh per seed."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, D, generator=gen)
    expert = torch.randint(0, n_experts, (n, k), generator=gen)
    expert[expert == 1] = 0  # an expert with no rows
    expert[torch.rand(n, k, generator=gen) < drop] = -1
    weight = torch.rand(n, k, generator=gen)
    return x.to(device), expert.to(device), weight.to(device)


def run_bank(bank: ExpertBank, x: torch.Tensor, expert: torch.Tensor, weight: torch.Tensor | None) -> tuple:
    """Output and gradients (x, weight, w1, w2) of one forward and backward."""
    x = x.detach().requires_grad_(True)
    w = weight.detach().requires_grad_(True) if weight is not None else None
    bank.zero_grad(set_to_none=True)
    y = bank(x, expert, w)
    # A fixed random projection as the loss, so every output element gets its own gradient.
    proj = torch.randn(y.shape, generator=torch.Generator().manual_seed(99)).to(y.device)
    (y.double() * proj.double()).sum().backward()
    grads = [x.grad, w.grad if w is not None else None, bank.w1_EDG.grad, bank.w2_EGD.grad]
    return y.detach(), grads


def reference(bank: ExpertBank, x: torch.Tensor, expert: torch.Tensor, weight: torch.Tensor | None) -> tuple:
    ref = ExpertBank(bank.n_experts, bank.d_model, bank.width, impl="loop").double().to(x.device)
    ref.load_state_dict({k: v.double() for k, v in bank.state_dict().items()})
    return run_bank(ref, x.double(), expert, None if weight is None else weight.double())


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("k", "n_experts", "drop"), [(1, 8, 0.0), (1, 8, 0.2), (2, 5, 0.3), (4, 16, 0.1)])
@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("impl", ["grouped", "sorted"])
def test_fast_dispatch_matches_the_float64_loop_in_float32(
    seed: int, k: int, n_experts: int, drop: float, weighted: bool, impl: str
) -> None:
    x, expert, weight = problem(seed, 48, k, n_experts, drop)
    torch.manual_seed(seed)
    bank = ExpertBank(n_experts, D, 24, impl=impl)
    y, grads = run_bank(bank, x, expert, weight if weighted else None)
    y_ref, grads_ref = reference(bank, x, expert, weight if weighted else None)
    assert y.dtype == torch.float32
    assert rel_err(y, y_ref) < REL[torch.float32]
    for g, g_ref in zip(grads, grads_ref, strict=True):
        assert (g is None) == (g_ref is None)
        if g is not None:
            assert rel_err(g, g_ref) < REL[torch.float32]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(("k", "drop"), [(1, 0.0), (2, 0.25)])
def test_grouped_dispatch_under_bf16_autocast_is_within_bf16_error(seed: int, k: int, drop: float) -> None:
    # The trainer's path: float32 parameters and LayerNorm output, matmuls in bf16 under autocast.
    x, expert, weight = problem(seed, 64, k, 6, drop)
    torch.manual_seed(seed)
    bank = ExpertBank(6, D, 32, impl="grouped")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, grads = run_bank(bank, x, expert, weight)
    y_ref, grads_ref = reference(bank, x, expert, weight)
    assert y.dtype == torch.bfloat16
    assert rel_err(y, y_ref) < REL[torch.bfloat16]
    for g, g_ref in zip(grads, grads_ref, strict=True):
        assert rel_err(g, g_ref) < REL[torch.bfloat16]


def test_dropped_reads_contribute_nothing_and_get_no_gradient() -> None:
    x, expert, weight = problem(0, 32, 2, 4, 0.0)
    expert[:5] = -1  # tokens 0..4 read nothing
    expert[5:10, 1] = -1  # tokens 5..9 read one expert
    bank = ExpertBank(4, D, 16, impl="grouped")
    y, (gx, gw, _, _) = run_bank(bank, x, expert, weight)
    assert torch.all(y[:5] == 0) and torch.all(gx[:5] == 0)
    assert torch.all(gw[:10, 1] == 0) and torch.all(gw[:5] == 0)
    single = bank(x[5:10], expert[5:10, :1], weight[5:10, :1])
    torch.testing.assert_close(y[5:10], single)


def test_grouped_dispatch_is_deterministic() -> None:
    x, expert, weight = problem(3, 64, 2, 8, 0.1)
    bank = ExpertBank(8, D, 16, impl="grouped")
    first = run_bank(bank, x, expert, weight)
    second = run_bank(bank, x, expert, weight)
    assert torch.equal(first[0], second[0])
    for a, b in zip(first[1], second[1], strict=True):
        assert torch.equal(a, b)


def test_auto_picks_the_loop_on_cpu_and_grouped_only_for_bf16_on_cuda() -> None:
    x = torch.zeros(2, D)
    assert resolve_impl("auto", x) == "loop"
    assert resolve_impl("sorted", x) == "sorted"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert resolve_impl("auto", x) == "loop"


LAYERS = [
    {"kind": "switch", "n_experts": 4, "expert_width": 16},
    {"kind": "switch", "n_experts": 4, "expert_width": 16, "capacity_factor": 0.75, "n_shared": 1},
    {"kind": "gshard", "n_experts": 6, "expert_width": 8, "k": 2, "capacity_factor": 1.0},
    {"kind": "base", "n_experts": 4, "expert_width": 16},
    {"kind": "hash", "n_experts": 4, "expert_width": 16, "variant": "random"},
    {"kind": "hash", "n_experts": 4, "expert_width": 16, "variant": "multihash", "n_hashes": 2},
    {"kind": "avgk", "d_ff": 64, "block_size": 8, "k": 3},
    {"kind": "lsh", "n_bits": 3, "n_tables": 2, "consume": "expert", "expert_width": 16},
]


def layer_outputs(
    knobs: dict, impl: str, device: str, autocast: bool
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    ctx = LayerContext(d_model=D, vocab_size=V, seq_len=T, token_counts=1000.0 / np.arange(1, V + 1))
    torch.manual_seed(0)
    layer = config_from_dict({**knobs, "impl": impl}).build(ctx).to(device).train()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, T, D, generator=gen).to(device).requires_grad_(True)
    ids = torch.randint(0, V, (3, T), generator=gen).to(device)
    with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
        y, aux = layer(x, ForwardContext(token_ids_BT=ids))
    proj = torch.randn(y.shape, generator=torch.Generator().manual_seed(2)).to(device)
    ((y.float() * proj).sum() + aux).backward()
    params = [p.grad for p in layer.parameters() if p.grad is not None]
    return y.detach().float(), [x.grad, *params]


@pytest.mark.parametrize("knobs", LAYERS, ids=lambda k: "-".join(str(v) for v in k.values()))
def test_every_expert_style_layer_gives_the_loop_result_with_grouped_dispatch(knobs: dict) -> None:
    y_loop, g_loop = layer_outputs(knobs, "loop", "cpu", autocast=False)
    y_fast, g_fast = layer_outputs(knobs, "grouped", "cpu", autocast=False)
    assert rel_err(y_fast, y_loop) < REL[torch.float32]
    assert len(g_fast) == len(g_loop)
    for g, g_ref in zip(g_fast, g_loop, strict=True):
        assert rel_err(g, g_ref) < 1e-4  # float32 both ways; sums are reassociated


def test_embedding_bag_reads_equal_gather_and_sum() -> None:
    gen = torch.Generator().manual_seed(0)
    table = torch.randn(50, D, generator=gen, dtype=torch.float64, requires_grad=True)
    idx = torch.randint(0, 50, (40, 6), generator=gen)
    w = torch.rand(40, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    fast = weighted_rows(table, idx, w)
    ref = (table[idx] * w.unsqueeze(-1)).sum(1)
    torch.testing.assert_close(fast, ref)
    proj = torch.randn(fast.shape, generator=gen, dtype=torch.float64)
    g_fast = torch.autograd.grad((fast * proj).sum(), (table, w))
    g_ref = torch.autograd.grad((ref * proj).sum(), (table, w))
    for a, b in zip(g_fast, g_ref, strict=True):
        torch.testing.assert_close(a, b)


# --- GPU ------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("k", "drop"), [(1, 0.0), (2, 0.2), (4, 0.1)])
def test_gpu_grouped_dispatch_under_autocast_matches_the_float64_loop(seed: int, k: int, drop: float) -> None:
    x, expert, weight = problem(seed, 1000, k, 8, drop, device="cuda")
    torch.manual_seed(seed)
    bank = ExpertBank(8, D, 64, impl="auto").cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        assert resolve_impl(bank.impl, x) == "grouped"
        y, grads = run_bank(bank, x, expert, weight)
    y_ref, grads_ref = reference(bank, x, expert, weight)
    assert rel_err(y, y_ref) < REL[torch.bfloat16]
    for g, g_ref in zip(grads, grads_ref, strict=True):
        assert rel_err(g, g_ref) < REL[torch.bfloat16]


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("knobs", LAYERS, ids=lambda k: "-".join(str(v) for v in k.values()))
def test_gpu_layers_with_grouped_dispatch_match_the_loop(knobs: dict) -> None:
    y_loop, g_loop = layer_outputs(knobs, "loop", "cuda", autocast=True)
    y_fast, g_fast = layer_outputs(knobs, "grouped", "cuda", autocast=True)
    assert rel_err(y_fast, y_loop) < REL[torch.bfloat16]
    for g, g_ref in zip(g_fast, g_loop, strict=True):
        assert rel_err(g, g_ref) < 3 * REL[torch.bfloat16]


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize(
    "knobs",
    [
        *({**k, "impl": "auto"} for k in LAYERS),
        {"kind": "pkm", "n_keys": 16, "k": 4},
        {"kind": "vanilla", "k": 8},
        {"kind": "softmax_table", "n_entries": 32, "k": 4},
        {"kind": "token_table"},
        {"kind": "lsh", "n_bits": 4},
        # The balancing losses count each block's load: bincount would sync (its size is a max).
        {"kind": "avgk", "block_size": 16, "k": 2, "aux_loss_coef": 0.01},
        {"kind": "switch", "n_experts": 4, "expert_width": 16, "z_loss_coef": 1e-3},
    ],
    ids=lambda k: "-".join(str(v) for v in k.values()),
)
def test_gpu_layer_step_has_no_host_synchronisation(knobs: dict) -> None:
    # What lets the trainer capture a whole step as one CUDA graph.
    ctx = LayerContext(d_model=D, vocab_size=V, seq_len=T, token_counts=np.ones(V))
    layer = config_from_dict(knobs).build(ctx).cuda().train()
    x = torch.randn(4, T, D, device="cuda", requires_grad=True)
    ids = torch.randint(0, V, (4, T), device="cuda")
    layer(x, ForwardContext(token_ids_BT=ids))  # warm-up: lazy initialisation may sync once
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            y, aux = layer(x, ForwardContext(token_ids_BT=ids))
        (y.float().square().mean() + aux).backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_gpu_embedding_bag_reads_match_gather_and_sum() -> None:
    table = torch.randn(500, 64, device="cuda", requires_grad=True)
    idx = torch.randint(0, 500, (300, 8), device="cuda")
    w = torch.rand(300, 8, device="cuda", requires_grad=True)
    fast = weighted_rows(table, idx, w)
    ref = (table.double()[idx] * w.double().unsqueeze(-1)).sum(1)
    assert rel_err(fast, ref) < REL[torch.float32]
    g_fast = torch.autograd.grad(fast.sum(), (table, w))
    g_ref = torch.autograd.grad(ref.sum(), (table, w))
    for a, b in zip(g_fast, g_ref, strict=True):
        assert rel_err(a, b) < REL[torch.float32]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("cols", [50, 128, 256])
def test_gpu_top_k_by_sort_gives_topk(cols: int) -> None:
    from workbench.memory._lookup import top_k

    scores = torch.randn(4096, cols, device="cuda")
    values, indices = top_k(scores, 16)
    ref_values, _ = scores.topk(16, dim=-1)
    assert torch.equal(values, ref_values)
    # Each index points at its value (tied scores may come out in another order than topk's).
    assert torch.equal(scores.gather(-1, indices), values)
    assert (indices.sort(-1).values.diff(dim=-1) > 0).all()
