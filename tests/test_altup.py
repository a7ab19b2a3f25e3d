"""AltUp (workbench/altup.py): K=1 is the plain model, the predict/correct step is the paper's,
Sequence-AltUp computes on anchors only, and the model accounts for the added cost."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from workbench.config import ModelConfig
from workbench.errors import ConfigError
from workbench.memory import ForwardContext, config_from_dict
from workbench.model import GPT, altup, model_cost
from workbench.model.altup import AltUp, SequenceAltUp
from workbench.model.flops import fvcore_flops_per_token

V = 100


def tiny(memory: dict | None = None, **kw) -> ModelConfig:
    mem = config_from_dict(memory or {"kind": "dense", "d_ff": 128})
    return ModelConfig(d_model=32, n_layers=2, n_heads=2, seq_len=16, memory=mem, **kw)


def seeded(cfg: ModelConfig) -> GPT:
    torch.manual_seed(0)
    return GPT(cfg, V)


@pytest.mark.parametrize("variant", ["altup", "recycled", "sequence"])
def test_k1_is_exactly_the_plain_model(variant: str) -> None:
    plain, wrapped = seeded(tiny()), seeded(tiny(altup_k=1, altup_variant=variant))
    assert wrapped.altup is None
    idx = torch.randint(0, V, (2, 16))
    assert torch.equal(plain(idx)[0], wrapped(idx)[0])
    assert model_cost(tiny(altup_k=1, altup_variant=variant), V) == model_cost(tiny(), V)


def test_k1_predict_correct_equals_the_plain_blocks() -> None:
    model = seeded(tiny())
    idx = torch.randint(0, V, (2, 16))
    ctx = ForwardContext(token_ids_BT=idx)
    tok, pos = model.wte(idx), model.wpe(torch.arange(16))
    x = tok + pos
    for block in model.blocks:
        x, _ = block(x, ctx)
    for wrapper in (AltUp(1, 32, 2, recycled=False), SequenceAltUp(1, 2)):
        y, _ = wrapper(tok, pos, model.blocks, ctx)
        torch.testing.assert_close(y, x, rtol=1e-5, atol=1e-6)


class Scale(nn.Module):
    """A stand-in block, x -> c*x, that records the inputs it saw."""

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = c
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, ctx: ForwardContext) -> tuple[torch.Tensor, torch.Tensor]:
        self.seen.append(x)
        return self.c * x, x.new_zeros(())


def test_predict_compute_correct_by_hand() -> None:
    K, D = 2, 3
    altup = AltUp(K, D, n_layers=1, recycled=False)
    p = torch.tensor([[0.5, 0.25], [2.0, -1.0]])
    g = torch.tensor([3.0, -2.0])
    with torch.no_grad():
        altup.predict_LKK[0] = p
        altup.correct_LK[0] = g
    x1, x2 = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([-1.0, 0.0, 4.0])
    tok = torch.cat([x1, x2]).view(1, 1, K * D)
    y, _ = altup(tok, torch.zeros(1, D), [Scale(10.0)], ForwardContext())
    xh1, xh2 = 0.5 * x1 + 0.25 * x2, 2.0 * x1 - 1.0 * x2
    delta = 10.0 * xh1 - xh1  # layer 0 computes on block j* = 0
    expected = ((xh1 + 3.0 * delta) + (xh2 - 2.0 * delta)) / 2
    torch.testing.assert_close(y.view(D), expected)


def test_blocks_take_turns_round_robin() -> None:
    altup = AltUp(3, 2, n_layers=4, recycled=False)
    tok = torch.arange(6.0).view(1, 1, 6)
    blocks = [Scale(1.0) for _ in range(4)]
    altup(tok, torch.zeros(1, 2), blocks, ForwardContext())
    # Identity predict and a no-op block keep the stream: layer l sees block l mod 3.
    for layer, block in enumerate(blocks):
        j = layer % 3
        torch.testing.assert_close(block.seen[0].view(2), tok.view(3, 2)[j])


def test_recycled_replicates_the_embedding() -> None:
    altup = AltUp(2, 4, n_layers=1, recycled=True)
    tok = torch.randn(1, 3, 4)
    block = Scale(1.0)
    y, _ = altup(tok, torch.zeros(3, 4), [block], ForwardContext())
    torch.testing.assert_close(y, tok)


def test_replicated_embedding_starts_plain_altup_as_recycled_altup() -> None:
    """``altup_embed_init="replicated"``: every slice of the wide embedding starts as the first,
    so every block reads the embedding the tied head scores with, and the model's first logits
    are Recycled-AltUp's with that embedding; ``independent`` slices differ."""
    replicated = seeded(tiny(altup_k=2, altup_embed_init="replicated"))
    slices = replicated.wte.weight.view(V, 2, 32)
    torch.testing.assert_close(slices[:, 0], slices[:, 1])
    assert replicated.altup is not None
    torch.testing.assert_close(replicated.altup.head_weight(replicated.wte.weight), slices[:, 0])
    independent = seeded(tiny(altup_k=2)).wte.weight.view(V, 2, 32)
    assert not torch.allclose(independent[:, 0], independent[:, 1])
    recycled = seeded(tiny(altup_k=2, altup_variant="recycled"))
    recycled.load_state_dict({**recycled.state_dict(), "wte.weight": slices[:, 0].clone()})
    idx = torch.randint(0, V, (2, 16), generator=torch.Generator().manual_seed(1))
    for model in (replicated, recycled):
        for name, param in model.named_parameters():  # the same blocks in both
            if name != "wte.weight":
                param.data.copy_(dict(replicated.named_parameters())[name].data)
    torch.testing.assert_close(replicated(idx)[0], recycled(idx)[0])


def test_sequence_altup_computes_on_rotating_anchors() -> None:
    seq = SequenceAltUp(stride=2, n_layers=2)
    with torch.no_grad():
        seq.correct_L.fill_(1.0)
    tok = torch.arange(5.0).view(1, 5, 1)
    blocks = [Scale(2.0), Scale(2.0)]
    ids = torch.arange(5).view(1, 5)
    y, _ = seq(tok, torch.zeros(5, 1), blocks, ForwardContext(token_ids_BT=ids))
    # Layer 0 anchors 0, 2, 4; each position gets its latest anchor's update (2a - a = a).
    assert blocks[0].seen[0].view(-1).tolist() == [0.0, 2.0, 4.0]
    after0 = [0 + 0, 1 + 0, 2 + 2, 3 + 2, 4 + 4]
    # Layer 1 anchors 1, 3; position 0 has no anchor at or before it and passes through.
    assert blocks[1].seen[0].view(-1).tolist() == [after0[1], after0[3]]
    after1 = [
        after0[0],
        after0[1] + after0[1],
        after0[2] + after0[1],
        after0[3] + after0[3],
        after0[4] + after0[3],
    ]
    assert y.view(-1).tolist() == after1


@pytest.mark.parametrize("variant", ["altup", "recycled", "sequence"])
@pytest.mark.parametrize("memory", [{"kind": "dense", "d_ff": 128}, {"kind": "pkm", "n_keys": 8, "k": 4}])
def test_k2_shapes_gradients_causality_and_parameter_count(variant: str, memory: dict) -> None:
    cfg = tiny(memory, altup_k=2, altup_variant=variant)
    model = seeded(cfg)
    idx = torch.randint(0, V, (4, 16))
    logits, aux = model(idx)
    assert logits.shape == (4, 16, V) and torch.isfinite(aux)
    (logits.logsumexp(-1).mean() + aux).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert sum(p.numel() for p in model.parameters()) == model_cost(cfg, V).params_total
    model.eval()
    idx2 = idx.clone()
    idx2[:, 9] = (idx2[:, 9] + 1) % V
    a, b = model(idx)[0], model(idx2)[0]
    torch.testing.assert_close(a[:, :9], b[:, :9])
    assert not torch.allclose(a[:, 9:], b[:, 9:])


def test_altup_golden_costs() -> None:
    """Hand-derived from the plain model of tests/test_flops.py (d=32, L=2, T=16, V=100,
    dense d_ff=128): 59648 FLOPs and 28448 parameters per token.

    altup K=2: + (K-1) V d = 3200 embedding parameters, + L (K^2 + K) = 12 scalars;
      + L * 2 * (K^2 + K) d = 2 * 2 * 6 * 32 = 768 FLOPs (predict 512, correct 256).
    recycled K=2: the same without the embedding.
    sequence K=2: layer 0 runs on positions 0,2,..,14 and layer 1 on 1,3,..,15: 8 each with
      context 8, per anchor 2(4d^2 + 2*8*d) + 4*d*d_ff = 9216 + 16384 = 25600 FLOPs, so
      2 * 8 * 25600 / 16 = 25600 per token; + L * 2 * 3d = 384; + head 2 d V = 6400.
    """
    assert (model_cost(tiny(altup_k=2), V).flops_per_token, model_cost(tiny(altup_k=2), V).params_total) == (
        60416,
        31660,
    )
    recycled = model_cost(tiny(altup_k=2, altup_variant="recycled"), V)
    assert (recycled.flops_per_token, recycled.params_total) == (60416, 28460)
    sequence = model_cost(tiny(altup_k=2, altup_variant="sequence"), V)
    assert (sequence.flops_per_token, sequence.params_total) == (32384, 28454)


@pytest.mark.parametrize("variant", ["altup", "sequence"])
def test_fvcore_sees_the_blocks_but_not_the_elementwise_predict_correct(variant: str) -> None:
    cfg = tiny(altup_k=2, altup_variant=variant)
    expected = model_cost(cfg, V).flops_per_token - altup.flops_per_token(cfg)
    assert fvcore_flops_per_token(seeded(cfg), 16, V) == expected


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"altup_k": 0}, "model.altup_k"),
        ({"altup_k": -2, "altup_variant": "recycled"}, "model.altup_k"),
        ({"altup_k": 2, "altup_variant": "wide"}, "model.altup_variant"),
        ({"altup_k": 17, "altup_variant": "sequence"}, "model.altup_k"),
        ({"altup_k": 2, "altup_embed_init": "shared"}, "model.altup_embed_init"),
    ],
)
def test_bad_altup_configs_name_the_field(kw: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=f"^{field}:"):
        model_cost(tiny(**kw), V)
    with pytest.raises(ConfigError, match=f"^{field}:"):
        GPT(tiny(**kw), V)
