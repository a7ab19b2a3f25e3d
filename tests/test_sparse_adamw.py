"""The lazy AdamW of memory value tables: read rows get torch's AdamW update, unread rows keep
their weights and moments (bit for bit), in the float32 optimizer and in the master-weight
kernel alike; the trainer uses it for the value group with sparse_values, and every table
layer learns with it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from workbench.config import ModelConfig, TrainConfig, TrialConfig
from workbench.memory import MemoryConfig
from workbench.memory.lsh import LSHConfig
from workbench.memory.pkm import PKMConfig
from workbench.memory.softmax_table import SoftmaxTableConfig
from workbench.memory.token_table import TokenTableConfig
from workbench.memory.vanilla import VanillaConfig
from workbench.model import GPT
from workbench.train import SparseRowAdamW, make_optimizer, model_loss
from workbench.train.fused_adamw import adamw_master_update, triton_available
from workbench.train.master import MasterAdamW

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


def test_sparse_values_under_master_weights_go_to_the_lazy_master_kernel() -> None:
    cfg = _vanilla(sparse_values=True)
    model = GPT(cfg.model, 64)
    opt = make_optimizer(model, cfg, torch.device("cuda"))  # CPU tensors; the choice is the device's
    values = model.blocks[0].memory.values_FD
    assert isinstance(opt, MasterAdamW) and opt.lazy == {id(values)}
    assert values.dtype == torch.bfloat16  # the table is held in bf16 beside its float32 master


def test_the_capturable_update_follows_adamw_and_keeps_unread_rows() -> None:
    # Rate and step count as device tensors (what a CUDA graph replays): the bias correction is
    # computed on the device, so the read rows agree with torch to rounding, not bit for bit.
    torch.manual_seed(2)
    table = torch.randn(10, 6)
    lazy, dense = nn.Parameter(table.clone()), nn.Parameter(table.clone())
    lazy_opt = SparseRowAdamW(
        [{"params": [lazy]}], lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1, capturable=True
    )
    dense_opt = torch.optim.AdamW([dense], **KNOBS, foreach=False)  # type: ignore[arg-type]
    assert isinstance(lazy_opt.param_groups[0]["lr"], torch.Tensor)
    for step in range(6):
        rows = list(range(10)) if step < 5 else [2, 8]
        lazy.grad = _grad(rows)
        dense.grad = lazy.grad.clone()
        before = lazy.detach().clone()
        moments = [m.clone() for m in _moments(lazy_opt, lazy)]
        lazy_opt.step()
        if step < 5:  # every row read: the lazy update is dense AdamW
            dense_opt.step()
            torch.testing.assert_close(lazy, dense, rtol=1e-6, atol=1e-7)
            for mine, torchs in zip(_moments(lazy_opt, lazy), _moments(dense_opt, dense), strict=True):
                torch.testing.assert_close(mine, torchs, rtol=1e-6, atol=1e-9)
        unread = [r for r in range(10) if r not in rows]
        assert torch.equal(lazy[unread], before[unread])
        for now, then in zip(_moments(lazy_opt, lazy), moments, strict=True):
            assert torch.equal(now[unread], then[unread])


def _master_pair(lazy: bool) -> tuple[nn.Parameter, MasterAdamW]:
    torch.manual_seed(3)
    table = nn.Parameter(torch.randn(12, 8))
    groups = [{"params": [table], "weight_decay": 0.0, "lr_scale": 2.0}]
    opt = MasterAdamW(groups, [table], lr=1e-2, betas=(0.9, 0.95), lazy=[table] if lazy else [])
    return table, opt


def test_the_lazy_master_update_is_the_dense_one_on_read_rows_and_nothing_elsewhere() -> None:
    (lazy, lazy_opt), (dense, dense_opt) = _master_pair(True), _master_pair(False)
    assert lazy.dtype == torch.bfloat16
    for rows in ([0, 5, 6], [5], list(range(12)), [1, 11]):
        grad = _grad(rows, (12, 8)).to(torch.bfloat16)
        lazy.grad, dense.grad = grad.clone(), grad.clone()
        kept = [lazy.detach().clone()] + [
            lazy_opt.state[lazy][k].clone() for k in ("master", "exp_avg", "exp_avg_sq")
        ]
        lazy_opt.step()
        dense_opt.step()
        unread = [r for r in range(12) if r not in rows]
        now = [lazy.detach()] + [lazy_opt.state[lazy][k] for k in ("master", "exp_avg", "exp_avg_sq")]
        for new, old in zip(now, kept, strict=True):
            assert torch.equal(new[unread], old[unread])
        # Read rows, from the same state: the dense kernel's arithmetic, bit for bit.
        for key in ("master", "exp_avg", "exp_avg_sq"):
            assert torch.equal(lazy_opt.state[lazy][key][rows], dense_opt.state[dense][key][rows])
            dense_opt.state[dense][key].copy_(lazy_opt.state[lazy][key])  # same state for the next step
        assert torch.equal(lazy[rows], dense[rows])
        dense.data.copy_(lazy.data)
        assert torch.equal(lazy, lazy_opt.state[lazy]["master"].to(torch.bfloat16))


def test_lazy_master_parameters_must_be_low_precision_tables() -> None:
    table = nn.Parameter(torch.randn(4, 4))
    with pytest.raises(ValueError, match="2-D tables"):
        MasterAdamW([{"params": [table], "weight_decay": 0.0}], [], lr=1e-3, betas=(0.9, 0.95), lazy=[table])


TABLE_LAYERS = [
    PKMConfig(n_keys=8, n_heads=2, k=2),
    VanillaConfig(d_ff=64, k=4),
    SoftmaxTableConfig(n_entries=32, k=4),
    TokenTableConfig(),
    LSHConfig(n_bits=4, n_tables=2),
]


@pytest.mark.parametrize("memory", TABLE_LAYERS, ids=lambda m: m.kind)
def test_every_table_layer_learns_with_lazy_value_updates(memory: MemoryConfig) -> None:
    torch.manual_seed(0)
    cfg = TrialConfig(
        model=ModelConfig(seq_len=16, d_model=32, n_layers=1, n_heads=2, memory=memory),
        train=TrainConfig(lr=1e-2, sparse_values=True),
    )
    model = GPT(cfg.model, 64)
    opt = make_optimizer(model, cfg, torch.device("cpu"))
    assert isinstance(opt, SparseRowAdamW)
    x = torch.randint(0, 64, (4, 17))
    losses = []
    for _ in range(8):
        loss, aux = model_loss(model, x[:, :-1], x[:, 1:])
        (loss + aux).backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0] - 0.1, losses


@pytest.mark.gpu
@pytest.mark.skipif(not (torch.cuda.is_available() and triton_available()), reason="needs CUDA and Triton")
def test_gpu_lazy_kernel_matches_reference_and_replays_from_a_graph() -> None:
    rows, width = 1000, 96  # rows straddle the kernel's blocks of 2048 elements
    gen = torch.Generator(device="cuda").manual_seed(0)
    master = torch.randn(rows, width, device="cuda", generator=gen)
    states = [
        {"weight": master.to(torch.bfloat16), "master": master.clone(),
         "exp_avg": torch.zeros_like(master), "exp_avg_sq": torch.zeros_like(master)}
        for _ in range(2)
    ]  # fmt: skip
    lr, step, coef = (torch.tensor(v, device="cuda") for v in (3e-3, 0.0, 0.5))
    grad = torch.zeros(rows, width, device="cuda", dtype=torch.bfloat16)
    touched = torch.zeros(rows, device="cuda", dtype=torch.bool)
    knobs = {"beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": 0.0}

    def update(state: dict[str, torch.Tensor], use_triton: bool) -> None:
        adamw_master_update(
            state["weight"], state["master"], grad, state["exp_avg"], state["exp_avg_sq"],
            lr=lr, step=step, coef=coef, use_triton=use_triton, touched_R=touched, **knobs,
        )  # fmt: skip

    graph = torch.cuda.CUDAGraph()
    for i in range(4):
        read = torch.rand(rows, device="cuda", generator=gen) < 0.3
        grad.copy_(torch.randn(rows, width, device="cuda", generator=gen) * read.unsqueeze(1))
        touched.copy_(grad.ne(0).any(dim=1))
        kept = states[0]["master"][~touched].clone()
        step += 1
        if i == 1:
            with torch.cuda.graph(graph):
                update(states[0], True)
        if i >= 1:
            graph.replay()
        else:
            update(states[0], True)
        update(states[1], False)
        assert torch.equal(states[0]["master"][~touched], kept)
    for key in ("master", "exp_avg", "exp_avg_sq"):
        torch.testing.assert_close(states[0][key], states[1][key], rtol=2e-6, atol=1e-7)
    assert torch.equal(states[0]["weight"], states[0]["master"].to(torch.bfloat16))
