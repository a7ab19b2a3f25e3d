"""External memories read by lookup (Baykal et al. 2023): token-id tables, LSH buckets of the
hidden vector, and learned softmax routing to table entries, against the dense baseline.

Tests the external-memory claims (docs/DESIGN.md §2, §3) at small scale: a per-layer token-id table added to the residual
helps at zero extra matmul FLOPs. Consumption is a free axis where the method allows it:
``add`` (lookup added beside the dense FFN), ``concat`` (lookup concatenated to the FFN
input) or ``expert`` (for LSH: the bucket selects an expert FFN). Placement is a free axis.

    workbench run spaces/external_memory.py --device cuda
    workbench run spaces/external_memory.py --device cpu --trials 6 --set train.tokens=60000 --set data.corpus=kjv   # CPU smoke run
"""

from workbench.space import Budget, Categorical, Objective, Space, Tuned

space = Space(
    "external-memory",
    {
        "data.corpus": "en-mix",  # 5M tokens is 4.6 epochs of KJV, 0.14 of en-mix
        "data.vocab_size": 2048,
        "model.seq_len": 128,
        "model.d_model": 128,
        "model.n_layers": 4,
        "model.n_heads": 4,
        "memory.kind": Categorical(["dense", "token_table", "lsh", "softmax_table"]),
        "model.placement": Categorical(["all", "every:2", "0"]),
        "memory.d_ff": 512,
        "memory.consume": Categorical(
            ["add", "concat"], when={"memory.kind": ["token_table", "lsh", "softmax_table"]}
        ),
        "memory.n_bits": Categorical([6, 8], when={"memory.kind": "lsh"}),
        "memory.n_tables": Categorical([1, 2], when={"memory.kind": "lsh"}),
        "memory.n_entries": Categorical([256, 1024], when={"memory.kind": "softmax_table"}),
        "memory.k": Categorical([8], when={"memory.kind": "softmax_table"}),
        "train.batch_size": 32,
        "train.lr": Tuned([1e-3, 2e-3, 4e-3, 8e-3]),  # fit to each design (docs/METHODOLOGY.md)
        "train.eval_tokens": 65_536,
    },
    objectives=[Objective("val_ppl", "minimize"), Objective("flops_per_token", "minimize")],
    budget=Budget(tokens=5_000_000),
    trials=16,
    cover=["memory.kind"],
)
