"""Why does Switch lose to dense at small budgets? An ablation of the top-1 gate (docs/REPLICATION.md).

At equal active FLOPs (16 experts as wide as the dense FFN), with the methodology study's
scale (4 layers, d=256, 6M tokens of the large corpus, under one epoch) and two seeds:
dense; a balanced hash layer (gate 1, fixed routing); Switch with its gate as the paper has it
(the router probability, about 1/16 at init) or straight-through (value 1, the probability's
gradient), each with and without the load-balancing loss. (The stored study also has GShard at
k=1 with renormalised gates, value 1 and no router gradient but the balancing loss; the
workbench now refuses that combination.)

    workbench run spaces/replicate/switch_gate.py --device cuda --sampler grid --workers 2
    # dense, hash and switch at 24M tokens, three seeds (study replicate-24M):
    workbench run spaces/replicate/switch_gate.py --device cuda --sampler grid --workers 2 \
        --repeats 3 --set train.tokens=24000000 --set memory.gate=prob --set memory.aux_loss_coef=0.01
"""

from workbench.space import Budget, Categorical, Derived, Objective, Space

space = Space(
    "replicate-switch-gate",
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
        "memory.kind": Categorical(["dense", "hash", "switch"]),
        "memory.d_ff": Derived("4 * model.d_model", when={"memory.kind": "dense"}),
        "memory.n_experts": Categorical([16], when={"memory.kind": ["hash", "switch"]}),
        "memory.expert_width": Derived("4 * model.d_model", when={"memory.kind": ["hash", "switch"]}),
        "memory.variant": Categorical(["balanced"], when={"memory.kind": "hash"}),
        "memory.gate": Categorical(["prob", "straight"], when={"memory.kind": "switch"}),
        "memory.aux_loss_coef": Categorical([0.01, 0.0], when={"memory.kind": "switch"}),
        "train.batch_size": 64,
        "train.lr": 2e-3,
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
