"""One optuna trial: sample a design, check it, train it, measure it, record it.

Everything a trial learns goes into its optuna user attributes (the ``wb.*`` contract read by
:mod:`workbench.ingest`), so the optuna storage alone is enough to rebuild the DuckDB store.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from workbench.config import DataConfig, TrialConfig
from workbench.errors import WorkbenchError
from workbench.model import GPT, model_cost
from workbench.provenance import provenance
from workbench.space import Space

if TYPE_CHECKING:
    import optuna

    from workbench.data import DeviceTokens, TokenData


class Infeasible(Exception):
    """The sampled design violates a constraint; it is recorded, not trained."""


@dataclass
class TrialRunner:
    """The objective function of a study: ``runner(trial) -> objective values``.

    A long-lived worker: keeps prepared token data (on a GPU, the training tokens in device
    memory), evaluation batches and fvcore FLOP counts across trials (keyed by data config,
    model config and seed), so back-to-back trials in one process reuse them.

    A sampler may propose a design the study has already trained (TPE does, once it
    converges). With ``reuse_duplicates`` such a trial is not trained again: it takes the
    metrics, curves and routing of the finished trial with the same config hash (the full
    config, seed included; training is deterministic under it) and records ``duplicate_of``
    in its metrics, so the GPU time goes to new designs.
    """

    space: Space
    device: torch.device
    seed: int = 0
    single_objective: bool = False
    on_step: Callable[[int, int, float], None] | None = None
    on_trial_start: Callable[[int, str], None] | None = None
    on_data: Callable[[str], None] | None = None
    reuse_duplicates: bool = True
    _data: dict[DataConfig, TokenData] = field(default_factory=dict)
    _eval: dict[tuple[DataConfig, int, int, int], list[tuple[torch.Tensor, torch.Tensor]]] = field(
        default_factory=dict
    )
    _device_tokens: dict[DataConfig, DeviceTokens] = field(default_factory=dict)
    _fvcore: dict[tuple[Any, ...], int] = field(default_factory=dict)

    def data(self, cfg: DataConfig) -> TokenData:
        if cfg not in self._data:
            from workbench.data import prepare_tokens

            self._data[cfg] = prepare_tokens(cfg, progress=self.on_data)
        return self._data[cfg]

    def train_tokens(self, cfg: DataConfig) -> np.ndarray | DeviceTokens:
        """The training split: on a GPU moved to device memory once per worker, else the memmap."""
        if self.device.type != "cuda":
            return self.data(cfg).train
        if cfg not in self._device_tokens:
            from workbench.data import DeviceTokens

            self._device_tokens[cfg] = DeviceTokens(self.data(cfg).train, self.device)
        return self._device_tokens[cfg]

    def fvcore_flops(self, cfg: TrialConfig, model: GPT, vocab_size: int) -> int:
        """fvcore's count of the built model, once per (data, model config, seed) in this worker.

        The count depends only on those (the model is built under ``train.seed``), so trials
        that differ in training knobs alone skip the CPU trace.
        """
        from workbench.flops import fvcore_flops_per_token

        key = (cfg.data, cfg.model, vocab_size, cfg.train.seed)
        if key not in self._fvcore:
            self._fvcore[key] = fvcore_flops_per_token(model, cfg.model.seq_len, vocab_size, cfg.train.seed)
        return self._fvcore[key]

    def eval_batches(self, cfg: TrialConfig) -> list[tuple[torch.Tensor, torch.Tensor]]:
        from workbench.data import eval_batches

        key = (cfg.data, cfg.model.seq_len, cfg.train.eval_tokens, cfg.train.batch_size)
        if key not in self._eval:
            self._eval[key] = eval_batches(
                self.data(cfg.data).val,
                cfg.model.seq_len,
                cfg.train.eval_tokens,
                cfg.train.batch_size,
                self.device,
            )
        return self._eval[key]

    def __call__(self, trial: optuna.Trial) -> tuple[float, ...] | float:
        import optuna

        trial.set_user_attr("wb.provenance", provenance(self.device, self.seed))
        try:
            values = self._run(trial)
        except Infeasible as exc:
            trial.set_user_attr("wb.status", "infeasible")
            trial.set_user_attr("wb.error", str(exc))
            raise optuna.TrialPruned(str(exc)) from None
        except optuna.TrialPruned:
            trial.set_user_attr("wb.status", "pruned")
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("wb.status", "interrupted")
            trial.set_user_attr("wb.error", "interrupted by the user (Ctrl-C)")
            raise
        except Exception as exc:
            trial.set_user_attr("wb.status", "failed")
            trial.set_user_attr("wb.error", f"{type(exc).__name__}: {exc}"[:2000])
            raise
        finally:
            gc.collect()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        trial.set_user_attr("wb.status", "complete")
        return values[0] if self.single_objective else values

    def _run(self, trial: optuna.Trial) -> tuple[float, ...]:
        sample = self.space.sample(trial)
        cfg = sample.config
        assert cfg is not None
        trial.set_user_attr("wb.config", cfg.to_dict())
        config_hash = cfg.config_hash()
        trial.set_user_attr("wb.config_hash", config_hash)
        analytic = sample.cost
        assert analytic is not None
        trial.set_user_attr(
            "wb.metrics",
            {
                "flops_per_token": analytic.flops_per_token,
                "params_total": analytic.params_total,
                "params_active": analytic.params_active,
            },
        )
        if not sample.feasible:
            raise Infeasible(sample.infeasible_reason)
        twin = self.finished_twin(trial, config_hash) if self.reuse_duplicates else None
        if twin is not None:
            metrics = {**twin.user_attrs["wb.metrics"], "duplicate_of": twin.number}
            for key in ("wb.curve", "wb.routing"):
                if key in twin.user_attrs:
                    trial.set_user_attr(key, twin.user_attrs[key])
        else:
            if self.on_trial_start:
                self.on_trial_start(trial.number, describe(cfg))
            metrics = self.train_and_measure(cfg, trial)
        trial.set_user_attr("wb.metrics", metrics)
        values = []
        for objective in self.space.objectives:
            value = metrics.get(objective.metric)
            if value is None or not math.isfinite(float(value)):
                raise WorkbenchError(f"objective {objective.metric} is {value!r} after training")
            values.append(float(value))
        return tuple(values)

    @staticmethod
    def finished_twin(trial: optuna.Trial, config_hash: str) -> optuna.trial.FrozenTrial | None:
        """The first complete, trained trial of ``trial``'s study with this config hash, if any."""
        from optuna.trial import TrialState

        for other in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            attrs = other.user_attrs
            if (
                attrs.get("wb.config_hash") == config_hash
                and isinstance(attrs.get("wb.metrics"), dict)
                and "duplicate_of" not in attrs["wb.metrics"]
            ):
                return other
        return None

    def train_and_measure(self, cfg: TrialConfig, trial: optuna.Trial | None = None) -> dict[str, Any]:
        """Build, train and measure one design; records curves and routing on ``trial``."""
        from workbench.train import train

        data = self.data(cfg.data)
        torch.manual_seed(cfg.train.seed)
        model = GPT(cfg.model, data.vocab_size, token_counts=data.token_frequencies()).to(self.device)
        cost = model_cost(cfg.model, data.vocab_size)
        n_params = sum(p.numel() for p in model.parameters())
        if n_params != cost.params_total:
            raise AssertionError(f"analytic parameter count {cost.params_total} != built model's {n_params}")
        fvcore_flops = self.fvcore_flops(cfg, model, data.vocab_size)

        def on_eval(step: int, val_loss: float) -> None:
            curve_so_far.append((step, "val_loss", val_loss))
            if trial is None:
                return
            if self.single_objective:
                trial.report(val_loss, step)
                if trial.should_prune():
                    import optuna

                    trial.set_user_attr("wb.curve", [list(c) for c in curve_so_far])
                    raise optuna.TrialPruned(f"pruned at step {step} (val_loss {val_loss:.3f})")

        curve_so_far: list[tuple[int, str, float]] = []
        started = time.perf_counter()
        result = train(
            cfg,
            model,
            self.train_tokens(cfg.data),
            self.eval_batches(cfg),
            self.device,
            self.on_step,
            on_eval,
        )
        wall = time.perf_counter() - started
        if trial is not None:
            trial.set_user_attr("wb.curve", [list(c) for c in result.curve])
            trial.set_user_attr("wb.routing", result.routing)
        del model
        return {
            "val_ppl": result.val_ppl,
            "val_loss": result.val_loss,
            "flops_per_token": cost.flops_per_token,
            "flops_per_token_fvcore": fvcore_flops,
            "params_total": cost.params_total,
            "params_active": cost.params_active,
            "tokens_per_s": result.tokens_per_s,
            "peak_mem_bytes": result.peak_mem_bytes,
            "train_seconds": result.train_seconds,
            "wall_seconds": wall,
            "compile_seconds": result.compile_seconds,
            "cuda_graph": result.cuda_graph,
            "eager_reason": result.eager_reason,
            "master_weights": result.master_weights,
            "tokens_trained": result.tokens_trained,
            "steps": result.steps,
            "stopped_by": result.stopped_by,
        }


def describe(cfg: TrialConfig) -> str:
    """A design in one line, e.g. ``switch E=8 g=256 d=64 L=2``."""
    mem = cfg.model.memory
    knobs = {k: v for k, v in dataclasses.asdict(mem).items() if k not in ("impl",)}
    parts = [mem.kind] + [f"{k}={v}" for k, v in knobs.items()]
    return f"{' '.join(parts)} | d={cfg.model.d_model} L={cfg.model.n_layers} lr={cfg.train.lr:.2g}"
