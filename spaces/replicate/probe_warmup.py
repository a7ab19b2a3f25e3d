"""Why did the learning-rate probes pick 1e-3 where the full budget wants 2e-3? (docs/REPLICATION.md)

At 24M tokens (1465 steps) dense and Switch reach 30.9 and 32.1 ppl at lr 2e-3 but 38.9 and
39.9 at 1e-3, the rate their probes (1/4 of the budget, schedule compressed) chose. A probe
compresses the warm-up with the schedule: 5% of 366 steps is 18 steps, against 73 in the full
run. This grid isolates the warm-up: the probe's budget (6M tokens) at both rates, with the
compressed warm-up (5%) and with the full run's 73 steps (20% of 366), two seeds each.

    workbench run spaces/replicate/probe_warmup.py --device cuda --sampler grid --workers 3
"""

from workbench.space import Budget, Categorical, Derived, Objective, Space

space = Space(
    "replicate-probe-warmup",
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
        "memory.kind": Categorical(["dense", "switch"]),
        "memory.d_ff": Derived("1024", when={"memory.kind": "dense"}),
        "memory.n_experts": Derived("16", when={"memory.kind": "switch"}),
        "memory.expert_width": Derived("1024", when={"memory.kind": "switch"}),
        "train.lr": Categorical([1e-3, 2e-3]),
        "train.warmup_frac": Categorical([0.05, 0.2]),
        "train.batch_size": 64,
        "train.eval_tokens": 262_144,
        # Scored on the head of the validation split, as every stored run of the suite was;
        # docs/METHODOLOGY.md ("Where the validation windows lie") says what that measures.
        "train.eval_windows": "head",
    },
    objectives=[Objective("val_ppl", "minimize"), Objective("flops_per_token", "minimize")],
    budget=Budget(tokens=6_000_000),
    trials=8,
    repeats=2,
)
