"""The training loop's fast paths keep its results: device-resident batches draw the CPU path's
windows, a worker reuses its data and FLOP counts, several workers share one study, and (on a
GPU, or with -m slow on the CPU) the compiled step trains like the eager one. The optimizer puts
memory value tables in a group of their own, whose rate the schedule scales."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from workbench.config import ModelConfig, TrainConfig, TrialConfig
from workbench.data import DeviceTokens, eval_batches
from workbench.errors import ConfigError
from workbench.memory.pkm import PKMConfig
from workbench.memory.switch import SwitchConfig
from workbench.model import GPT
from workbench.space import load_space
from workbench.store import Store
from workbench.study import StudyOptions, apply_overrides, gpu_assignment, run_study
from workbench.train import make_optimizer, set_lr, train

VOCAB = 64
CUDA = torch.cuda.is_available()


def tokens(n: int = 5000, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, VOCAB, n).astype(np.uint16)


def config(**train: object) -> TrialConfig:
    model = ModelConfig(
        seq_len=16, d_model=16, n_layers=1, n_heads=2, memory=SwitchConfig(n_experts=4, expert_width=32)
    )
    knobs = {"tokens": 16 * 8 * 12, "batch_size": 8, "eval_tokens": 128, "lr": 1e-2, **train}
    return TrialConfig(model=model, train=TrainConfig(**knobs))  # type: ignore[arg-type]


def run(cfg: TrialConfig, data: np.ndarray | DeviceTokens, device: str = "cpu") -> object:
    torch.manual_seed(cfg.train.seed)
    model = GPT(cfg.model, VOCAB).to(device)
    val = eval_batches(
        tokens(800, seed=1), cfg.model.seq_len, cfg.train.eval_tokens, cfg.train.batch_size, device
    )
    return train(cfg, model, data, val, torch.device(device))


def test_training_on_device_tokens_gives_the_same_perplexity() -> None:
    cfg = config()
    on_host = run(cfg, tokens())
    on_device = run(cfg, DeviceTokens(tokens(), "cpu"))
    assert on_host.val_loss == on_device.val_loss  # type: ignore[attr-defined]
    assert on_host.steps == 12 and on_host.compile_seconds == 0.0  # type: ignore[attr-defined]


def test_gpu_assignment_gives_one_gpu_per_worker_round_robin() -> None:
    assert gpu_assignment(3, None, 0) == [None, None, None]
    assert gpu_assignment(2, None, 1) == [None, None]
    assert gpu_assignment(3, None, 2) == ["0", "1", "0"]
    assert gpu_assignment(4, "3,5", 8) == ["3", "5", "3", "5"]
    assert gpu_assignment(2, "7", 8) == [None, None]


def test_a_worker_counts_fvcore_flops_once_per_design(tiny_space_file: Path, monkeypatch) -> None:
    import workbench.model.flops as flops
    from workbench.trial import TrialRunner

    calls = []
    real = flops.fvcore_flops_per_token

    def counting(*args: object, **kw: object) -> int:
        calls.append(1)
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(flops, "fvcore_flops_per_token", counting)
    space = load_space(tiny_space_file)
    runner = TrialRunner(space=space, device=torch.device("cpu"))
    cfg = next(s.config for s in space.iter_grid_samples() if s.config is not None)
    for lr in (1e-3, 2e-3):
        slower = TrialConfig(
            data=cfg.data, model=cfg.model, train=TrainConfig(**{**cfg.to_dict()["train"], "lr": lr})
        )
        metrics = runner.train_and_measure(slower)
        assert metrics.flops_per_token_fvcore is not None and metrics.flops_per_token_fvcore > 0
    assert len(calls) == 1


def test_two_workers_share_one_study_and_store(tiny_space_file: Path, tmp_path: Path) -> None:
    store = tmp_path / "wb.duckdb"
    space = apply_overrides(load_space(tiny_space_file), {})
    opts = StudyOptions(trials=4, store=str(store), device="cpu", progress=False, workers=2)
    outcome = run_study(space, opts)
    frame = Store.open(store, read_only=True).sql("SELECT trial_number, status FROM trials ORDER BY 1")
    # Two workers may both start a trial when one is missing: at most one past the target.
    assert 4 <= len(frame) <= 5 and outcome.ran == len(frame)  # type: ignore[attr-defined]
    assert set(frame.status) <= {"complete", "infeasible"}
    assert list(frame.trial_number) == list(range(len(frame)))


@pytest.mark.slow
def test_compiled_training_on_cpu_matches_eager() -> None:
    eager = run(config(), tokens())
    compiled = run(config(compile=True), tokens())
    assert compiled.compile_seconds > 0  # type: ignore[attr-defined]
    assert abs(compiled.val_loss - eager.val_loss) < 1e-3  # type: ignore[attr-defined]


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_gpu_compiled_and_eager_training_agree_and_read_device_tokens() -> None:
    data = DeviceTokens(tokens(), "cuda")
    eager = run(config(), data, "cuda")
    compiled = run(config(compile=True), data, "cuda")
    assert compiled.compile_seconds > 0 and eager.compile_seconds == 0  # type: ignore[attr-defined]
    # The compiled step is captured as a CUDA graph too (it makes no host read).
    assert compiled.cuda_graph, compiled.eager_reason  # type: ignore[attr-defined]
    # bf16 autocast both ways; compiled kernels fuse and reassociate.
    assert abs(compiled.val_loss - eager.val_loss) < 0.05  # type: ignore[attr-defined]
    again = run(config(), data, "cuda")
    assert abs(again.val_loss - eager.val_loss) < 1e-3  # type: ignore[attr-defined]


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_gpu_whole_step_cuda_graph_trains_like_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    data = DeviceTokens(tokens(), "cuda")
    graphed = run(config(), data, "cuda")
    assert graphed.cuda_graph, graphed.eager_reason  # type: ignore[attr-defined]
    monkeypatch.setenv("WORKBENCH_CUDA_GRAPHS", "0")
    eager = run(config(), data, "cuda")
    assert not eager.cuda_graph and eager.eager_reason == "off"  # type: ignore[attr-defined]
    assert abs(graphed.val_loss - eager.val_loss) < 1e-3  # type: ignore[attr-defined]


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_gpu_a_synchronising_model_trains_eagerly() -> None:
    cfg = config()
    loop = TrialConfig(
        model=ModelConfig(
            **{**cfg.model.__dict__, "memory": SwitchConfig(n_experts=4, expert_width=32, impl="loop")}
        ),
        train=cfg.train,
    )
    result = run(loop, DeviceTokens(tokens(), "cuda"), "cuda")
    assert not result.cuda_graph and "synchronisation" in result.eager_reason  # type: ignore[attr-defined]


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_gpu_back_to_back_graphed_trials_keep_device_memory_flat() -> None:
    """A long-lived worker must not grow: each trial's warm-up once took a new side stream, and
    cuBLAS kept a workspace for every stream (192 MiB per trial on an H100)."""
    import gc

    data = DeviceTokens(tokens(), "cuda")
    run(config(), data, "cuda")
    gc.collect()
    before = torch.cuda.memory_allocated()
    for _ in range(3):
        assert run(config(), data, "cuda").cuda_graph  # type: ignore[attr-defined]
    gc.collect()
    assert torch.cuda.memory_allocated() == before


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_gpu_bf16_master_weights_train_like_float32_weights() -> None:
    data = DeviceTokens(tokens(), "cuda")
    master = run(config(), data, "cuda")
    plain = run(config(master_weights=False), data, "cuda")
    assert master.master_weights and not plain.master_weights  # type: ignore[attr-defined]
    assert master.cuda_graph, master.eager_reason  # type: ignore[attr-defined]
    # The same bf16 forward and gradients; only the clipping norm's summation order differs.
    assert abs(master.val_loss - plain.val_loss) < 5e-3  # type: ignore[attr-defined]


def test_cpu_training_keeps_float32_weights() -> None:
    result = run(config(), tokens())
    assert not result.master_weights  # type: ignore[attr-defined]


def pkm_config(**train: object) -> TrialConfig:
    model = ModelConfig(
        seq_len=16, d_model=16, n_layers=2, n_heads=2, memory=PKMConfig(n_keys=4, n_heads=2, k=2)
    )
    knobs = {"tokens": 16 * 8 * 4, "batch_size": 8, "eval_tokens": 128, "lr": 1e-2, **train}
    return TrialConfig(model=model, train=TrainConfig(**knobs))  # type: ignore[arg-type]


def test_pkm_value_tables_train_without_weight_decay_at_the_scaled_rate() -> None:
    cfg = pkm_config(memory_value_lr_scale=5.0)
    model = GPT(cfg.model, VOCAB)
    opt = make_optimizer(model, cfg, torch.device("cpu"))
    decay, no_decay, values = opt.param_groups
    assert {id(p) for p in values["params"]} == {id(b.memory.values_VD) for b in model.blocks}
    assert values["weight_decay"] == 0.0 and values["lr"] == pytest.approx(5e-2)
    assert decay["weight_decay"] == 0.1 and decay["lr"] == no_decay["lr"] == 1e-2
    grouped = [id(p) for g in opt.param_groups for p in g["params"]]
    assert len(grouped) == len(set(grouped))  # nothing twice
    assert set(grouped) == {id(p) for p in model.parameters()}  # nothing missing


@pytest.mark.parametrize("variant", ["altup", "recycled", "sequence"])
def test_altups_mixing_scalars_get_no_weight_decay_unless_asked(variant: str) -> None:
    # They start at the identity and at one: decay would pull them towards zero, i.e. towards
    # a model whose blocks neither predict nor correct each other.
    model_cfg = ModelConfig(seq_len=16, d_model=16, n_layers=2, n_heads=2, altup_k=2, altup_variant=variant)
    scalars = {id(p) for p in GPT(model_cfg, VOCAB).altup.mixing_parameters()}
    assert scalars
    for legacy in (False, True):
        cfg = TrialConfig(model=model_cfg, train=TrainConfig(altup_weight_decay=legacy))
        model = GPT(model_cfg, VOCAB)
        decay, _ = make_optimizer(model, cfg, torch.device("cpu")).param_groups
        mixing = model.altup.mixing_parameters()
        decayed = {id(p) for p in decay["params"]}
        # The legacy rule decayed whatever had two or more dimensions.
        assert {id(p) for p in mixing if legacy and p.dim() >= 2} == {id(p) for p in mixing} & decayed
        assert any(p.dim() >= 2 for p in decay["params"])  # the matrices keep theirs
    assert len(scalars) == 2


def test_the_schedule_keeps_each_groups_ratio() -> None:
    cfg = pkm_config(memory_value_lr_scale=4.0)
    for capturable in (False, True):  # float rates, and one device tensor per group
        opt = make_optimizer(GPT(cfg.model, VOCAB), cfg, torch.device("cpu"), capturable=capturable)
        for lr in (1e-3, 2.5e-4):
            set_lr(opt, lr)
            rates = [float(g["lr"]) for g in opt.param_groups]
            assert rates == pytest.approx([lr, lr, 4 * lr])


def test_a_model_without_value_tables_keeps_two_groups() -> None:
    opt = make_optimizer(GPT(config().model, VOCAB), config(), torch.device("cpu"))
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    with pytest.raises(ConfigError, match="memory_value_lr_scale"):
        make_optimizer(GPT(config().model, VOCAB), config(memory_value_lr_scale=0.0), torch.device("cpu"))


def test_a_pkm_model_trains_with_scaled_and_lazy_value_updates() -> None:
    for knobs in ({"memory_value_lr_scale": 3.0}, {"sparse_values": True}):
        result = run(pkm_config(**knobs), tokens())
        assert result.steps == 4 and math.isfinite(result.val_loss)  # type: ignore[attr-defined]


def test_master_weights_hold_the_value_tables_in_bf16_in_their_own_group() -> None:
    # Under master weights (the CUDA default) the tables are read in bf16 anyway (autocast), so
    # they are stored so, with float32 masters: the reads move half the bytes.
    cfg = pkm_config(memory_value_lr_scale=2.0)
    model = GPT(cfg.model, VOCAB)
    opt = make_optimizer(model, cfg, torch.device("cuda"))  # CPU tensors; the choice is the device's
    tables = {id(b.memory.values_VD) for b in model.blocks}
    assert all(b.memory.values_VD.dtype == torch.bfloat16 for b in model.blocks)
    (scaled,) = [g for g in opt.param_groups if g.get("lr_scale") == 2.0]
    assert {id(p) for p in scaled["params"]} == tables and scaled["weight_decay"] == 0.0
    assert not opt.lazy  # type: ignore[attr-defined]


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("master_weights", [True, False])
def test_gpu_lazy_value_updates_are_captured_with_the_step(master_weights: bool) -> None:
    # No host synchronisation in the lazy update: the whole step is still one CUDA graph. Every
    # row of these small tables is read every step, so lazy and dense train alike.
    data = DeviceTokens(tokens(), "cuda")
    knobs = {"tokens": 16 * 8 * 12, "master_weights": master_weights}
    lazy = run(pkm_config(sparse_values=True, **knobs), data, "cuda")
    dense = run(pkm_config(**knobs), data, "cuda")
    assert lazy.cuda_graph, lazy.eager_reason  # type: ignore[attr-defined]
    assert abs(lazy.val_loss - dense.val_loss) < 1e-2  # type: ignore[attr-defined]
