"""Definition tests of the expert-style layers on hand-checkable inputs: what each method routes
where, the dispatch implementations agreeing with the loop, and configs rejected by field."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from workbench.errors import ConfigError
from workbench.memory import ForwardContext, LayerContext, config_from_dict
from workbench.memory._gate import TopKGateMoE
from workbench.memory.base_layer import BaseConfig, BaseLayer, balanced_assignment
from workbench.memory.experts import ExpertBank
from workbench.memory.gshard import GShardConfig
from workbench.memory.hash_layer import VARIANTS, HashConfig, HashLayer, hash_table
from workbench.memory.switch import SwitchConfig
from workbench.memory.vanilla import VanillaConfig

D, V, T = 16, 64, 12
CTX = LayerContext(d_model=D, vocab_size=V, seq_len=T, token_counts=1000.0 / np.arange(1, V + 1))


def _ffn(bank: ExpertBank, e: int, x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x @ bank.w1_EDG[e]) @ bank.w2_EGD[e]


def _hash(variant: str, ctx: LayerContext = CTX, **knobs: int) -> HashLayer:
    cfg = HashConfig(variant=variant, expert_width=32, **knobs)
    cfg.validate(ctx)
    layer = cfg.build(ctx)
    assert isinstance(layer, HashLayer)
    return layer


# --- hash ---------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["random", "balanced", "clustered", "dispersed", "multihash"])
def test_hash_sends_a_token_to_the_same_block_whatever_its_context(variant: str) -> None:
    layer = _hash(variant, n_hashes=4 if variant == "multihash" else 1)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, V, (4, T), generator=gen)
    ids[:, 5] = 7
    ids[0, 9] = 7
    route = layer.route(ids)
    assert (route[:, 5] == route[0, 5]).all() and (route[0, 9] == route[0, 5]).all()
    # And through the layer: the same vector at token 7 gets the same output in every context.
    x = torch.randn(4, T, D, generator=gen)
    x[:, 5] = x[0, 5]
    y, aux = layer(x, ForwardContext(token_ids_BT=ids))
    torch.testing.assert_close(y[:, 5], y[:1, 5].expand(4, D))
    assert aux == 0


def test_balanced_hash_evens_the_load_on_a_skewed_frequency_table() -> None:
    vocab, n_experts = 4096, 8
    counts = 1e6 / np.arange(1, vocab + 1)  # Zipf: the top token alone is 11% of the corpus
    ctx = LayerContext(d_model=D, vocab_size=vocab, seq_len=T, token_counts=counts)
    table = hash_table(HashConfig(variant="balanced", n_experts=n_experts), ctx)[:, 0].numpy()
    loads = np.bincount(table, weights=counts, minlength=n_experts)
    assert loads.max() <= 1.1 * loads.mean()
    random_table = hash_table(HashConfig(variant="random", n_experts=n_experts), ctx)[:, 0].numpy()
    random_loads = np.bincount(random_table, weights=counts, minlength=n_experts)
    assert loads.max() / loads.mean() < random_loads.max() / random_loads.mean()


def test_balanced_hash_without_counts_deals_token_ids_round_robin() -> None:
    ctx = LayerContext(d_model=D, vocab_size=V, seq_len=T)
    with pytest.warns(UserWarning, match="without LayerContext.token_counts"):
        table = hash_table(HashConfig(variant="balanced", n_experts=8), ctx)[:, 0]
    assert torch.equal(table, torch.arange(V) % 8)


def test_previous_hash_depends_on_the_previous_token_only() -> None:
    layer = _hash("previous")
    ids = torch.tensor([[3, 5, 9, 9], [4, 5, 2, 9]])
    route = layer.route(ids)[..., 0]
    table = layer.table[:, 0]
    assert torch.equal(route[:, 1:], table[ids[:, :-1]])
    assert (route[:, 0] == table[V]).all()  # no previous token: the reserved id V
    # Position 1 holds token 5 in both rows but follows 3 and 4: routes differ iff the table does.
    assert (route[0, 1] == route[1, 1]) == (table[3] == table[4])
    changed = ids.clone()
    changed[:, 1] = 11  # the current token at 1 does not move position 1, only position 2
    new = layer.route(changed)[..., 0]
    assert torch.equal(new[:, 1], route[:, 1])
    assert torch.equal(new[:, 2], table[torch.tensor([11, 11])])


def test_bigram_hash_combines_current_and_previous_token() -> None:
    layer = _hash("bigram")
    ids = torch.randint(0, V, (3, T), generator=torch.Generator().manual_seed(1))
    route = layer.route(ids)[..., 0]
    prev = torch.cat([torch.full((3, 1), V), ids[:, :-1]], dim=1)
    assert torch.equal(route, (layer.table[ids, 0] + layer.table[prev, 1]) % 8)
    # Token 5 after each of the V tokens (and at the start): the previous token moves it.
    after = layer.route(torch.stack([torch.arange(V), torch.full((V,), 5)], dim=1))[:, 1, 0]
    assert len(set(after.tolist())) > 1
    # Each of the V tokens after token 5: the current token moves it too.
    current = layer.route(torch.stack([torch.full((V,), 5), torch.arange(V)], dim=1))[:, 1, 0]
    assert len(set(current.tolist())) > 1


def test_position_hash_depends_on_position_only() -> None:
    layer = _hash("position")
    a = torch.randint(0, V, (2, T), generator=torch.Generator().manual_seed(2))
    b = torch.randint(0, V, (2, T), generator=torch.Generator().manual_seed(3))
    assert torch.equal(layer.route(a), layer.route(b))
    assert torch.equal(layer.route(a)[0, :, 0], torch.arange(T) % 8)


def test_clustered_groups_similar_tokens_and_dispersed_spreads_them() -> None:
    clustered = hash_table(HashConfig(variant="clustered"), CTX)[:, 0]
    dispersed = hash_table(HashConfig(variant="dispersed"), CTX)[:, 0]
    # Same seed, same features: dispersed deals each cluster's tokens evenly over the experts.
    for c in range(8):
        members = dispersed[clustered == c]
        counts = torch.bincount(members, minlength=8)
        assert counts.max() - counts.min() <= 1
    # The k-means features: tokens sharing a clustered expert are closer than dispersed ones.
    feats = torch.randn(V, 16, generator=torch.Generator().manual_seed(0))

    def spread(table: torch.Tensor) -> float:
        return float(sum(torch.pdist(feats[table == e]).mean() for e in range(8) if (table == e).sum() > 1))

    assert spread(clustered) < 0.8 * spread(dispersed)


def test_cooccurrence_clusters_put_tokens_used_alike_on_one_expert() -> None:
    """With ``features="cooccurrence"`` clustered groups tokens by the corpus features the trial
    passes in ``LayerContext.token_features`` (here two classes of 8 ids); dispersed deals each
    class over the experts."""
    features = np.zeros((V, 2), dtype=np.float32)
    features[:, 0] = 1.0
    features[8:16] = [0.0, 1.0]  # a class of its own
    ctx = LayerContext(d_model=D, vocab_size=V, seq_len=T, token_features=features)
    cfg = HashConfig(n_experts=2, variant="clustered", features="cooccurrence")
    assert cfg.needs_token_features() and not HashConfig(variant="clustered").needs_token_features()
    clustered = hash_table(cfg, ctx)[:, 0]
    assert len(set(clustered[8:16].tolist())) == 1
    assert clustered[8] not in set(clustered[16:].tolist())
    dispersed = hash_table(HashConfig(n_experts=2, variant="dispersed", features="cooccurrence"), ctx)[:, 0]
    assert torch.bincount(dispersed[8:16], minlength=2).tolist() == [4, 4]


def test_cooccurrence_clusters_without_the_corpus_features_say_how_to_get_them() -> None:
    cfg = HashConfig(variant="clustered", features="cooccurrence")
    with pytest.raises(ValueError, match="build_model"):
        cfg.build(CTX)
    with pytest.raises(ConfigError, match="features"):
        HashConfig(variant="clustered", features="glove").validate(CTX)
    with pytest.raises(ConfigError, match="only the clustered and dispersed"):
        HashConfig(variant="random", features="cooccurrence").validate(CTX)


def test_multihash_reads_one_slice_per_hash() -> None:
    torch.manual_seed(0)
    m, width = 4, 32
    multi = _hash("multihash", n_hashes=m)
    single = _hash("random")  # same seed: its table is multihash's first column
    assert torch.equal(single.table[:, 0], multi.table[:, 0])
    # Make every hash agree with the first: the m slices then form exactly one expert.
    multi.table.copy_(multi.table[:, :1].expand(V, m))
    g = width // m
    with torch.no_grad():
        for e, j in itertools.product(range(8), range(m)):
            single.experts.w1_EDG[e, :, j * g : (j + 1) * g] = multi.experts.w1_EDG[e * m + j]
            single.experts.w2_EGD[e, j * g : (j + 1) * g] = multi.experts.w2_EGD[e * m + j]
    x = torch.randn(2, T, D)
    ids = torch.randint(0, V, (2, T))
    ctx = ForwardContext(token_ids_BT=ids)
    torch.testing.assert_close(multi(x, ctx)[0], single(x, ctx)[0])
    assert multi.routing_stats()["load"] == pytest.approx(single.routing_stats()["load"])


def test_every_hash_variant_runs_and_trains() -> None:
    for variant in VARIANTS:
        layer = _hash(variant, n_hashes=2 if variant == "multihash" else 1).train()
        y, aux = layer(torch.randn(2, T, D), ForwardContext(token_ids_BT=torch.randint(0, V, (2, T))))
        (y.sum() + aux).backward()
        assert y.shape == (2, T, D) and layer.experts.w1_EDG.grad is not None, variant


def test_hash_needs_token_ids() -> None:
    with pytest.raises(ValueError, match="token_ids_BT"):
        _hash("random")(torch.randn(1, T, D), ForwardContext())


# --- BASE ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "e"), [(128, 8), (130, 8), (5, 8)])
def test_base_balanced_assignment_is_exactly_balanced(n: int, e: int) -> None:
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(n, e, generator=gen) + 3 * torch.randn(e, generator=gen)  # popular experts
    expert = balanced_assignment(scores)
    expected = n // e + (torch.arange(e) < n % e).long()
    assert torch.equal(torch.bincount(expert, minlength=e), expected)


def test_base_assignment_fills_what_the_proposal_rounds_leave() -> None:
    # Every token ranks the experts the same way: each proposal round fills one expert, so 4
    # rounds leave 4 of 8 experts to the final fill, which must still balance exactly.
    scores = -torch.arange(8.0).expand(64, 8) + 0.01 * torch.randn(64, 8)
    expert = balanced_assignment(scores, sinkhorn_iters=0)
    assert torch.equal(torch.bincount(expert, minlength=8), torch.full((8,), 8))


def test_base_assignment_keeps_the_argmax_when_it_is_already_balanced() -> None:
    scores = torch.tensor([[3.0, 0.0], [0.0, 2.0], [1.0, 0.0], [0.0, 5.0]])
    assert balanced_assignment(scores).tolist() == [0, 1, 0, 1]
    # Everyone prefers expert 0; it keeps the two that lose most by moving.
    scores = torch.tensor([[3.0, 0.0], [3.0, 2.9], [1.0, -4.0], [2.0, 1.5]])
    assert balanced_assignment(scores).tolist() == [0, 1, 0, 1]


def test_base_assignment_is_near_optimal_on_brute_forced_problems() -> None:
    gen = torch.Generator().manual_seed(0)
    gaps = []
    for _ in range(10):
        scores = torch.randn(8, 2, generator=gen) + torch.randn(2, generator=gen)
        totals = [
            float(scores[list(c), 0].sum() + scores[[i for i in range(8) if i not in c], 1].sum())
            for c in itertools.combinations(range(8), 4)
        ]
        ours = float(scores[torch.arange(8), balanced_assignment(scores)].sum())
        gaps.append((max(totals) - ours) / (max(totals) - float(np.mean(totals))))
    assert np.mean(gaps) < 0.05 and max(gaps) < 0.2


def test_base_layer_trains_balanced_and_evaluates_greedy_top1() -> None:
    torch.manual_seed(0)
    cfg = BaseConfig(n_experts=4, expert_width=8)
    layer = cfg.build(CTX)
    assert isinstance(layer, BaseLayer) and not layer.causal_in_training
    with torch.no_grad():  # a skewed router: greedy top-1 would be unbalanced
        layer.router.weight[0] += 1.0
    x = torch.randn(2, 16, D)
    layer.train()(x, ForwardContext())
    assert layer.load_E.tolist() == [8.0, 8.0, 8.0, 8.0]
    layer.reset_routing()
    y, aux = layer.eval()(x, ForwardContext())
    x_ND = x.reshape(-1, D)
    scores = x_ND @ layer.router.weight.T
    best = scores.argmax(1)
    assert torch.equal(layer.load_E, torch.bincount(best, minlength=4).double())
    assert layer.load_E.max() > 8  # greedy, not balanced
    want = torch.stack(
        [torch.sigmoid(scores[i, b]) * _ffn(layer.experts, int(b), x_ND[i]) for i, b in enumerate(best)]
    )
    torch.testing.assert_close(y.reshape(-1, D), want)
    assert aux == 0


def test_base_ablations_route_greedily_in_training_and_weight_the_expert_at_full_scale() -> None:
    """The knobs behind docs/REPLICATION.md's BASE ablation: ``train_routing=greedy`` trains with
    the eval-time top-1 (no balance), ``gate=straight`` reads the expert at weight 1 while the
    router still gets the sigmoid's gradient."""
    torch.manual_seed(0)
    cfg = BaseConfig(n_experts=4, expert_width=8, gate="straight", train_routing="greedy")
    layer = cfg.build(CTX)
    with torch.no_grad():
        layer.router.weight[0] += 1.0
    x = torch.randn(2, 16, D)
    y, _ = layer.train()(x, ForwardContext())
    x_ND = x.reshape(-1, D)
    best = (x_ND @ layer.router.weight.T).argmax(1)
    assert torch.equal(layer.load_E, torch.bincount(best, minlength=4).double())
    assert layer.load_E.max() > 8  # unbalanced: the router's own choice
    want = torch.stack([_ffn(layer.experts, int(b), x_ND[i]) for i, b in enumerate(best)])
    torch.testing.assert_close(y.reshape(-1, D), want.detach(), rtol=1e-5, atol=1e-6)
    y.sum().backward()
    assert layer.router.weight.grad is not None and layer.router.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("field,value", [("gate", "softmax"), ("train_routing", "sinkhorn")])
def test_base_refuses_an_unknown_gate_or_routing_by_name(field: str, value: str) -> None:
    with pytest.raises(ConfigError, match=field):
        BaseConfig(n_experts=4, expert_width=8, **{field: value}).validate(CTX)


# --- learned gates ------------------------------------------------------------------------


def test_gshard_gates_over_the_selected_experts_sum_to_one() -> None:
    torch.manual_seed(0)
    layer = GShardConfig(n_experts=6, k=3, expert_width=8).build(CTX)
    assert isinstance(layer, TopKGateMoE)
    x = torch.randn(3, 5, D)
    probs, choice, gate = layer.route(x.reshape(-1, D))
    torch.testing.assert_close(gate.sum(-1), torch.ones(15))
    assert torch.equal(choice, probs.topk(3, dim=-1).indices)
    torch.testing.assert_close(gate, probs.gather(1, choice) / probs.gather(1, choice).sum(-1, keepdim=True))
    y, _ = layer(x, ForwardContext())
    x_ND = x.reshape(-1, D)
    want = torch.stack(
        [
            sum(gate[i, j] * _ffn(layer.experts, int(choice[i, j]), x_ND[i]) for j in range(3))
            for i in range(15)
        ]
    )
    torch.testing.assert_close(y.reshape(-1, D), want)


def test_switch_gate_is_the_router_probability() -> None:
    torch.manual_seed(0)
    layer = SwitchConfig(n_experts=4, expert_width=8).build(CTX)
    probs, choice, gate = layer.route(torch.randn(10, D))
    assert torch.equal(gate[:, 0], probs.max(-1).values) and torch.equal(choice[:, 0], probs.argmax(-1))


def test_shared_experts_are_always_read() -> None:
    torch.manual_seed(0)
    layer = SwitchConfig(n_experts=4, expert_width=8, n_shared=2).build(CTX)
    x = torch.randn(1, 6, D)
    y, _ = layer(x, ForwardContext())
    x_ND = x.reshape(-1, D)
    _, choice, gate = layer.route(x_ND)
    routed = torch.stack([gate[i, 0] * _ffn(layer.experts, int(choice[i, 0]), x_ND[i]) for i in range(6)])
    shared = _ffn(layer.shared, 0, x_ND) + _ffn(layer.shared, 1, x_ND)
    torch.testing.assert_close(y.reshape(-1, D), routed + shared)


def test_switch_capacity_drops_overflow_and_records_it() -> None:
    torch.manual_seed(0)
    layer = SwitchConfig(n_experts=4, expert_width=8, capacity_factor=1.0).build(CTX).train()
    with torch.no_grad():  # every token prefers expert 0: capacity ceil(1.0 * 16 / 4) = 4
        layer.router.weight.zero_()
        layer.router.weight[0, 0] = 10.0
    x = torch.randn(1, 16, D)
    x[..., 0] = x[..., 0].abs() + 1
    y, aux = layer(x, ForwardContext())
    assert torch.all(y[0, :4].abs().sum(-1) > 0)
    assert torch.all(y[0, 4:] == 0)  # dropped: the token keeps only the residual stream
    stats = layer.routing_stats()
    assert stats["dropped_frac"] == pytest.approx(12 / 16)
    assert stats["load"] == pytest.approx([1.0, 0.0, 0.0, 0.0])
    # The balancing loss sees the router's choice before drops: f = (1, 0, 0, 0).
    probs = layer.route(x.reshape(-1, D))[0]
    torch.testing.assert_close(aux, 0.01 * 4 * probs[:, 0].mean())


def test_gshard_capacity_serves_first_choices_before_second() -> None:
    torch.manual_seed(0)
    layer = GShardConfig(n_experts=4, k=2, expert_width=8, capacity_factor=0.5).build(CTX)
    with torch.no_grad():  # first choice expert 0, second choice expert 1, for every token
        layer.router.weight.zero_()
        layer.router.weight[0, 0], layer.router.weight[1, 0] = 10.0, 5.0
    x = torch.randn(1, 8, D)
    x[..., 0] = x[..., 0].abs() + 1
    layer(x, ForwardContext())
    # capacity ceil(0.5 * 8 * 2 / 4) = 2: two first choices on 0, two second choices on 1.
    assert layer.load_E.tolist() == [2.0, 2.0, 0.0, 0.0]
    assert layer.routing_stats()["dropped_frac"] == pytest.approx(12 / 16)


# --- VanillaM ----------------------------------------------------------------------------


def test_vanilla_reads_the_brute_force_top_k_cells() -> None:
    torch.manual_seed(0)
    layer = VanillaConfig(d_ff=24, k=5).build(CTX)
    x = torch.randn(2, 3, D)
    y, _ = layer(x, ForwardContext())
    for n, x_D in enumerate(x.reshape(-1, D)):
        scores = [float(x_D @ layer.keys.weight[i].detach()) for i in range(24)]
        top = sorted(range(24), key=lambda i: -scores[i])[:5]
        want = sum(F.gelu(torch.tensor(scores[i])) * layer.values_FD[i] for i in top)
        torch.testing.assert_close(y.reshape(-1, D)[n], want, rtol=1e-5, atol=1e-5)


def test_vanilla_reading_every_cell_is_the_dense_ffn() -> None:
    torch.manual_seed(0)
    layer = VanillaConfig(d_ff=24, k=24).build(CTX)
    x = torch.randn(2, 3, D)
    dense = F.gelu(x @ layer.keys.weight.T) @ layer.values_FD
    torch.testing.assert_close(layer(x, ForwardContext())[0], dense, rtol=1e-5, atol=1e-5)


# --- dispatch: the fast paths agree with the loop ------------------------------------------


@pytest.mark.parametrize("impl", ["sorted", "grouped"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_expert_bank_fast_paths_match_the_loop(impl: str, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    bank = ExpertBank(5, D, 16, impl="loop").to(dtype)
    x = torch.randn(40, D, dtype=dtype, requires_grad=True)
    expert = torch.randint(-1, 5, (40, 2))  # -1: dropped reads
    expert[0] = -1
    weight = torch.rand(40, 2)
    y_loop = bank(x, expert, weight)
    (g_loop,) = torch.autograd.grad(y_loop.float().square().sum(), x)
    bank.impl = impl
    y_fast = bank(x, expert, weight)
    (g_fast,) = torch.autograd.grad(y_fast.float().square().sum(), x)
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 2e-2, "atol": 2e-2}
    torch.testing.assert_close(y_fast, y_loop, **tol)
    torch.testing.assert_close(g_fast, g_loop, **tol)
    assert torch.all(y_fast[0] == 0)


@pytest.mark.parametrize(
    "knobs",
    [
        {"kind": "switch", "n_experts": 4, "expert_width": 8, "n_shared": 1},
        {"kind": "switch", "n_experts": 4, "expert_width": 8, "capacity_factor": 0.75},
        {"kind": "gshard", "n_experts": 6, "expert_width": 8, "k": 3, "capacity_factor": 1.0},
        {"kind": "base", "n_experts": 4, "expert_width": 8},
        {"kind": "hash", "n_experts": 4, "expert_width": 8, "variant": "bigram"},
        {"kind": "hash", "n_experts": 4, "expert_width": 8, "variant": "multihash", "n_hashes": 2},
    ],
)
@pytest.mark.parametrize("impl", ["sorted", "grouped"])
def test_layers_give_the_same_output_with_every_dispatch(knobs: dict, impl: str) -> None:
    outputs = {}
    x = torch.randn(2, T, D, generator=torch.Generator().manual_seed(1))
    ids = torch.randint(0, V, (2, T), generator=torch.Generator().manual_seed(2))
    for which in ("loop", impl):
        torch.manual_seed(0)
        layer = config_from_dict({**knobs, "impl": which}).build(CTX).train()
        outputs[which] = layer(x, ForwardContext(token_ids_BT=ids))
    torch.testing.assert_close(outputs[impl][0], outputs["loop"][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(outputs[impl][1], outputs["loop"][1])


@pytest.mark.parametrize("impl", ["loop", "sorted", "grouped"])
def test_unweighted_dispatch_runs_under_bf16_autocast(impl: str) -> None:
    # Hash reads carry no weight, so the bf16 matmul output meets the float32 accumulator as is.
    layer = HashConfig(expert_width=8, impl=impl).build(CTX).train()
    ids = torch.randint(0, V, (2, T))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, _ = layer(torch.randn(2, T, D), ForwardContext(token_ids_BT=ids))
    y.float().sum().backward()
    assert torch.isfinite(y).all() and layer.experts.w1_EDG.grad is not None


# --- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("knobs", "field", "words"),
    [
        ({"kind": "gshard", "n_experts": 4, "k": 5}, "memory.k", "between 1 and memory.n_experts=4"),
        ({"kind": "gshard", "k": 0}, "memory.k", "got 0"),
        ({"kind": "switch", "n_shared": -1}, "memory.n_shared", ">= 0"),
        ({"kind": "switch", "capacity_factor": -1.0}, "memory.capacity_factor", "dropless"),
        ({"kind": "switch", "impl": "fast"}, "memory.impl", "auto|loop|sorted|grouped"),
        ({"kind": "base", "n_experts": 0}, "memory.n_experts", ">= 1"),
        ({"kind": "base", "sinkhorn_iters": -1}, "memory.sinkhorn_iters", ">= 0"),
        ({"kind": "hash", "variant": "cuckoo"}, "memory.variant", "valid: random, balanced, bigram"),
        ({"kind": "hash", "variant": "multihash", "n_hashes": 3}, "memory.n_hashes", "divide"),
        ({"kind": "hash", "n_hashes": 2}, "memory.n_hashes", "only the multihash variant"),
        ({"kind": "hash", "variant": "position", "n_experts": 13}, "memory.n_experts", "seq_len=12"),
        ({"kind": "hash", "expert_width": -8}, "memory.expert_width", ">= 0"),
        ({"kind": "vanilla", "k": 65}, "memory.k", "number of cells (64)"),
        ({"kind": "vanilla", "d_ff": -1}, "memory.d_ff", ">= 0"),
    ],
)
def test_bad_configs_are_rejected_naming_the_field(knobs: dict, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict(knobs).validate(CTX)
    assert str(err.value).startswith(f"{field}:") and words in str(err.value)


def test_a_straight_through_gate_reads_at_full_scale_and_trains_the_router() -> None:
    torch.manual_seed(0)
    prob = SwitchConfig(n_experts=4, expert_width=16, impl="loop").build(CTX)
    straight = SwitchConfig(n_experts=4, expert_width=16, impl="loop", gate="straight").build(CTX)
    straight.load_state_dict(prob.state_dict())
    x = torch.randn(64, D)
    probs, choice, gate = straight.route(x)
    assert torch.allclose(gate, torch.ones_like(gate))  # an expert's output at full scale
    _, _, prob_gate = prob.route(x)
    assert torch.allclose(prob_gate, probs.gather(1, choice))  # Switch: the router probability
    y, _ = straight(x.view(4, 16, D), ForwardContext())
    y.square().sum().backward()
    assert straight.router.weight.grad is not None and straight.router.weight.grad.abs().sum() > 0


def test_gshard_refuses_one_renormalised_gate() -> None:
    with pytest.raises(ConfigError, match="renormalize"):
        GShardConfig(n_experts=4, k=1, renormalize=True).validate(CTX)
    GShardConfig(n_experts=4, k=1, renormalize=False).validate(CTX)
    with pytest.raises(ConfigError, match="gate"):
        SwitchConfig(gate="half").validate(CTX)


# --- avgk ---------------------------------------------------------------------------------


def _avgk(**knobs: object):
    from workbench.memory.avgk import AvgK, AvgKConfig

    cfg = AvgKConfig(d_ff=64, block_size=16, k=1, **knobs)  # type: ignore[arg-type]
    cfg.validate(CTX)
    layer = cfg.build(CTX)
    assert isinstance(layer, AvgK)
    return layer


def test_avgk_unit_block_keys_ignore_a_block_grown_large() -> None:
    torch.manual_seed(0)
    mean, unit = _avgk(), _avgk(block_key="unit")
    unit.load_state_dict(mean.state_dict())
    x = torch.randn(32, D)
    with torch.no_grad():
        for layer in (mean, unit):
            layer.blocks.w1_EDG[2] *= 100.0  # block 2's cells grew, its direction did not change
    # The mean key scores by norm as well as direction, so block 2 wins most tokens; unit keys
    # score by direction only, so the choice is what it was before the block grew.
    assert (mean.select(x) == 2).float().mean() > 0.4
    fresh = _avgk(block_key="unit")
    fresh.load_state_dict(unit.state_dict())
    with torch.no_grad():
        fresh.blocks.w1_EDG[2] /= 100.0
    assert torch.equal(unit.select(x), fresh.select(x))


def test_avgk_balancing_loss_trains_the_keys_and_only_when_asked() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, T, D)
    _, aux_off = _avgk().train()(x, ForwardContext())
    assert aux_off.item() == 0.0
    layer = _avgk(aux_loss_coef=0.01).train()
    _, aux = layer(x, ForwardContext())
    # Switch's loss is coef * E * sum_e f_e P_e, at least coef when the load is balanced.
    assert aux.item() >= 0.01 - 1e-6
    scores = layer.scores(x.reshape(-1, D))
    E, K = scores.shape[1], layer.cfg.k
    picked = scores.topk(K, dim=-1).indices.reshape(-1)
    f_E = torch.bincount(picked, minlength=E).float() / (scores.shape[0] * K)
    expected = 0.01 * E * (f_E * scores.softmax(-1).mean(0)).sum()
    assert aux.item() == pytest.approx(expected.item(), rel=1e-5)
    aux.backward()
    assert layer.blocks.w1_EDG.grad is not None and layer.blocks.w1_EDG.grad.abs().sum() > 0
    _, aux_eval = layer.eval()(x, ForwardContext())
    assert aux_eval.item() == 0.0


def test_avgk_refuses_an_unknown_block_key() -> None:
    with pytest.raises(ConfigError, match="block_key"):
        _avgk(block_key="max")


def test_router_z_loss_is_st_moes_and_only_when_asked() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, T, D)
    plain = SwitchConfig(n_experts=4, expert_width=32, aux_loss_coef=0.0).build(CTX).train()
    _, aux_off = plain(x, ForwardContext())
    assert aux_off.item() == 0.0
    cfg = SwitchConfig(n_experts=4, expert_width=32, aux_loss_coef=0.0, z_loss_coef=1e-3)
    layer = cfg.build(CTX).train()
    layer.load_state_dict(plain.state_dict())
    _, aux = layer(x, ForwardContext())
    logits = x.reshape(-1, D) @ layer.router.weight.t()
    assert torch.allclose(aux, 1e-3 * logits.logsumexp(-1).square().mean(), rtol=1e-5)
    aux.backward()
    assert layer.router.weight.grad is not None and layer.router.weight.grad.abs().sum() > 0
    # The same outputs: the z-loss changes training, not what the layer computes.
    assert torch.equal(plain(x, ForwardContext())[0], layer(x, ForwardContext())[0])
    with pytest.raises(ConfigError, match="z_loss_coef"):
        SwitchConfig(z_loss_coef=-1.0).validate(CTX)
