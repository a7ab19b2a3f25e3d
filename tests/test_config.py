"""Trial configs: the config hash is pinned, and the dotted-name path builds the same config."""

from __future__ import annotations

import pytest

from workbench.config import DataConfig, ModelConfig, TrainConfig, TrialConfig, trial_config_from_flat
from workbench.errors import ConfigError
from workbench.memory.switch import SwitchConfig
from workbench.record import config_digest

# Every field is spelled out, so the hash below depends on the serialisation and the set of
# fields, not on today's defaults.
PINNED = TrialConfig(
    data=DataConfig(corpus="kjv", tokenizer="bpe", vocab_size=1024, val_fraction=0.05, cache_dir=""),
    model=ModelConfig(
        seq_len=64,
        d_model=32,
        n_layers=2,
        n_heads=4,
        d_ff=0,
        placement="all",
        altup_k=1,
        altup_variant="altup",
        ffn_init="layer",
        memory=SwitchConfig(
            n_experts=4, expert_width=64, n_shared=0, aux_loss_coef=0.01, capacity_factor=0.0, impl="auto"
        ),
    ),
    train=TrainConfig(
        tokens=65_536,
        seconds=0.0,
        batch_size=8,
        lr=2e-3,
        min_lr_ratio=0.1,
        warmup_frac=0.05,
        weight_decay=0.1,
        beta1=0.9,
        beta2=0.95,
        grad_clip=1.0,
        eval_every=0,
        eval_tokens=4096,
        eval_windows="head",
        dtype="auto",
        compile=False,
        master_weights=True,
        altup_weight_decay=False,
        seed=7,
    ),
)


def test_config_hash_is_pinned() -> None:
    # Stored trials carry this hash (wb.config_hash), and a study reuses a finished trial whose
    # hash matches instead of training it again. A different hash here means every stored
    # study's configs hash differently from now on: duplicates and twins silently stop matching.
    # Adding or renaming a field, or changing how configs serialise, does that; update the
    # literal only as a deliberate decision, and say so in the change.
    # switch gained `gate` (2026-12-02): c0e9a7ca0ba3bb27
    # train gained memory_value_lr_scale and sparse_values (2026-12-02)
    # model gained ffn_init (2026-12-03); "layer", the init before it, stays out of the digest.
    # train gained eval_windows (2026-12-03); "head", the windows before it, stays out too.
    # train gained altup_weight_decay (2026-12-03), left out of the digest without AltUp.
    assert PINNED.config_hash() == "c435a74bc57e552a"


def test_a_new_default_init_hashes_apart_from_the_stored_runs() -> None:
    # Runs stored before model.ffn_init existed trained under "layer"; the default is now "gpt2",
    # a different model, so a resumed old study must not count its new runs as more seeds of the
    # old designs.
    from dataclasses import replace

    assert ModelConfig().ffn_init == "gpt2"
    gpt2 = replace(PINNED, model=replace(PINNED.model, ffn_init="gpt2"))
    assert gpt2.config_hash() != PINNED.config_hash()


def test_spread_eval_windows_hash_apart_from_the_stored_runs() -> None:
    # Runs stored before train.eval_windows existed were scored on the head of the validation
    # split; a run scored over all of it measures a different number, so it is a different run.
    from dataclasses import replace

    assert TrainConfig().eval_windows == "spread"
    spread = replace(PINNED, train=replace(PINNED.train, eval_windows="spread"))
    assert spread.config_hash() != PINNED.config_hash()
    assert spread.design_hash() != PINNED.design_hash()


def test_altup_weight_decay_rehashes_altup_designs_only() -> None:
    # Stored AltUp runs decayed AltUp's scalars (the legacy True); without AltUp the knob
    # cannot change a run, so no other design's hash moves with it.
    from dataclasses import replace

    assert TrainConfig().altup_weight_decay is False
    for value in (False, True):
        plain = replace(PINNED, train=replace(PINNED.train, altup_weight_decay=value))
        assert plain.config_hash() == PINNED.config_hash()
    altup = replace(PINNED, model=replace(PINNED.model, altup_k=2))
    legacy = replace(altup, train=replace(altup.train, altup_weight_decay=True))
    stored = altup.to_dict()
    del stored["train"]["altup_weight_decay"]  # a run stored before the knob existed
    assert legacy.config_hash() == config_digest(stored)
    assert altup.config_hash() != legacy.config_hash()
    assert altup.design_hash() != legacy.design_hash()


def test_an_unknown_eval_placement_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"train\.eval_windows: 'tail' is not one of spread, head"):
        trial_config_from_flat({"train.eval_windows": "tail"})


def test_dotted_names_build_the_pinned_config() -> None:
    # Spaces sample dotted names; they must hash the same as the config written out by hand.
    flat = {f"{section}.{k}": v for section, values in PINNED.to_dict().items() for k, v in values.items()}
    built = trial_config_from_flat(flat)
    assert built == PINNED
    assert built.config_hash() == PINNED.config_hash()
