"""Did weight decay on AltUp's mixing scalars cost AltUp its gain? (docs/REPLICATION.md, AltUp)

Until 2026-12-03 the optimizer decayed every parameter of two or more dimensions, which put
AltUp's predict matrix (K x K scalars per layer, identity at init) and its correction gains
(ones at init) under weight decay 0.1: a pull towards blocks that neither predict nor correct
each other. At 8 layers AltUp (K = 2) then ended 10% worse than dense and Recycled-AltUp level
with it (spaces/replicate/altup_depth.py), where Baykal et al. find AltUp > Recycled > dense.
The grid: AltUp and Recycled-AltUp with the scalars decayed (as stored) or not (the default
now), and dense, at 8 layers, lr 4e-3 (the rate the depth study fit for all three), three seeds.

    workbench run spaces/replicate/altup_decay.py --device cuda --sampler grid --workers 3
"""

from workbench.space import Budget, Categorical, Objective, Space

space = Space(
    "replicate-altup-decay",
    {
        "data.corpus": "en-mix",
        "data.tokenizer": "bpe",
        "data.vocab_size": 2048,
        "model.seq_len": 256,
        "model.n_layers": 8,
        "model.d_model": 256,
        "model.n_heads": 4,
        "model.altup_k": Categorical([1, 2]),
        "model.altup_variant": Categorical(["altup", "recycled"], when={"model.altup_k": 2}),
        "memory.kind": "dense",
        "memory.d_ff": 1024,
        "train.batch_size": 64,
        "train.lr": 4e-3,
        "train.altup_weight_decay": Categorical([True, False], when={"model.altup_k": 2}),
        "train.eval_tokens": 262_144,
        # Scored as the depth study was, on the head of the validation split
        # (docs/METHODOLOGY.md, "Where the validation windows lie").
        "train.eval_windows": "head",
    },
    objectives=[Objective("val_ppl", "minimize"), Objective("flops_per_token", "minimize")],
    budget=Budget(tokens=24_000_000),
    trials=5,
    repeats=3,
)
