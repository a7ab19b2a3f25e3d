"""External memory read by lookup (Baykal et al., 2023) at the replication scale.

Claims (docs/REPLICATION.md): a per-layer token-id table added to the residual lowers perplexity
at about zero added matmul FLOPs; LSH-bucket and softmax-routed tables lie between it and dense;
and the three ways of consuming a lookup (``add`` beside the dense FFN, ``concat`` to the FFN's
input, ``expert``: the row selects an expert FFN) compared. Every design keeps a dense FFN of
1024 cells (4d) where its consume mode has one. Six designs: dense; the token table under each
consume mode; LSH (2 tables of 2^8 buckets) and a softmax-routed table (1024 entries, top 8),
both ``add``.

Scale: as spaces/replicate/sffn.py (4 layers, d=256, en-mix, 24M tokens, 3 seeds, lr fit per design).

    workbench run spaces/replicate/external.py --device cuda --sampler grid --workers 3
"""

from workbench.space import Budget, Categorical, Objective, Space, Tuned

space = Space(
    "replicate-external",
    {
        "data.corpus": "en-mix",
        "data.tokenizer": "bpe",
        "data.vocab_size": 2048,
        "model.seq_len": 256,
        "model.n_layers": 4,
        "model.d_model": 256,
        "model.n_heads": 4,
        "memory.kind": Categorical(["dense", "token_table", "lsh", "softmax_table"]),
        "memory.d_ff": 1024,
        "memory.consume": Categorical(["add", "concat", "expert"], when={"memory.kind": "token_table"}),
        "memory.n_bits": Categorical([8], when={"memory.kind": "lsh"}),
        "memory.n_tables": Categorical([2], when={"memory.kind": "lsh"}),
        "memory.n_entries": Categorical([1024], when={"memory.kind": "softmax_table"}),
        "memory.k": Categorical([8], when={"memory.kind": "softmax_table"}),
        "train.batch_size": 64,
        "train.lr": Tuned([1e-3, 2e-3, 4e-3]),  # fit to each design (docs/METHODOLOGY.md)
        "train.eval_tokens": 262_144,
        # Scored on the head of the validation split, as every stored run of the suite was;
        # docs/METHODOLOGY.md ("Where the validation windows lie") says what that measures.
        "train.eval_windows": "head",
    },
    objectives=[Objective("val_ppl", "minimize"), Objective("flops_per_token", "minimize")],
    budget=Budget(tokens=24_000_000),
    trials=6,
    repeats=3,
)
