"""bf16 matmul weights with float32 masters: which weights, and the update equals AdamW's."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from workbench.config import ModelConfig, TrainConfig, TrialConfig
from workbench.memory.switch import SwitchConfig
from workbench.model import GPT
from workbench.train import make_optimizer, set_lr, uses_master_weights
from workbench.train.master import MasterAdamW, cast_to, low_precision_parameters


def _groups(model: nn.Module) -> list[dict]:
    return [
        {"params": [p for p in model.parameters() if p.dim() >= 2], "weight_decay": 0.1},
        {"params": [p for p in model.parameters() if p.dim() < 2], "weight_decay": 0.0},
    ]


def _switch_gpt() -> GPT:
    cfg = ModelConfig(seq_len=8, d_model=16, n_layers=2, n_heads=2, memory=SwitchConfig(n_experts=4))
    torch.manual_seed(0)
    return GPT(cfg, 32)


def test_selects_matmul_weights_and_leaves_routers_embeddings_and_norms() -> None:
    model = _switch_gpt()
    low = {id(p) for p in low_precision_parameters(model)}
    names = {n for n, p in model.named_parameters() if id(p) in low}
    assert names == {
        f"blocks.{i}.{w}"
        for i in range(2)
        for w in ("attn.qkv.weight", "attn.proj.weight", "memory.experts.w1_EDG", "memory.experts.w2_EGD")
    }


def test_update_matches_clipped_float32_adamw() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.GELU(), nn.Linear(16, 4))
    ref = copy.deepcopy(model)
    opt = MasterAdamW(
        _groups(model), low_precision_parameters(model), lr=1e-2, betas=(0.9, 0.95), max_grad_norm=0.05
    )
    ref_opt = torch.optim.AdamW(_groups(ref), lr=1e-2, betas=(0.9, 0.95))
    assert model[0].weight.dtype == torch.bfloat16 and model[0].bias.dtype == torch.float32
    for step in range(6):
        lr = 1e-2 * (step + 1) / 6  # a schedule reaches both kinds of weight through one tensor
        opt.lr.fill_(lr)
        for group in ref_opt.param_groups:
            group["lr"] = lr
        x = torch.randn(32, 8)
        for net in (model, ref):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                net(x).float().square().mean().backward()
        clipped = torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.05)
        assert clipped > 0.05  # the clipping is exercised
        opt.step()
        ref_opt.step()
        opt.zero_grad()
        ref_opt.zero_grad()
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        master = opt.state[p]["master"] if p in opt.state else p
        torch.testing.assert_close(master, q, rtol=1e-5, atol=1e-6)
        assert torch.equal(p, master.to(p.dtype))


def test_cast_to_leaves_other_parameters() -> None:
    model = _switch_gpt()
    cast_to(model, torch.bfloat16)
    dtypes = {n: p.dtype for n, p in model.named_parameters()}
    assert dtypes["blocks.0.memory.experts.w1_EDG"] == torch.bfloat16
    assert dtypes["blocks.0.memory.router.weight"] == torch.float32
    assert dtypes["wte.weight"] == dtypes["ln_f.weight"] == torch.float32


def test_master_weights_only_on_cuda_under_bf16() -> None:
    on = TrialConfig(train=TrainConfig())
    assert uses_master_weights(on, torch.device("cuda"))
    assert not uses_master_weights(on, torch.device("cpu"))
    assert not uses_master_weights(TrialConfig(train=TrainConfig(dtype="float32")), torch.device("cuda"))
    assert not uses_master_weights(TrialConfig(train=TrainConfig(master_weights=False)), torch.device("cuda"))
    assert type(make_optimizer(_switch_gpt(), on, torch.device("cpu"))) is torch.optim.AdamW


def test_a_scaled_group_keeps_its_rate_in_both_parts() -> None:
    # The value group's rate is lr times its lr_scale, for its bf16 (master) and float32 parts
    # alike, through every step of a schedule.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.GELU(), nn.Linear(16, 4))
    ref = copy.deepcopy(model)

    def groups(net: nn.Module) -> list[dict]:
        return [
            {"params": [net[0].weight], "weight_decay": 0.1},
            {"params": [net[0].bias, net[1].weight, net[1].bias], "weight_decay": 0.0},
            {"params": [net[3].weight, net[3].bias], "weight_decay": 0.0, "lr_scale": 3.0},
        ]

    opt = MasterAdamW(groups(model), low_precision_parameters(model), lr=1e-2, betas=(0.9, 0.95))
    ref_opt = torch.optim.AdamW(groups(ref), lr=1e-2, betas=(0.9, 0.95))
    assert opt.rest is not None
    scaled = [g for g in opt.param_groups + opt.rest.param_groups if g.get("lr_scale") == 3.0]
    assert len(scaled) == 2 and scaled[0]["lr"] is scaled[1]["lr"]  # one tensor for both parts
    for step in range(4):
        lr = 1e-2 * (step + 1) / 4
        set_lr(opt, lr)
        set_lr(ref_opt, lr)
        assert float(scaled[0]["lr"]) == pytest.approx(3 * lr) and float(opt.lr) == pytest.approx(lr)
        x = torch.randn(32, 8)
        for net in (model, ref):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                net(x).float().square().mean().backward()
        opt.step()
        ref_opt.step()
        opt.zero_grad()
        ref_opt.zero_grad()
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        master = opt.state[p]["master"] if p in opt.state else p
        torch.testing.assert_close(master, q, rtol=1e-5, atol=1e-6)
