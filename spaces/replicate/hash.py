"""Hash Layers (Roller et al., NeurIPS 2021) at the replication scale.

Claims (docs/REPLICATION.md): hash ≈ Switch at 16 experts and hash better at 64; balanced ≈
random hashing, both better than bigram, previous-token and position hashing; dispersed better
than clustered; MultiHash at least as good as a single hash. Every layer holds n experts of 1024
cells (4d) and reads one per token (MultiHash: 4 slices of 256), so active FLOPs equal dense up
to Switch's router. Dense, hash-balanced and Switch at 16 experts are in
spaces/replicate/sffn.py under the same settings.

Scale: as spaces/replicate/sffn.py (4 layers, d=256, en-mix, 24M tokens, 3 seeds, lr fit per design).

    workbench run spaces/replicate/hash.py --device cuda --sampler grid --workers 3
"""

from workbench.space import Budget, Categorical, Derived, Objective, Space, Tuned

space = Space(
    "replicate-hash",
    {
        "data.corpus": "en-mix",
        "data.tokenizer": "bpe",
        "data.vocab_size": 2048,
        "model.seq_len": 256,
        "model.n_layers": 4,
        "model.d_model": 256,
        "model.n_heads": 4,
        # As the study was first run and stored (before gpt2 became the default init).
        "model.ffn_init": "layer",
        "memory.kind": Categorical(["hash", "switch"]),
        # One label per hash design: the variant at 16 experts, and balanced at 64.
        "aux.hash": Categorical(
            [
                "random",
                "bigram",
                "previous",
                "position",
                "clustered",
                "dispersed",
                "multihash",
                "balanced-64",
            ],
            when={"memory.kind": "hash"},
        ),
        "memory.variant": Derived(
            "'balanced' if aux.hash == 'balanced-64' else aux.hash", when={"memory.kind": "hash"}
        ),
        "memory.n_hashes": Derived("4 if aux.hash == 'multihash' else 1", when={"memory.kind": "hash"}),
        "memory.n_experts": Derived("16 if memory.kind == 'hash' and aux.hash != 'balanced-64' else 64"),
        "memory.expert_width": 1024,
        "train.batch_size": 64,
        "train.lr": Tuned([1e-3, 2e-3]),  # fit to each design (docs/METHODOLOGY.md)
        "train.eval_tokens": 262_144,
        # Scored on the head of the validation split, as every stored run of the suite was;
        # docs/METHODOLOGY.md ("Where the validation windows lie") says what that measures.
        "train.eval_windows": "head",
    },
    objectives=[Objective("val_ppl", "minimize"), Objective("flops_per_token", "minimize")],
    budget=Budget(tokens=24_000_000),
    trials=9,
    repeats=3,
)
