"""Where does BASE lose to dense? (docs/REPLICATION.md, "BASE loses to dense")

In the S-FFN suite BASE (16 experts of 1024 cells, lr 2e-3) ended 13% worse than dense, and
bench/base_mismatch.py ruled out its train/eval mismatch: greedy evaluation scores it better
than the balanced assignment it trains with. Two parts of the paper's layer remain:
* the balanced assignment itself, which puts part of every batch on experts that score it
  low, so each expert trains partly on tokens it will not see at inference
  (``memory.train_routing=greedy`` trains with the eval-time top-1 instead, no balance);
* the sigmoid gate, about 0.5 at init, which halves an expert's output against dense's
  (``memory.gate=straight`` reads it at weight 1 with the sigmoid's gradient).
The grid crosses the two, with dense beside them, at the suite's scale, lr 2e-3 (the rate the
suite fit to both), three seeds (the stored study ran two; resuming it trains the third).

    workbench run spaces/replicate/base_cause.py --device cuda --sampler grid --workers 3
"""

from workbench.space import Budget, Categorical, Objective, Space

space = Space(
    "replicate-base-cause",
    {
        "data.corpus": "en-mix",
        "data.tokenizer": "bpe",
        "data.vocab_size": 2048,
        "model.seq_len": 256,
        "model.n_layers": 4,
        "model.d_model": 256,
        "model.n_heads": 4,
        "memory.kind": Categorical(["dense", "base"]),
        "memory.d_ff": Categorical([1024], when={"memory.kind": "dense"}),
        "memory.n_experts": Categorical([16], when={"memory.kind": "base"}),
        "memory.expert_width": Categorical([1024], when={"memory.kind": "base"}),
        "memory.gate": Categorical(["sigmoid", "straight"], when={"memory.kind": "base"}),
        "memory.train_routing": Categorical(["balanced", "greedy"], when={"memory.kind": "base"}),
        "train.batch_size": 64,
        "train.lr": 2e-3,
        "train.eval_tokens": 262_144,
        # Scored on the head of the validation split, as every stored run of the suite was.
        "train.eval_windows": "head",
    },
    objectives=[Objective("val_ppl", "minimize"), Objective("flops_per_token", "minimize")],
    budget=Budget(tokens=24_000_000),
    trials=5,
    repeats=3,
)
