"""Avg-K's selection collapses onto a few blocks: can a balancing loss or a unit block key stop it?

In the first S-FFN run, Avg-K at g = 1024 (16 blocks, k = 1) had layer 0's load entropy at 0.13
of a possible 2.77, and at g = 256 69% of layer 0's blocks were never read (docs/REPLICATION.md).
This grid crosses the block size with the two remedies Avg-K can take without new parameters
(workbench/memory/avgk.py): Switch's balancing loss on the softmax of the block scores
(``aux_loss_coef`` 0.01), and block keys scaled to unit length (``block_key = "unit"``). The
table ``routing`` holds each run's load entropy; two seeds, lr 2e-3 (the rate the suite's
probes fit for Avg-K), the suite's scale otherwise (spaces/replicate/sffn.py).

    workbench run spaces/replicate/avgk_collapse.py --device cuda --sampler grid --workers 3
"""

from workbench.space import Budget, Categorical, Derived, Objective, Space

space = Space(
    "replicate-avgk-collapse",
    {
        "data.corpus": "en-mix",
        "data.tokenizer": "bpe",
        "data.vocab_size": 2048,
        "model.seq_len": 256,
        "model.n_layers": 4,
        "model.d_model": 256,
        "model.n_heads": 4,
        "memory.kind": "avgk",
        "memory.d_ff": 16384,
        "memory.block_size": Categorical([1024, 256]),
        "memory.k": Derived("1024 // memory.block_size"),
        "memory.block_key": Categorical(["mean", "unit"]),
        "memory.aux_loss_coef": Categorical([0.0, 0.01]),
        "train.batch_size": 64,
        "train.lr": 2e-3,
        "train.eval_tokens": 262_144,
        # Scored on the head of the validation split, as every stored run of the suite was;
        # docs/METHODOLOGY.md ("Where the validation windows lie") says what that measures.
        "train.eval_windows": "head",
    },
    objectives=[Objective("val_ppl", "minimize"), Objective("flops_per_token", "minimize")],
    budget=Budget(tokens=24_000_000),
    trials=8,
    repeats=2,
)
