"""Definition tests of the table layers (pkm, avgk, lsh, token_table, softmax_table) on
hand-checkable inputs. The shared contract (shape, causality, gradients, ...) is in
tests/test_memory_conformance.py; this file checks that each layer computes what its paper
defines, and which tables each lists for the trainer's value group (vanilla's too); the shared
reads of table rows (the dense read and EmbeddingBag agree, reads in the autocast dtype, top-k
by sort)."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from workbench.errors import ConfigError
from workbench.memory import ForwardContext, LayerContext, config_from_dict
from workbench.memory._lookup import table_rows, top_k, weighted_rows
from workbench.memory.avgk import AvgK
from workbench.memory.dense import DenseFFN
from workbench.memory.lsh import LSHMemory
from workbench.memory.pkm import ProductKeyMemory
from workbench.memory.softmax_table import SoftmaxTable
from workbench.memory.token_table import TokenTable

CTX = LayerContext(d_model=16, vocab_size=20, seq_len=8)


def build(**knobs):
    cfg = config_from_dict(knobs)
    cfg.validate(CTX)
    torch.manual_seed(0)
    return cfg.build(CTX)


def run(layer, x_BTD, ids_BT=None):
    return layer(x_BTD, ForwardContext(token_ids_BT=ids_BT))[0]


# --- pkm ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_keys", "k", "query_norm"), [(6, 4, "layernorm"), (6, 6, "none"), (16, 8, "layernorm")]
)
def test_pkm_topk_equals_brute_force_over_all_products(n_keys: int, k: int, query_norm: str) -> None:
    layer = build(kind="pkm", n_keys=n_keys, n_heads=2, k=k, d_key=8, query_norm=query_norm)
    assert isinstance(layer, ProductKeyMemory)
    x_ND = torch.randn(200, 16)
    score_NHK, slot_NHK = layer.select(x_ND)

    q = layer.query(x_ND)
    if layer.norm is not None:
        q = layer.norm(q)
    q_NH2Q = q.view(200, 2, 2, 4)
    for h in range(2):
        # All n_keys**2 product scores, slot i*n_keys + j.
        s1 = q_NH2Q[:, h, 0] @ layer.keys_HSCQ[h, 0].T
        s2 = q_NH2Q[:, h, 1] @ layer.keys_HSCQ[h, 1].T
        full_NC2 = (s1.unsqueeze(2) + s2.unsqueeze(1)).flatten(1)
        top, idx = full_NC2.topk(k, dim=-1)
        torch.testing.assert_close(score_NHK[:, h], top)
        assert torch.equal(slot_NHK[:, h], idx)


def test_pkm_reads_softmax_weighted_values_summed_over_heads() -> None:
    layer = build(kind="pkm", n_keys=4, n_heads=3, k=2, d_key=8)
    x = torch.randn(2, 5, 16)
    score_NHK, slot_NHK = layer.select(x.view(10, 16))
    w = score_NHK.softmax(-1)
    expected = (w.unsqueeze(-1) * layer.values_VD[slot_NHK]).sum(dim=(1, 2))
    torch.testing.assert_close(run(layer, x).view(10, 16), expected)
    assert layer.memory_value_parameters() == [layer.values_VD]


def test_pkm_add_mode_is_dense_ffn_plus_memory() -> None:
    expert = build(kind="pkm", n_keys=4, k=2, d_key=8, consume="expert")
    added = build(kind="pkm", n_keys=4, k=2, d_key=8, consume="add", d_ff=24)
    x = torch.randn(1, 6, 16)
    ffn = added.consume.down(F.gelu(added.consume.up(x)))
    torch.testing.assert_close(run(added, x), ffn + run(expert, x))


def test_pkm_batchnorm_is_flagged_non_causal_in_training_and_causal_in_eval() -> None:
    layer = build(kind="pkm", n_keys=4, k=2, d_key=8, query_norm="batchnorm")
    assert not layer.causal_in_training
    layer.train()
    run(layer, torch.randn(4, 8, 16))  # updates the running statistics
    layer.eval()
    x = torch.randn(2, 8, 16)
    x2 = x.clone()
    x2[:, 5:] += 1.0
    torch.testing.assert_close(run(layer, x2)[:, :5], run(layer, x)[:, :5])


# --- avgk --------------------------------------------------------------------------------


def hand_made_avgk() -> AvgK:
    """d=4, d_ff=8, g=2: block b's two cell keys are u_b + v_b and u_b - v_b, so its mean key is u_b."""
    ctx = LayerContext(d_model=4, vocab_size=20, seq_len=8)
    cfg = config_from_dict({"kind": "avgk", "d_ff": 8, "block_size": 2, "k": 1})
    cfg.validate(ctx)
    layer = cfg.build(ctx)
    assert isinstance(layer, AvgK)
    u = torch.eye(4) * torch.tensor([1.0, 2.0, 3.0, 4.0]).unsqueeze(1)
    v = torch.tensor(
        [[0.0, 5.0, 0.0, 0.0], [0.0, 0.0, -5.0, 0.0], [5.0, 0.0, 0.0, 0.0], [0.0, 5.0, 5.0, 0.0]]
    )
    with torch.no_grad():
        layer.blocks.w1_EDG.copy_(torch.stack([u + v, u - v], dim=2))
    return layer


def test_avgk_block_key_is_mean_of_cell_keys_and_argmax_is_selected() -> None:
    layer = hand_made_avgk()
    torch.testing.assert_close(layer.block_keys(), torch.eye(4) * torch.tensor([[1.0], [2.0], [3.0], [4.0]]))
    # Scores x . mean_key_b = b-th coordinate times (b+1).
    x = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.1], [5.0, 2.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    assert layer.select(x).squeeze(1).tolist() == [0, 2, 0, 3]


def test_avgk_output_is_the_selected_blocks_cells_with_their_own_activations() -> None:
    layer = hand_made_avgk()
    x = torch.tensor([[0.0, 0.0, 1.0, 0.1]])  # block 2
    w1, w2 = layer.blocks.w1_EDG[2], layer.blocks.w2_EGD[2]
    expected = sum(F.gelu(x @ w1[:, i]).unsqueeze(1) * w2[i] for i in range(2))
    torch.testing.assert_close(run(layer, x.view(1, 1, 4)).view(1, 4), expected)


def test_avgk_reading_every_block_is_the_dense_ffn() -> None:
    layer = build(kind="avgk", d_ff=32, block_size=8, k=4)
    dense = DenseFFN(16, 32)
    with torch.no_grad():
        dense.up.weight.copy_(layer.blocks.w1_EDG.permute(0, 2, 1).reshape(32, 16))
        dense.down.weight.copy_(layer.blocks.w2_EGD.reshape(32, 16).T)
    x = torch.randn(2, 8, 16)
    torch.testing.assert_close(run(layer, x), run(dense, x))


# --- lsh ---------------------------------------------------------------------------------


def test_lsh_buckets_are_sign_patterns_of_the_hyperplanes() -> None:
    layer = build(kind="lsh", n_bits=3, n_tables=2)
    assert isinstance(layer, LSHMemory)
    x = torch.randn(50, 16)
    buckets = layer.buckets(x)
    planes = layer.planes_PD.view(2, 3, 16)
    for n, t in itertools.product(range(50), range(2)):
        bits = [int(float(planes[t, i] @ x[n]) > 0) for i in range(3)]
        assert int(buckets[n, t]) == bits[0] + 2 * bits[1] + 4 * bits[2]
    # Same vector (and any positive rescaling of it), same bucket.
    assert torch.equal(layer.buckets(torch.cat([x[:1], x[:1], 3 * x[:1]])), buckets[:1].expand(3, 2))


def test_lsh_add_mode_reads_one_row_per_table() -> None:
    layer = build(kind="lsh", n_bits=3, n_tables=2, consume="add", d_ff=24)
    x = torch.randn(1, 10, 16)
    b = layer.buckets(x.view(10, 16))
    rows = layer.table_RD[b[:, 0]] + layer.table_RD[8 + b[:, 1]]
    ffn = layer.consume.down(F.gelu(layer.consume.up(x.view(10, 16))))
    torch.testing.assert_close(run(layer, x).view(10, 16), ffn + rows)


def test_lsh_expert_mode_runs_one_bucket_expert_per_table() -> None:
    layer = build(kind="lsh", n_bits=2, n_tables=2, consume="expert", expert_width=8)
    x = torch.randn(6, 16)
    b = layer.buckets(x)
    bank = layer.experts
    expected = sum(
        (F.gelu(x.unsqueeze(1) @ bank.w1_EDG[b[:, t]]) @ bank.w2_EGD[b[:, t]]).squeeze(1) for t in range(2)
    )
    torch.testing.assert_close(run(layer, x.view(1, 6, 16)).view(6, 16), expected)


# --- token_table -------------------------------------------------------------------------


def test_token_table_expert_output_depends_only_on_the_token_id() -> None:
    layer = build(kind="token_table", consume="expert")
    assert isinstance(layer, TokenTable)
    ids = torch.tensor([[3, 7, 3, 0, 19, 7]])
    y1 = run(layer, torch.randn(1, 6, 16), ids)
    y2 = run(layer, torch.randn(1, 6, 16), ids)
    assert torch.equal(y1, y2)
    torch.testing.assert_close(y1[0], layer.table_VD[ids[0]])
    assert torch.equal(y1[0, 0], y1[0, 2]) and not torch.equal(y1[0, 0], y1[0, 1])


def test_token_table_concat_feeds_x_and_row_to_the_ffn() -> None:
    layer = build(kind="token_table", consume="concat", d_ff=24)
    x, ids = torch.randn(1, 4, 16), torch.tensor([[1, 2, 3, 4]])
    h = torch.cat([x, layer.table_VD[ids]], dim=-1)
    torch.testing.assert_close(run(layer, x, ids), layer.consume.down(F.gelu(layer.consume.up(h))))
    assert layer.consume.up.in_features == 32


def test_token_table_needs_token_ids() -> None:
    with pytest.raises(ValueError, match="token ids"):
        run(build(kind="token_table"), torch.randn(1, 4, 16))


# --- softmax_table -----------------------------------------------------------------------


def test_softmax_table_weights_sum_to_one_over_the_top_k_entries() -> None:
    layer = build(kind="softmax_table", n_entries=12, k=3, consume="expert")
    assert isinstance(layer, SoftmaxTable)
    x = torch.randn(20, 16)
    w, entry = layer.select(x)
    torch.testing.assert_close(w.sum(-1), torch.ones(20))
    assert (w > 0).all()
    scores = x @ layer.keys_ED.T
    assert torch.equal(entry, scores.topk(3, dim=-1).indices)
    # Equal to the full softmax renormalised over the selected entries.
    full = scores.softmax(-1).gather(1, entry)
    torch.testing.assert_close(w, full / full.sum(-1, keepdim=True))
    expected = (w.unsqueeze(-1) * layer.values_ED[entry]).sum(1)
    torch.testing.assert_close(run(layer, x.view(1, 20, 16)).view(20, 16), expected)


# --- configs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("knobs", "field"),
    [
        ({"kind": "avgk", "d_ff": 64, "block_size": 24}, "memory.block_size"),
        ({"kind": "avgk", "d_ff": 64, "block_size": 16, "k": 5}, "memory.k"),
        ({"kind": "avgk", "consume": "add"}, "memory.consume"),
        ({"kind": "pkm", "n_keys": 4, "k": 5}, "memory.k"),
        ({"kind": "pkm", "d_key": 7}, "memory.d_key"),
        ({"kind": "pkm", "query_norm": "rmsnorm"}, "memory.query_norm"),
        ({"kind": "pkm", "consume": "stack"}, "memory.consume"),
        ({"kind": "lsh", "consume": "replace"}, "memory.consume"),
        ({"kind": "lsh", "n_bits": 0}, "memory.n_bits"),
        ({"kind": "token_table", "consume": "gate"}, "memory.consume"),
        ({"kind": "token_table", "d_ff": -1}, "memory.d_ff"),
        ({"kind": "softmax_table", "n_entries": 4, "k": 8}, "memory.k"),
        ({"kind": "softmax_table", "consume": "sum"}, "memory.consume"),
    ],
)
def test_bad_configs_name_the_field(knobs: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=f"^{field}:"):
        config_from_dict(knobs).validate(CTX)


@pytest.mark.parametrize(
    ("knobs", "table"),
    [
        ({"kind": "pkm", "n_keys": 4, "k": 2, "d_key": 8}, "values_VD"),
        ({"kind": "vanilla", "d_ff": 24, "k": 4}, "values_FD"),
        ({"kind": "softmax_table", "n_entries": 8, "k": 2}, "values_ED"),
        ({"kind": "token_table"}, "table_VD"),
        ({"kind": "lsh", "n_bits": 3}, "table_RD"),
        ({"kind": "lsh", "n_bits": 3, "consume": "expert", "expert_width": 8}, None),
    ],
)
def test_value_tables_are_listed_for_the_trainers_value_group(knobs: dict, table: str | None) -> None:
    # The trainer gives these their own AdamW group (no weight decay, scaled lr): only tables
    # read row by row, never the keys or an FFN.
    layer = build(**knobs)
    expected = [getattr(layer, table)] if table else []
    assert layer.memory_value_parameters() == expected
    assert all(p.dim() == 2 for p in expected)


# --- reading table rows (_lookup) --------------------------------------------------------


@pytest.mark.parametrize("weighted", [True, False])
def test_the_dense_read_equals_embedding_bag_forward_and_backward(weighted: bool) -> None:
    # The CUDA read of small tables (S @ values, S scattered from the read weights) against
    # EmbeddingBag, in float64; a token reads one row twice (two PKM heads on one slot).
    gen = torch.Generator().manual_seed(0)
    values = torch.randn(12, 5, dtype=torch.float64, generator=gen)
    idx = torch.randint(0, 12, (30, 4), generator=gen)
    idx[0, 1] = idx[0, 0]
    w = torch.rand(30, 4, dtype=torch.float64, generator=gen) if weighted else None
    gy = torch.randn(30, 5, dtype=torch.float64, generator=gen)
    results = []
    for dense in (False, True):
        v = values.clone().requires_grad_()
        wd = None if w is None else w.clone().requires_grad_()
        y = weighted_rows(v, idx, wd, dense=dense)
        y.backward(gy)
        results.append([y, v.grad] + ([] if wd is None else [wd.grad]))
    for got, want in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(got, want)


def test_tables_are_read_in_the_autocast_dtype() -> None:
    # Under autocast a float32 table is read as its bf16 rounding, as autocast reads a matmul
    # weight, so a bf16 table with a float32 master (train.master_weights) reads the same bits.
    table = torch.randn(10, 8)
    idx = torch.tensor([[1, 3], [3, 9]])
    w = torch.tensor([[0.25, 0.75], [1.0, 0.5]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = weighted_rows(table, idx, w)
        rows = table_rows(table, idx)
    assert y.dtype == rows.dtype == torch.bfloat16
    assert torch.equal(y, weighted_rows(table.to(torch.bfloat16), idx, w))
    assert torch.equal(rows, table.to(torch.bfloat16)[idx])
    assert weighted_rows(table, idx, w).dtype == torch.float32  # no autocast: as stored


def test_top_k_by_sort_equals_topk_with_its_gradient() -> None:
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(3, 50, 40, generator=gen)
    gy = torch.randn(3, 50, 7, generator=gen)
    out = []
    for by_sort in (False, True):
        s = scores.clone().requires_grad_()
        values, idx = top_k(s, 7, by_sort=by_sort)
        values.backward(gy)
        out.append((values, idx, s.grad))
    for got, want in zip(out[1], out[0], strict=True):
        assert torch.equal(got, want)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_reads_agree_under_autocast_and_vanilla_reads_densely() -> None:
    # The trainer's CUDA path: bf16 autocast, a bf16 table (master weights). The dense read sums
    # bf16 products; the weighted EmbeddingBag reads the rows in float32 (CUDA has no bf16
    # backward for per_sample_weights), so the two agree to bf16's precision.
    gen = torch.Generator(device="cuda").manual_seed(0)
    values = torch.randn(3072, 64, device="cuda", generator=gen).to(torch.bfloat16)
    idx = torch.rand(512, 3072, device="cuda", generator=gen).topk(64, dim=-1).indices
    w = torch.rand(512, 64, device="cuda", generator=gen)
    gy = torch.randn(512, 64, device="cuda", generator=gen)
    out = []
    for dense in (False, True):
        v, wd = values.clone().requires_grad_(), w.clone().requires_grad_()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            y = weighted_rows(v, idx, wd, dense=dense)
        y.float().backward(gy)
        out.append([y.float(), v.grad.float(), wd.grad.float()])
    for got, want in zip(out[1], out[0], strict=True):  # bf16 keeps 8 bits: 0.4% per rounding
        assert ((got - want).norm() / want.norm()).item() < 1e-2
    layer = build(kind="vanilla", d_ff=64, k=8).cuda()
    read = []
    for ratio in (0, 2**40):  # EmbeddingBag, then the dense read (the default's for 64 cells, k = 8)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("workbench.memory._lookup.DENSE_READ_RATIO", ratio)
            read.append(run(layer, torch.randn(2, 8, 16, device="cuda", generator=gen.manual_seed(1))))
    assert ((read[1] - read[0]).norm() / read[0].norm()).item() < 1e-2
