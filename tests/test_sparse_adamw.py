"""The lazy AdamW of memory value tables: read rows get torch's AdamW update, unread rows keep
their weights and moments, and the trainer uses it for the value group with sparse_values."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from workbench.config import ModelConfig, TrainConfig, TrialConfig
from workbench.errors import ConfigError
from workbench.memory.vanilla import VanillaConfig
from workbench.model import GPT
from workbench.train import SparseRowAdamW, make_optimizer, model_loss

KNOBS = {"lr": 1e-2, "betas": (0.9, 0.95), "weight_decay": 0.1}


def _grad(rows: list[int], shape: tuple[int, int] = (10, 6)) -> torch.Tensor:
    g = torch.zeros(shape)
    g[rows] = torch.randn(len(rows), shape[1])
    return g


def _pair() -> tuple[nn.Parameter, SparseRowAdamW, nn.Parameter, torch.optim.AdamW]:
    table = torch.randn(10, 6)
    lazy, dense = nn.Parameter(table.clone()), nn.Parameter(table.clone())
    lazy_opt = SparseRowAdamW([{"params": [lazy]}], lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1)
    dense_opt = torch.optim.AdamW([dense], **KNOBS, foreach=False)  # type: ignore[arg-type]
    return lazy, lazy_opt, dense, dense_opt


def test_read_rows_match_torch_adamw_and_unread_rows_stay() -> None:
    torch.manual_seed(0)
    lazy, lazy_opt, dense, dense_opt = _pair()
    before = lazy.detach().clone()
    rows, unread = [1, 4, 7], [0, 2, 3, 5, 6, 8, 9]
    lazy.grad = _grad(rows)
    dense.grad = lazy.grad.clone()
    lazy_opt.step()
    dense_opt.step()
    lazy_state, dense_state = lazy_opt.state[lazy], dense_opt.state[dense]
    assert torch.equal(lazy[rows], dense[rows])
    for key in ("exp_avg", "exp_avg_sq"):
        assert torch.equal(lazy_state[key][rows], dense_state[key][rows])
        assert not lazy_state[key][unread].any()
    assert torch.equal(lazy[unread], before[unread])
    assert not torch.equal(dense[unread], before[unread])  # dense AdamW decays them


def _moments(opt: torch.optim.Optimizer, p: nn.Parameter) -> list[torch.Tensor]:
    state = opt.state[p]
    return [state["exp_avg"], state["exp_avg_sq"]] if state else [torch.zeros_like(p)] * 2


def test_several_steps_follow_adamw_with_unread_rows_frozen() -> None:
    # Reference: torch's dense AdamW on the whole table, after which the unread rows' weights
    # and moments are put back; the global step count (bias correction) advances every step.
    torch.manual_seed(1)
    lazy, lazy_opt, dense, dense_opt = _pair()
    for step, rows in enumerate([[0, 3], [3, 5, 9], [], [0, 9], [1, 2, 3, 4, 5, 6, 7, 8]]):
        grad = _grad(rows)
        lazy.grad, dense.grad = grad.clone(), grad.clone()
        unread = [r for r in range(10) if r not in rows]
        kept = [t[unread].clone() for t in [dense.detach(), *_moments(dense_opt, dense)]]
        lazy_opt.step()
        dense_opt.step()
        with torch.no_grad():
            for tensor, old in zip([dense, *_moments(dense_opt, dense)], kept, strict=True):
                tensor[unread] = old
        assert torch.equal(lazy, dense)
        for mine, torchs in zip(_moments(lazy_opt, lazy), _moments(dense_opt, dense), strict=True):
            assert torch.equal(mine, torchs)
        assert lazy_opt.state[lazy]["step"] == int(dense_opt.state[dense]["step"]) == step + 1


def test_only_two_dimensional_tables() -> None:
    with pytest.raises(ValueError, match="2-D"):
        SparseRowAdamW([{"params": [nn.Parameter(torch.zeros(4))]}], lr=1e-3)


def _vanilla(**train: object) -> TrialConfig:
    model = ModelConfig(seq_len=16, d_model=16, n_layers=1, n_heads=2, memory=VanillaConfig(d_ff=64, k=2))
    return TrialConfig(model=model, train=TrainConfig(lr=1e-2, **train))  # type: ignore[arg-type]


def test_the_trainer_updates_only_the_read_value_rows() -> None:
    torch.manual_seed(0)
    cfg = _vanilla(sparse_values=True)
    model = GPT(cfg.model, 64)
    opt = make_optimizer(model, cfg, torch.device("cpu"))
    assert isinstance(opt, SparseRowAdamW) and isinstance(opt.rest, torch.optim.AdamW)
    values = model.blocks[0].memory.values_FD
    assert [p for g in opt.param_groups for p in g["params"]] == [values]
    assert opt.param_groups[0]["weight_decay"] == 0.0
    grouped = [id(p) for g in opt.param_groups + opt.rest.param_groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())
    x = torch.randint(0, 64, (1, 16))
    loss, aux = model_loss(model, x, x)
    (loss + aux).backward()
    assert values.grad is not None
    unread = ~values.grad.ne(0).any(dim=1)
    assert 0 < int(unread.sum()) < values.shape[0]
    before = values.detach().clone()
    opt.step()
    assert torch.equal(values[unread], before[unread])
    assert not torch.equal(values[~unread], before[~unread])


def test_sparse_values_refuse_master_weights() -> None:
    cfg = _vanilla(sparse_values=True)
    with pytest.raises(ConfigError, match="master_weights"):
        make_optimizer(GPT(cfg.model, 64), cfg, torch.device("cuda"))
