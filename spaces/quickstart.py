"""Quickstart: dense FFN against a top-1 MoE (Switch) on the embedded King James Bible.

Small enough for a 2-core CPU: each trial trains a 2-layer, 64/96-wide GPT on 400k tokens
(8-20 s; the 10 trials take about 2.5 minutes on 2 idle cores, 25 s on an H100).
Run it with ``workbench run spaces/quickstart.py``.
"""

from workbench.space import Budget, Categorical, Constraint, Derived, Float, Objective, Space

space = Space(
    "quickstart",
    {
        "data.corpus": "kjv",
        "data.tokenizer": "bpe",
        "data.vocab_size": 2048,
        "model.seq_len": 128,
        "model.n_layers": 2,
        "model.n_heads": 4,
        "model.d_model": Categorical([64, 96]),
        "memory.kind": Categorical(["dense", "switch"]),
        "memory.d_ff": Derived("4 * model.d_model", when={"memory.kind": "dense"}),
        "memory.n_experts": Categorical([4, 8], when={"memory.kind": "switch"}),
        # Equal active width: each expert is as wide as the dense FFN it competes with.
        "memory.expert_width": Derived("4 * model.d_model", when={"memory.kind": "switch"}),
        "train.batch_size": 16,
        "train.lr": Float(2e-3, 6e-3, log=True, grid=[3e-3]),
        "train.eval_tokens": 16_384,
    },
    constraints=[Constraint("cost.params_total <= 3_000_000", name="at most 3M parameters")],
    objectives=[Objective("val_ppl", "minimize"), Objective("flops_per_token", "minimize")],
    budget=Budget(tokens=400_000),
    trials=10,
    # Both designs are trained first; the sampler then explores widths and learning rates.
    cover=["memory.kind"],
)
