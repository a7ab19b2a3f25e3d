"""AltUp (Baykal et al., NeurIPS 2023): a K-times wider residual stream at nearly the same compute.

Tests the AltUp claims (docs/DESIGN.md §4) at small scale: AltUp K=2 beats the dense baseline of width d at
nearly equal FLOPs, Recycled-AltUp lands in between; Sequence-AltUp is the stride variant.
The memory layer in the FFN slot is a free axis (dense or a Switch MoE), since AltUp
combines with any of them. Each AltUp setting is tried once first (``cover``).

    workbench run spaces/altup.py --device cuda
    workbench run spaces/altup.py --device cpu --trials 6 --set train.tokens=60000 --set data.corpus=kjv   # CPU smoke run
"""

from workbench.space import Budget, Categorical, Derived, Objective, Space, Tuned

space = Space(
    "altup",
    {
        "data.corpus": "en-mix",  # 5M tokens is 4.6 epochs of KJV, 0.14 of en-mix
        "data.vocab_size": 2048,
        "model.seq_len": 128,
        "model.d_model": 128,
        "model.n_layers": 4,
        "model.n_heads": 4,
        "model.altup_k": Categorical([1, 2, 4]),
        "model.altup_variant": Categorical(["altup", "recycled", "sequence"]),
        "memory.kind": Categorical(["dense", "switch"]),
        "memory.d_ff": Derived("4 * model.d_model", when={"memory.kind": "dense"}),
        "memory.n_experts": Categorical([8], when={"memory.kind": "switch"}),
        "memory.expert_width": Derived("4 * model.d_model", when={"memory.kind": "switch"}),
        "train.batch_size": 32,
        "train.lr": Tuned([1e-3, 2e-3, 4e-3, 8e-3]),  # fit to each design (docs/METHODOLOGY.md)
        "train.eval_tokens": 65_536,
    },
    objectives=[Objective("val_ppl", "minimize"), Objective("flops_per_token", "minimize")],
    budget=Budget(tokens=5_000_000),
    trials=16,
    cover=["model.altup_k", "model.altup_variant"],
)
