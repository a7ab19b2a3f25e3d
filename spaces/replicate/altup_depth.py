"""Is AltUp's loss at four layers a depth effect? (docs/REPLICATION.md, "AltUp at four layers")

At 4 layers AltUp (K = 2) was level with dense and Recycled-AltUp 9% better than both, where
Baykal et al. find AltUp > Recycled > dense. AltUp computes one of its two sub-blocks per layer,
alternating, so at 4 layers each sub-block is computed by only two layers; the paper's models
are 8-24 layers deep. The same three designs at 8 layers, all else as the suite
(spaces/replicate/altup.py): if AltUp passes Recycled here, depth explains the 4-layer result.

    workbench run spaces/replicate/altup_depth.py --device cuda --sampler grid --workers 3
"""

from workbench.space import Budget, Categorical, Derived, Objective, Space, Tuned

space = Space(
    "replicate-altup-depth",
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
        "memory.d_ff": Derived("1024"),
        "train.batch_size": 64,
        "train.lr": Tuned([1e-3, 2e-3, 4e-3]),
        "train.eval_tokens": 262_144,
        # Scored on the head of the validation split, as every stored run of the suite was;
        # docs/METHODOLOGY.md ("Where the validation windows lie") says what that measures.
        "train.eval_windows": "head",
        # Trained as every stored run of it was: AltUp's mixing scalars under weight decay
        # (spaces/replicate/altup_decay.py measures what that cost).
        "train.altup_weight_decay": True,
    },
    objectives=[Objective("val_ppl", "minimize"), Objective("flops_per_token", "minimize")],
    budget=Budget(tokens=24_000_000),
    trials=3,
    repeats=3,
)
