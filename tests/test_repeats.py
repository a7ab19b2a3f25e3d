"""Repeats, designs and per-design tuning, end to end on CPU with tiny models.

A study trains every design under several seeds (one trial per run); the store's ``designs``
view aggregates the runs with 95% intervals; the front works on designs; a ``Tuned`` knob is
fit per design by short probe runs that stay in the store.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_SPACE

from workbench.errors import SpaceError
from workbench.pareto import front_probability
from workbench.space import Categorical, Fixed, Space, Tuned, load_space
from workbench.store import Store
from workbench.study import StudyOptions, apply_overrides, run_study

TOKENS = 1_500


def tiny_space(tmp_path: Path, corpus: Path) -> Path:
    """The tiny space of conftest, narrowed to two designs: dense and a 2-expert switch, one lr."""
    text = TINY_SPACE.format(corpus=str(corpus), constraints="")
    text = text.replace('"train.lr": Categorical([3e-3, 1e-2]),', '"train.lr": 3e-3,')
    text = text.replace("Categorical([2, 4], when=", "Categorical([2], when=")
    path = tmp_path / "space.py"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def run(space: Space, store: Path, trials: int, **kw) -> None:
    opts = StudyOptions(trials=trials, store=str(store), device="cpu", progress=False, sampler="grid", **kw)
    run_study(space, opts)


def test_repeats_train_every_design_under_each_seed(tiny_corpus: Path, tmp_path: Path) -> None:
    space = apply_overrides(
        load_space(tiny_space(tmp_path, tiny_corpus)), {"train.tokens": TOKENS}, repeats=3
    )
    store = tmp_path / "wb.duckdb"
    run(space, store, trials=2, seed=7)
    reader = Store.open(store, read_only=True)
    runs = reader.sql("SELECT design_hash, seed, replicate, epochs FROM trials WHERE status = 'complete'")
    assert len(runs) == 6
    assert runs.groupby("design_hash")["seed"].apply(sorted).tolist() == [[7, 8, 9], [7, 8, 9]]
    assert sorted(runs["replicate"]) == [0, 0, 1, 1, 2, 2]
    assert (runs["epochs"] > 0).all()
    designs = reader.sql("SELECT * FROM designs ORDER BY first_trial")
    assert designs["n_seeds"].tolist() == [3, 3]
    for _, d in designs.iterrows():
        assert math.isfinite(d.val_ppl_ci95_low) and math.isfinite(d.val_ppl_ci95_high)
        assert d.val_ppl_ci95_low < d.val_ppl_mean < d.val_ppl_ci95_high
        assert d.val_loss_sd > 0  # the seeds differ, so the runs do
    front = reader.pareto("tiny", front_only=False)
    assert len(front) == 2 and front["on_front"].any()
    assert front["p_front"].between(0, 1).all()


def test_the_interval_is_the_t_interval_of_the_seed_means(tiny_corpus: Path, tmp_path: Path) -> None:
    space = apply_overrides(
        load_space(tiny_space(tmp_path, tiny_corpus)),
        {"train.tokens": TOKENS, "memory.kind": "dense"},
        repeats=3,
    )
    store = tmp_path / "wb.duckdb"
    run(space, store, trials=1)
    reader = Store.open(store, read_only=True)
    ppl = reader.sql("SELECT val_ppl FROM trials ORDER BY seed")["val_ppl"].to_numpy()
    design = reader.sql("SELECT * FROM designs").iloc[0]
    half = 4.303 * ppl.std(ddof=1) / math.sqrt(3)  # t(0.975, 2)
    assert design.val_ppl_mean == pytest.approx(ppl.mean())
    assert design.val_ppl_ci95_high - design.val_ppl_mean == pytest.approx(half)


def test_resuming_with_more_repeats_adds_the_missing_seeds_and_keeps_the_runs_stored(
    tiny_corpus: Path, tmp_path: Path
) -> None:
    """A finished study resumed with a larger --repeats trains only the seeds it lacks."""
    path = tiny_space(tmp_path, tiny_corpus)
    store = tmp_path / "wb.duckdb"
    run(apply_overrides(load_space(path), {"train.tokens": TOKENS}, repeats=2), store, trials=2, seed=7)
    before = Store.open(store, read_only=True).sql(
        "SELECT trial_number, design_hash, seed, val_loss FROM trials ORDER BY trial_number"
    )
    assert len(before) == 4

    run(apply_overrides(load_space(path), {"train.tokens": TOKENS}, repeats=3), store, trials=2, seed=7)
    reader = Store.open(store, read_only=True)
    after = reader.sql(
        "SELECT trial_number, design_hash, seed, val_loss, status FROM trials ORDER BY trial_number"
    )
    assert (after["status"] == "complete").all() and len(after) == 6
    # The stored runs are untouched; the two new ones are each design's third seed.
    kept = after[after["trial_number"].isin(before["trial_number"])]
    assert kept[["design_hash", "seed", "val_loss"]].to_numpy().tolist() == (
        before[["design_hash", "seed", "val_loss"]].to_numpy().tolist()
    )
    assert after.groupby("design_hash")["seed"].apply(sorted).tolist() == [[7, 8, 9], [7, 8, 9]]
    assert reader.sql("SELECT n_seeds FROM designs")["n_seeds"].tolist() == [3, 3]

    # Resumed again with the same repeats, nothing is left to train.
    run(apply_overrides(load_space(path), {"train.tokens": TOKENS}, repeats=3), store, trials=2, seed=7)
    assert len(Store.open(store, read_only=True).sql("SELECT 1 FROM trials")) == 6


def test_one_seed_gives_no_interval(tiny_corpus: Path, tmp_path: Path) -> None:
    space = apply_overrides(load_space(tiny_space(tmp_path, tiny_corpus)), {"train.tokens": TOKENS})
    store = tmp_path / "wb.duckdb"
    run(space, store, trials=2)
    designs = Store.open(store, read_only=True).sql("SELECT * FROM designs")
    assert designs["n_seeds"].tolist() == [1, 1]
    assert designs["val_ppl_ci95_low"].isna().all() and designs["val_ppl_sd"].isna().all()
    front = Store.open(store, read_only=True).pareto("tiny", front_only=False)
    assert front["p_front"].isna().all() and not front["significant"].any()


def test_declared_seeds_are_exactly_the_runs(tiny_corpus: Path, tmp_path: Path) -> None:
    path = tiny_space(tmp_path, tiny_corpus)
    text = path.read_text().replace(
        '"train.batch_size": 8,', '"train.batch_size": 8,\n        "train.seed": Categorical([11, 5]),'
    )
    path.write_text(text)
    space = apply_overrides(load_space(path), {"train.tokens": TOKENS, "memory.kind": "dense"})
    assert space.repeats == 2 and space.seeds(base=0) == (11, 5)
    store = tmp_path / "wb.duckdb"
    run(space, store, trials=1, seed=3)  # --seed does not override the declared seeds
    seeds = Store.open(store, read_only=True).sql("SELECT seed FROM trials ORDER BY seed")["seed"].tolist()
    assert seeds == [5, 11]


def test_seed_declarations_that_cannot_work_are_refused() -> None:
    with pytest.raises(SpaceError, match=r"repeats=3 but train\.seed lists 2 seeds"):
        Space("s", {"train.seed": Categorical([0, 1])}, repeats=3)
    with pytest.raises(SpaceError, match="not a searched knob"):
        from workbench.space import Int

        Space("s", {"train.seed": Int(0, 9)})
    with pytest.raises(SpaceError, match=r"--repeats 2: the space declares train\.seed"):
        Space("s", {"train.seed": Fixed(4)}).with_repeats(2)
    with pytest.raises(SpaceError, match="repeats=0"):
        Space("s", {}, repeats=0)
    assert Space("s", {}, repeats=4).seeds(base=10) == (10, 11, 12, 13)
    assert Space.from_json(Space("s", {}, repeats=4).to_json()).repeats == 4


def test_a_tuned_lr_is_fit_per_design_and_its_probes_are_stored(tiny_corpus: Path, tmp_path: Path) -> None:
    path = tiny_space(tmp_path, tiny_corpus)
    path.write_text(
        path.read_text()
        .replace('"train.lr": 3e-3,', '"train.lr": Tuned([1e-4, 3e-3, 3e-2], fraction=0.5),')
        .replace("import Budget,", "import Budget, Tuned,")
    )
    space = apply_overrides(load_space(path), {"train.tokens": TOKENS, "memory.kind": "dense"}, repeats=2)
    store = tmp_path / "wb.duckdb"
    run(space, store, trials=1)
    reader = Store.open(store, read_only=True)
    probes = reader.sql("SELECT * FROM tuning ORDER BY probe")
    assert probes["value"].tolist() == [1e-4, 3e-3, 3e-2] and probes["param"].eq("train.lr").all()
    assert (probes["tokens_trained"] < TOKENS).all()
    best = probes.loc[probes["val_loss"].idxmin(), "value"]
    assert probes.loc[probes["chosen"], "value"].tolist() == [best]
    trials = reader.trials("tiny")
    assert trials["train.lr"].tolist() == [best, best]  # both seeds train at the fitted rate
    assert trials["design_hash"].nunique() == 1
    assert reader.sql("SELECT n_seeds FROM designs")["n_seeds"].tolist() == [2]


def test_probes_keep_the_full_runs_warm_up_steps(
    tiny_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A probe of a quarter of the budget warms up for as many steps as the full run (not a
    quarter of them): compressed, the warm-up made the probes pick the lower rate
    (docs/REPLICATION.md, study replicate-probe-warmup)."""
    from workbench.trial import PROBE_MAX_WARMUP, TrialRunner

    path = tiny_space(tmp_path, tiny_corpus)
    path.write_text(
        path.read_text()
        .replace('"train.lr": 3e-3,', '"train.lr": Tuned([1e-3, 3e-3], fraction=0.25),')
        .replace("import Budget,", "import Budget, Tuned,")
    )
    space = apply_overrides(load_space(path), {"train.tokens": 40_000, "memory.kind": "dense"})
    runner = TrialRunner(space, device=torch.device("cpu"))
    seen: list[tuple[int, float]] = []
    real = TrialRunner.train_and_measure

    def spy(self, cfg, trial=None):
        seen.append((cfg.train.tokens, cfg.train.warmup_frac))
        return real(self, cfg, trial)

    monkeypatch.setattr(TrialRunner, "train_and_measure", spy)
    full = space.iter_grid_samples().__next__().config
    runner.tune(full)
    assert [tokens for tokens, _ in seen] == [10_000, 10_000]
    assert all(
        frac == pytest.approx(min(PROBE_MAX_WARMUP, full.train.warmup_frac / 0.25)) for _, frac in seen
    )
    assert seen[0][1] * seen[0][0] == pytest.approx(full.train.warmup_frac * full.train.tokens)


def test_tuned_definitions_that_cannot_work_are_refused() -> None:
    with pytest.raises(SpaceError, match="only train"):
        Space("s", {"model.d_model": Tuned([64, 128])})
    with pytest.raises(SpaceError, match="2 to 8 values"):
        Space("s", {"train.lr": Tuned([1e-3])})
    with pytest.raises(SpaceError, match="fraction"):
        Space("s", {"train.lr": Tuned([1e-3, 2e-3], fraction=0)})
    space = Space("s", {"train.lr": Tuned([1e-3, 2e-3, 4e-3])})
    assert Space.from_json(space.to_json()).params["train.lr"] == space.params["train.lr"]


def test_a_budget_past_one_epoch_warns_before_training(tiny_corpus: Path, tmp_path: Path, capsys) -> None:
    space = apply_overrides(
        load_space(tiny_space(tmp_path, tiny_corpus)), {"train.tokens": 200_000, "train.seconds": 0.5}
    )
    run(space, tmp_path / "wb.duckdb", trials=1)
    err = capsys.readouterr().err
    assert err.count("epochs of corpus") == 1, err


def test_front_probability_separates_clear_from_noisy_designs() -> None:
    x = [1.0, 2.0, 3.0]
    clear = [[10.0, 10.1, 9.9], [5.0, 5.1, 4.9], [20.0, 20.1, 19.9]]  # the third is dominated by the second
    p = front_probability(x, clear, draws=200)
    assert p.tolist() == [1.0, 1.0, 0.0]
    noisy = [[10.0, 4.0, 10.0], [5.0, 9.0, 5.0], [20.0]]
    p = front_probability(x, noisy, draws=200)
    assert 0 < p[1] < 1 and np.isnan(p[2])
