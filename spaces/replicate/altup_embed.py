"""Is AltUp's loss in its wide embedding? (docs/REPLICATION.md, AltUp)

At 8 layers AltUp (K = 2) ends 10% worse than dense while Recycled-AltUp, the same model with a
D-wide embedding replicated K times, is level with dense or better, with or without weight
decay on the mixing scalars (spaces/replicate/altup_decay.py). So what AltUp adds over Recycled,
the K-times wider embedding, is what costs it. Its K slices are drawn independently, and the LM
head is tied to their mean, so no block reads the embedding the head scores with. The grid:
AltUp with its slices drawn independently (as stored) or replicated from one draw (it starts as
Recycled-AltUp and the slices part in training), beside Recycled-AltUp and dense; the depth
study's scale otherwise (8 layers, lr 4e-3), three seeds.

    workbench run spaces/replicate/altup_embed.py --device cuda --sampler grid --workers 3
"""

from workbench.space import Budget, Categorical, Objective, Space

space = Space(
    "replicate-altup-embed",
    {
        "data.corpus": "en-mix",
        "data.tokenizer": "bpe",
        "data.vocab_size": 2048,
        "model.seq_len": 256,
        "model.n_layers": 8,
        "model.d_model": 256,
        "model.n_heads": 4,
        "model.altup_k": Categorical([1, 2]),
        "model.altup_variant": Categorical(["altup", "recycled"], when={"model.altup_k": 2}),
        "model.altup_embed_init": Categorical(
            ["independent", "replicated"], when={"model.altup_variant": "altup", "model.altup_k": 2}
        ),
        "memory.kind": "dense",
        "memory.d_ff": 1024,
        "train.batch_size": 64,
        "train.lr": 4e-3,
        "train.eval_tokens": 262_144,
        # Scored as the depth study was, on the head of the validation split.
        "train.eval_windows": "head",
    },
    objectives=[Objective("val_ppl", "minimize"), Objective("flops_per_token", "minimize")],
    budget=Budget(tokens=24_000_000),
    trials=4,
    repeats=3,
)
