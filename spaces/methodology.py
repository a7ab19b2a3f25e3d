"""The methodology study: how large is seed noise, and does a short-run learning-rate fit agree
with a full grid? (docs/METHODOLOGY.md; the issue "answers a researcher can trust").

The standard GPU search scale: 4 layers, d=256, seq 256, batch 64, a BPE of 2048 tokens and
6M training tokens on the large embedded corpus (under one epoch). Three designs at equal
active FLOPs: a dense FFN of 4d cells, a Switch MoE and a balanced hash layer, each with 16
experts as wide as the dense FFN. Each design's learning rate is fit by four probe runs at a
quarter of the budget, then it trains under five seeds.

    workbench run spaces/methodology.py --device cuda --sampler grid --workers 2
    # the full-budget grid the probes are checked against, one study per rate, seed 0:
    for lr in 5e-4 1e-3 2e-3 4e-3; do
      workbench run spaces/methodology.py --device cuda --sampler grid --workers 2 \
        --set train.lr=$lr --repeats 1 --study-name methodology-lr-$lr
    done
    python -m bench.methodology   # writes the tables of docs/METHODOLOGY.md from the store
"""

from workbench.space import Budget, Categorical, Derived, Objective, Space, Tuned

LEARNING_RATES = [5e-4, 1e-3, 2e-3, 4e-3]

space = Space(
    "methodology",
    {
        "data.corpus": "en-mix",
        "data.tokenizer": "bpe",
        "data.vocab_size": 2048,
        "model.seq_len": 256,
        "model.n_layers": 4,
        "model.d_model": 256,
        "model.n_heads": 4,
        "memory.kind": Categorical(["dense", "switch", "hash"]),
        "memory.d_ff": Derived("4 * model.d_model", when={"memory.kind": "dense"}),
        "memory.n_experts": Categorical([16], when={"memory.kind": ["switch", "hash"]}),
        "memory.expert_width": Derived("4 * model.d_model", when={"memory.kind": ["switch", "hash"]}),
        "memory.variant": Categorical(["balanced"], when={"memory.kind": "hash"}),
        "train.batch_size": 64,
        "train.lr": Tuned(LEARNING_RATES, fraction=0.25),
        "train.eval_tokens": 262_144,
        # Scored on the head of the validation split, as every stored run of the suite was;
        # docs/METHODOLOGY.md ("Where the validation windows lie") says what that measures.
        "train.eval_windows": "head",
    },
    objectives=[Objective("val_ppl", "minimize"), Objective("flops_per_token", "minimize")],
    budget=Budget(tokens=6_000_000),
    trials=3,
    repeats=5,
)
