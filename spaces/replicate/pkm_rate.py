"""Does PKM lose to dense because of its rates? (docs/REPLICATION.md, "BASE and PKM lose")

In the S-FFN study PKM (128^2 slots, 4 heads x top-32) ended 19% worse than dense and its probes
chose the lowest rate of the grid (1e-3; 2e-3 and 4e-3 were worse), so its optimum may lie
lower. Its value tables also trained at the base rate, where the PKM paper (Lample et al. 2019)
gives them a higher one without weight decay (``train.memory_value_lr_scale``; no decay is the
workbench's default for value tables). The grid: base rate 5e-4 or 1e-3 x value-table rate 1x or
8x the base, two seeds, the suite's scale otherwise (spaces/replicate/sffn.py).

    workbench run spaces/replicate/pkm_rate.py --device cuda --sampler grid --workers 3
"""

from workbench.space import Budget, Categorical, Objective, Space

space = Space(
    "replicate-pkm-rate",
    {
        "data.corpus": "en-mix",
        "data.tokenizer": "bpe",
        "data.vocab_size": 2048,
        "model.seq_len": 256,
        "model.n_layers": 4,
        "model.d_model": 256,
        "model.n_heads": 4,
        "memory.kind": "pkm",
        "memory.n_keys": 128,
        "memory.n_heads": 4,
        "memory.k": 32,
        "train.batch_size": 64,
        "train.lr": Categorical([5e-4, 1e-3]),
        "train.memory_value_lr_scale": Categorical([1.0, 8.0]),
        "train.eval_tokens": 262_144,
        # Scored on the head of the validation split, as every stored run of the suite was;
        # docs/METHODOLOGY.md ("Where the validation windows lie") says what that measures.
        "train.eval_windows": "head",
    },
    objectives=[Objective("val_ppl", "minimize"), Objective("flops_per_token", "minimize")],
    budget=Budget(tokens=24_000_000),
    trials=4,
    repeats=2,
)
