"""Avg-K block selection against the 24M-token baselines (docs/REPLICATION.md; Liu et al., EMNLP 2023).

The scale of spaces/replicate/switch_gate.py at 24M tokens (4 layers, d=256, en-mix, under one
epoch): a memory of 16 x 1024 = 16,384 cells, the Switch/hash layers' total, of which 1024 are
read per token (the dense FFN's active cells) as k blocks of g cells, k*g = 1024, selected by
the mean key of each block. Avg-K's selector scores every block (D x B multiply-adds), so a
smaller g costs more FLOPs: g=256 adds 3%, g=64 12% over the dense FFN's.

    workbench run spaces/replicate/avgk.py --device cuda --sampler grid --workers 2
"""

from workbench.space import Budget, Categorical, Derived, Objective, Space

space = Space(
    "replicate-avgk-24M",
    {
        "data.corpus": "en-mix",
        "data.tokenizer": "bpe",
        "data.vocab_size": 2048,
        "model.seq_len": 256,
        "model.n_layers": 4,
        "model.d_model": 256,
        "model.n_heads": 4,
        "memory.kind": "avgk",
        "memory.d_ff": 16_384,
        "memory.block_size": Categorical([256, 64]),
        "memory.k": Derived("1024 // memory.block_size"),
        "train.batch_size": 64,
        "train.lr": 2e-3,
        "train.eval_tokens": 262_144,
    },
    objectives=[Objective("val_ppl", "minimize"), Objective("flops_per_token", "minimize")],
    budget=Budget(tokens=24_000_000),
    trials=2,
    repeats=3,
)
