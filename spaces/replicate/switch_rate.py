"""Why can hash train at 4e-3 and Switch not? (docs/REPLICATION.md, "Switch against hash")

With the rate fit per design, balanced hash (16 experts) took 4e-3 and beat Switch by 11%; Switch's
probe at 4e-3 ended at 124 ppl against 88 at 2e-3, so it kept 2e-3. At one shared rate the two
were level. Candidate: the router's softmax saturates at the higher rate. ST-MoE's router z-loss
(Zoph et al. 2022; ``memory.z_loss_coef``) is the standard remedy. The grid: Switch at 2e-3 or
4e-3 x z-loss 0 or 1e-3, two seeds, the suite's scale otherwise (spaces/replicate/sffn.py).

    workbench run spaces/replicate/switch_rate.py --device cuda --sampler grid --workers 3
"""

from workbench.space import Budget, Categorical, Objective, Space

space = Space(
    "replicate-switch-rate",
    {
        "data.corpus": "en-mix",
        "data.tokenizer": "bpe",
        "data.vocab_size": 2048,
        "model.seq_len": 256,
        "model.n_layers": 4,
        "model.d_model": 256,
        "model.n_heads": 4,
        "memory.kind": "switch",
        "memory.n_experts": 16,
        "memory.expert_width": 1024,
        "memory.z_loss_coef": Categorical([0.0, 1e-3]),
        "train.batch_size": 64,
        "train.lr": Categorical([2e-3, 4e-3]),
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
