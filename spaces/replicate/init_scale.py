"""Does the initial scale of the FFN slot decide whether sparse layers beat dense? (docs/REPLICATION.md)

At 24M tokens neither hash nor Switch (16 experts, 16x the FFN's cells) beat the dense FFN, where
the papers find both better. One candidate the issue names is the experts' initial scale: the
dense FFN's matrices are nn.Linear and get the model's N(0, 0.02), while expert banks draw
N(0, 1/fan_in): at d = 256 and 1024 cells, 3x larger first matrices and 1.5x larger second
ones. With Adam's fixed-size steps, a larger matrix moves relatively less. This grid swaps the
scales (``model.ffn_init``): dense, balanced hash, Switch and Avg-K (g = 256, k = 4), each
under ``gpt2`` (every FFN matrix N(0, 0.02)) and ``fan_in`` (every one N(0, 1/fan_in)), at the
suite's scale (spaces/replicate/sffn.py), three seeds, the rate fit per design.

    workbench run spaces/replicate/init_scale.py --device cuda --sampler grid --workers 3
"""

from workbench.space import Budget, Categorical, Derived, Objective, Space, Tuned

space = Space(
    "replicate-init",
    {
        "data.corpus": "en-mix",
        "data.tokenizer": "bpe",
        "data.vocab_size": 2048,
        "model.seq_len": 256,
        "model.n_layers": 4,
        "model.d_model": 256,
        "model.n_heads": 4,
        "model.ffn_init": Categorical(["gpt2", "fan_in"]),
        "memory.kind": Categorical(["dense", "hash", "switch", "avgk"]),
        "memory.d_ff": Derived(
            "1024 if memory.kind == 'dense' else 16384", when={"memory.kind": ["dense", "avgk"]}
        ),
        "memory.block_size": Categorical([256], when={"memory.kind": "avgk"}),
        "memory.k": Categorical([4], when={"memory.kind": "avgk"}),
        "memory.n_experts": Derived("16", when={"memory.kind": ["hash", "switch"]}),
        "memory.expert_width": Derived("1024", when={"memory.kind": ["hash", "switch"]}),
        "memory.variant": Categorical(["balanced"], when={"memory.kind": "hash"}),
        "train.batch_size": 64,
        "train.lr": Tuned([1e-3, 2e-3]),
        "train.eval_tokens": 262_144,
        # Scored on the head of the validation split, as every stored run of the suite was;
        # docs/METHODOLOGY.md ("Where the validation windows lie") says what that measures.
        "train.eval_windows": "head",
    },
    objectives=[Objective("val_ppl", "minimize"), Objective("flops_per_token", "minimize")],
    budget=Budget(tokens=24_000_000),
    trials=8,
    repeats=3,
)
