"""One optuna trial: sample a design, check it, train it, measure it, record it.

Everything a trial learns goes into its optuna user attributes (the ``wb.*`` contract read by
:mod:`workbench.store.ingest`), so the optuna storage alone is enough to rebuild the DuckDB store.
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import itertools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from workbench import record
from workbench.config import DataConfig, ModelConfig, TrialConfig
from workbench.early_stop import EarlyStop
from workbench.errors import WorkbenchError
from workbench.model import GPT, model_cost
from workbench.provenance import provenance
from workbench.space import Space

if TYPE_CHECKING:
    import optuna

    from workbench.data import DeviceTokens, TokenData


# A probe's warm-up is the full run's in steps, but at most this share of the probe.
PROBE_MAX_WARMUP = 0.5


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
    on_warning: Callable[[str], None] | None = None
    early_stop: EarlyStop | None = None
    _data: dict[DataConfig, TokenData] = field(default_factory=dict)
    _eval: dict[tuple[DataConfig, int, int, int, str], list[tuple[torch.Tensor, torch.Tensor]]] = field(
        default_factory=dict
    )
    _device_tokens: dict[DataConfig, DeviceTokens] = field(default_factory=dict)
    _fvcore: dict[tuple[Any, ...], int] = field(default_factory=dict)

    def data(self, cfg: DataConfig) -> TokenData:
        if cfg not in self._data:
            from workbench.data import prepare_tokens

            self._data[cfg] = prepare_tokens(cfg, progress=self.on_data)
            self._warn_epochs(cfg, len(self._data[cfg].train))
        return self._data[cfg]

    def _warn_epochs(self, cfg: DataConfig, corpus_tokens: int) -> None:
        """Once per corpus, before training: a budget past one epoch measures memorisation."""
        budget = self.space.max_tokens()
        if self.on_warning is None or budget <= corpus_tokens:
            return
        self.on_warning(
            f"warning: the budget trains up to {budget:,} tokens per run, {budget / corpus_tokens:.1f} epochs of "
            f"corpus {cfg.corpus!r} ({corpus_tokens:,} training tokens); past one epoch perplexity measures "
            "memorisation more than capacity. Use a larger corpus (workbench data --help) or a smaller budget."
        )

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
        from workbench.model.flops import fvcore_flops_per_token

        key = (cfg.data, cfg.model, vocab_size, cfg.train.seed)
        if key not in self._fvcore:
            self._fvcore[key] = fvcore_flops_per_token(model, cfg.model.seq_len, vocab_size, cfg.train.seed)
        return self._fvcore[key]

    def eval_batches(self, cfg: TrialConfig) -> list[tuple[torch.Tensor, torch.Tensor]]:
        from workbench.data import eval_batches

        train = cfg.train
        key = (cfg.data, cfg.model.seq_len, train.eval_tokens, train.batch_size, train.eval_windows)
        if key not in self._eval:
            self._eval[key] = eval_batches(
                self.data(cfg.data).val,
                cfg.model.seq_len,
                train.eval_tokens,
                train.batch_size,
                self.device,
                train.eval_windows,
            )
        return self._eval[key]

    def __call__(self, trial: optuna.Trial) -> tuple[float, ...] | float:
        import optuna

        trial.set_user_attr(record.PROVENANCE, provenance(self.device, self.seed))
        try:
            values = self._run(trial)
        except Infeasible as exc:
            trial.set_user_attr(record.STATUS, "infeasible")
            trial.set_user_attr(record.ERROR, str(exc))
            raise optuna.TrialPruned(str(exc)) from None
        except optuna.TrialPruned:
            trial.set_user_attr(record.STATUS, "pruned")
            raise
        except KeyboardInterrupt:
            trial.set_user_attr(record.STATUS, "interrupted")
            trial.set_user_attr(record.ERROR, "interrupted by the user (Ctrl-C)")
            raise
        except Exception as exc:
            trial.set_user_attr(record.STATUS, "failed")
            trial.set_user_attr(record.ERROR, f"{type(exc).__name__}: {exc}"[:2000])
            raise
        finally:
            gc.collect()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        trial.set_user_attr(record.STATUS, "complete")
        return values[0] if self.single_objective else values

    def _run(self, trial: optuna.Trial) -> tuple[float, ...]:
        sample = self.space.sample(trial)
        assert sample.config is not None and sample.cost is not None
        seeds = self.space.seeds(self.seed)
        replicate = int(trial.user_attrs.get(record.REPLICATE, 0))
        if not 0 <= replicate < len(seeds):
            raise WorkbenchError(
                f"{record.REPLICATE}={replicate}: the space trains {len(seeds)} seeds per design"
            )
        tuned: dict[str, Any] = dict(trial.user_attrs.get(record.TUNED) or {})
        cfg = with_train(sample.config, seed=seeds[replicate], **_train_fields(tuned))
        design = cfg.design_hash(self.space.tuned)
        trial.set_user_attr(record.REPLICATE, replicate)
        trial.set_user_attr(record.DESIGN_HASH, design)
        self._record_config(trial, cfg)
        analytic = record.TrialMetrics(
            flops_per_token=sample.cost.flops_per_token,
            params_total=sample.cost.params_total,
            params_active=sample.cost.params_active,
        )
        trial.set_user_attr(record.METRICS, analytic.to_dict())
        if not sample.feasible:
            raise Infeasible(sample.infeasible_reason)
        if self.early_stop is not None:
            self.early_stop.check_design(trial, design)
        twin = self.finished_twin(trial, design, cfg.train.seed) if self.reuse_duplicates else None
        if twin is not None:
            reused = record.TrialMetrics.from_dict(twin.user_attrs[record.METRICS])
            metrics = dataclasses.replace(reused, duplicate_of=twin.number)
            for key in (
                record.CURVE,
                record.ROUTING,
                record.TUNED,
                record.TUNING,
                record.CONFIG,
                record.CONFIG_HASH,
            ):
                if key in twin.user_attrs:
                    trial.set_user_attr(key, twin.user_attrs[key])
            tuned = dict(twin.user_attrs.get(record.TUNED) or {})
        else:
            if replicate == 0 and self.space.tuned:
                tuned = self.tune(cfg, trial)
                cfg = with_train(cfg, **_train_fields(tuned))
                self._record_config(trial, cfg)
            if self.on_trial_start:
                self.on_trial_start(trial.number, describe(cfg))
        if replicate == 0:
            # The design's other seeds are queued (optuna runs queued trials before it samples
            # new ones), so any free worker takes them, with the values this run fitted. A retry
            # of a first run whose worker died queues only those its series has not queued yet.
            first = int(trial.user_attrs.get(record.RETRY_OF, trial.number))
            study = trial.study
            queue_seeds(study, trial.params, first, tuned, len(seeds), study.get_trials(deepcopy=False))
        if twin is None:
            metrics = self.train_and_measure(cfg, trial)
        trial.set_user_attr(record.METRICS, metrics.to_dict())
        values = []
        for objective in self.space.objectives:
            value = getattr(metrics, objective.metric)
            if value is None or not math.isfinite(float(value)):
                raise WorkbenchError(f"objective {objective.metric} is {value!r} after training")
            values.append(float(value))
        return tuple(values)

    @staticmethod
    def _record_config(trial: optuna.Trial, cfg: TrialConfig) -> None:
        trial.set_user_attr(record.CONFIG, cfg.to_dict())
        trial.set_user_attr(record.CONFIG_HASH, cfg.config_hash())

    def tune(self, cfg: TrialConfig, trial: optuna.Trial | None = None) -> dict[str, Any]:
        """Fit the space's ``Tuned`` knobs to this design: one short run per combination of their
        values (a fraction of the budget, the decay compressed to it, the warm-up as many steps as
        the full run's, up to half the probe); the lowest validation
        loss wins. The probes are recorded on ``trial`` (``wb.tuning``), the winner returned."""
        names = list(self.space.tuned)
        fraction = min(p.fraction for p in self.space.tuned.values())
        probes: list[dict[str, Any]] = []
        best: tuple[float, dict[str, Any]] | None = None
        for combo in itertools.product(*(self.space.tuned[n].values for n in names)):
            values = dict(zip(names, combo, strict=True))
            # The probe keeps the full run's warm-up in steps (not compressed with the schedule):
            # a warm-up a quarter as long favoured the lower rate (docs/REPLICATION.md, study
            # replicate-probe-warmup).
            short = with_train(
                cfg,
                tokens=max(1, int(cfg.train.tokens * fraction)),
                seconds=cfg.train.seconds * fraction,
                warmup_frac=min(PROBE_MAX_WARMUP, cfg.train.warmup_frac / fraction),
                **_train_fields(values),
            )
            if self.on_trial_start and trial is not None:
                self.on_trial_start(trial.number, f"tuning {_describe_values(values)} | {describe(short)}")
            try:
                probe = self.train_and_measure(short)
                loss = probe.val_loss if probe.val_loss is not None else math.inf
                error = None
            except (WorkbenchError, RuntimeError) as exc:  # a diverging rate is a result, not a crash
                loss, probe, error = math.inf, record.TrialMetrics(), f"{type(exc).__name__}: {exc}"[:500]
            probes.append(
                {
                    "values": values,
                    "val_loss": loss if math.isfinite(loss) else None,
                    "tokens_trained": probe.tokens_trained,
                    "train_seconds": probe.train_seconds,
                    "error": error,
                }
            )
            if math.isfinite(loss) and (best is None or loss < best[0]):
                best = (loss, values)
        if trial is not None:
            trial.set_user_attr(record.TUNING, probes)
        if best is None:
            raise WorkbenchError(f"tuning {', '.join(names)}: every probe run failed or diverged")
        if trial is not None:
            trial.set_user_attr(record.TUNED, best[1])
        return best[1]

    @staticmethod
    def finished_twin(trial: optuna.Trial, design: str, seed: int) -> optuna.trial.FrozenTrial | None:
        """The first complete, trained trial of ``trial``'s study of this design and seed, if any."""
        from optuna.trial import TrialState

        for other in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            attrs = other.user_attrs
            config = attrs.get(record.CONFIG)
            if (
                attrs.get(record.DESIGN_HASH) == design
                and isinstance(config, dict)
                and config.get("train", {}).get("seed") == seed
                and isinstance(attrs.get(record.METRICS), dict)
                and "duplicate_of" not in attrs[record.METRICS]
            ):
                return other
        return None

    def train_and_measure(self, cfg: TrialConfig, trial: optuna.Trial | None = None) -> record.TrialMetrics:
        """Build, train and measure one design; records curves and routing on ``trial``."""
        from workbench.train import train

        data = self.data(cfg.data)
        torch.manual_seed(cfg.train.seed)
        model = build_model(cfg.model, data)
        judge = None
        if trial is not None and self.early_stop is not None:
            judge = self.early_stop.judge(trial, self.space.objectives, cfg)
        # With early stopping, fvcore's CPU trace (tens of seconds for a bank of many small
        # experts) waits until the run has passed its rungs: it counts a copy of the model as built.
        built = copy.deepcopy(model) if judge is not None else None
        model = model.to(self.device)
        cost = model_cost(cfg.model, data.vocab_size)
        n_params = sum(p.numel() for p in model.parameters())
        if n_params != cost.params_total:
            raise AssertionError(f"analytic parameter count {cost.params_total} != built model's {n_params}")
        fvcore_flops = self.fvcore_flops(cfg, model, data.vocab_size) if built is None else 0

        def on_step(step: int, total: int, loss: float) -> None:
            curve_so_far.append((step, "train_loss", loss))
            if self.on_step:
                self.on_step(step, total, loss)

        def on_eval(step: int, val_loss: float) -> None:
            curve_so_far.append((step, "val_loss", val_loss))
            if trial is None:
                return
            stop = judge.at_eval(step, val_loss) if judge is not None else None
            if stop is not None:
                import optuna

                trial.set_user_attr(record.CURVE, [list(c) for c in curve_so_far])
                raise optuna.TrialPruned(stop)
            if self.single_objective and judge is None:
                trial.report(val_loss, step)
                if trial.should_prune():
                    import optuna

                    trial.set_user_attr(record.CURVE, [list(c) for c in curve_so_far])
                    raise optuna.TrialPruned(f"pruned at step {step} (val_loss {val_loss:.3f})")

        curve_so_far: list[tuple[int, str, float]] = []
        started = time.perf_counter()
        result = train(
            cfg,
            model,
            self.train_tokens(cfg.data),
            self.eval_batches(cfg),
            self.device,
            on_step,
            on_eval,
            eval_at=judge.steps if judge is not None else (),
        )
        wall = time.perf_counter() - started
        if built is not None:
            fvcore_flops = self.fvcore_flops(cfg, built, data.vocab_size)
            del built
        if trial is not None:
            trial.set_user_attr(record.CURVE, [list(c) for c in result.curve])
            trial.set_user_attr(record.ROUTING, result.routing)
        del model
        return record.TrialMetrics(
            val_ppl=result.val_ppl,
            val_loss=result.val_loss,
            flops_per_token=cost.flops_per_token,
            flops_per_token_fvcore=fvcore_flops,
            params_total=cost.params_total,
            params_active=cost.params_active,
            tokens_per_s=result.tokens_per_s,
            peak_mem_bytes=result.peak_mem_bytes,
            train_seconds=result.train_seconds,
            wall_seconds=wall,
            compile_seconds=result.compile_seconds,
            cuda_graph=result.cuda_graph,
            eager_reason=result.eager_reason,
            master_weights=result.master_weights,
            tokens_trained=result.tokens_trained,
            steps=result.steps,
            epochs=result.tokens_trained / len(data.train),
            corpus_tokens=len(data.train),
            stopped_by=result.stopped_by,
        )


def build_model(model_cfg: ModelConfig, data: TokenData) -> GPT:
    """The model a trial trains, with what its layers may read from the corpus: the token
    frequencies (balanced hash) and, only for a layer that asks, the token features. Benches
    build through it too, so that their models are the ones the studies train."""
    features = data.token_features() if model_cfg.memory.needs_token_features() else None
    return GPT(model_cfg, data.vocab_size, token_counts=data.token_frequencies(), token_features=features)


def describe(cfg: TrialConfig) -> str:
    """A design in one line, e.g. ``switch E=8 g=256 d=64 L=2``."""
    mem = cfg.model.memory
    knobs = {k: v for k, v in dataclasses.asdict(mem).items() if k not in ("impl",)}
    parts = [mem.kind] + [f"{k}={v}" for k, v in knobs.items()]
    return f"{' '.join(parts)} | d={cfg.model.d_model} L={cfg.model.n_layers} lr={cfg.train.lr:.2g}"


def with_train(cfg: TrialConfig, **fields: Any) -> TrialConfig:
    """``cfg`` with some ``train`` fields replaced (validated again)."""
    if not fields:
        return cfg
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **fields))


def _train_fields(values: dict[str, Any]) -> dict[str, Any]:
    """``{"train.lr": 0.002}`` -> ``{"lr": 0.002}``."""
    return {name.removeprefix("train."): value for name, value in values.items()}


def _describe_values(values: dict[str, Any]) -> str:
    return " ".join(f"{name.removeprefix('train.')}={value:.3g}" for name, value in values.items())


def queue_seeds(
    study: optuna.Study,
    params: Mapping[str, Any],
    first: int,
    tuned: Mapping[str, Any],
    n_seeds: int,
    trials: Sequence[optuna.trial.FrozenTrial],
) -> int:
    """Queue the other seeds (replicates 1 .. n_seeds-1) of the design whose first run is trial
    ``first`` that no trial of ``trials`` holds yet, with the values the first run fitted;
    returns how many. Any free worker then takes them (optuna runs queued trials first)."""
    held = {
        int(t.user_attrs.get(record.REPLICATE, 0))
        for t in trials
        if t.user_attrs.get(record.FIRST_RUN) == first
    }
    missing = [r for r in range(1, n_seeds) if r not in held]
    for replicate in missing:
        study.enqueue_trial(
            dict(params),
            user_attrs={record.REPLICATE: replicate, record.TUNED: dict(tuned), record.FIRST_RUN: first},
        )
    return len(missing)
