"""AltUp (Baykal et al., NeurIPS 2023) at the replication scale.

Claims (docs/REPLICATION.md): AltUp with K=2 beats the dense model of width d at nearly equal
FLOPs; Recycled-AltUp lands between the two; AltUp combined with a MoE (here Switch, 16 experts
of 1024 cells) compounds the gains. The grid: K in {1, 2} x {altup, recycled} x {dense, switch}
(K=1 is the plain model, so it has no variant): six designs.

Scale: as spaces/replicate/sffn.py (4 layers, d=256, en-mix, 24M tokens, 3 seeds, lr fit per design).

    workbench run spaces/replicate/altup.py --device cuda --sampler grid --workers 3
"""

from workbench.space import Budget, Categorical, Derived, Objective, Space, Tuned

space = Space(
    "replicate-altup",
    {
        "data.corpus": "en-mix",
        "data.tokenizer": "bpe",
        "data.vocab_size": 2048,
        "model.seq_len": 256,
        "model.n_layers": 4,
        "model.d_model": 256,
        "model.n_heads": 4,
        "model.altup_k": Categorical([1, 2]),
        "model.altup_variant": Categorical(["altup", "recycled"], when={"model.altup_k": 2}),
        "memory.kind": Categorical(["dense", "switch"]),
        "memory.d_ff": Derived("1024", when={"memory.kind": "dense"}),
        "memory.n_experts": Derived("16", when={"memory.kind": "switch"}),
        "memory.expert_width": Derived("1024", when={"memory.kind": "switch"}),
        "train.batch_size": 64,
        "train.lr": Tuned([1e-3, 2e-3, 4e-3]),  # fit to each design (docs/METHODOLOGY.md)
        "train.eval_tokens": 262_144,
        # Scored on the head of the validation split, as every stored run of the suite was;
        # docs/METHODOLOGY.md ("Where the validation windows lie") says what that measures.
        "train.eval_windows": "head",
        # Trained as every stored run of it was: AltUp's mixing scalars under weight decay
        # (spaces/replicate/altup_decay.py measures what that cost).
        "train.altup_weight_decay": True,
    },
    objectives=[Objective("val_ppl", "minimize"), Objective("flops_per_token", "minimize")],
    budget=Budget(tokens=24_000_000),
    trials=6,
    repeats=3,
)
