"""Hash layers (Roller et al., NeurIPS 2021): which fixed token-to-expert function works best?

Tests the hash-layer claims (docs/DESIGN.md §2) at small scale: balanced ≈ random < bigram / previous-token /
position, dispersed < clustered, and hash ≈ Switch at equal parameters (Switch is included
as the learned-router reference). Every hash variant is tried once first (``cover``).

All layers hold 8 experts of 4*d cells; one expert is read per token (MultiHash reads
n_hashes slices of width/n_hashes), so active FLOPs are equal up to Switch's router.

    workbench run spaces/hash_layers.py --device cuda
    workbench run spaces/hash_layers.py --device cpu --trials 10 --set train.tokens=60000 --set data.corpus=kjv   # CPU smoke run
"""

from workbench.space import Budget, Categorical, Objective, Space, Tuned

space = Space(
    "hash-layers",
    {
        "data.corpus": "en-mix",  # 5M tokens is 4.6 epochs of KJV, 0.14 of en-mix
        "data.vocab_size": 2048,
        "model.seq_len": 128,
        "model.d_model": 128,
        "model.n_layers": 4,
        "model.n_heads": 4,
        # MoE in every other layer, as in the paper's setups.
        "model.placement": "every:2",
        "memory.kind": Categorical(["hash", "switch"]),
        "memory.n_experts": 8,
        "memory.expert_width": 512,
        "memory.variant": Categorical(
            ["random", "balanced", "bigram", "previous", "position", "clustered", "dispersed", "multihash"],
            when={"memory.kind": "hash"},
        ),
        "memory.n_hashes": Categorical([4], when={"memory.variant": "multihash"}),
        "train.batch_size": 32,
        "train.lr": Tuned([1e-3, 2e-3, 4e-3, 8e-3]),  # fit to each design (docs/METHODOLOGY.md)
        "train.eval_tokens": 65_536,
    },
    objectives=[Objective("val_ppl", "minimize")],
    budget=Budget(tokens=5_000_000),
    trials=16,
    cover=["memory.kind", "memory.variant"],
)
