"""The unified view of sparse FFNs (Liu et al., EMNLP 2023) at the replication scale.

Claims (docs/REPLICATION.md): perplexity falls as the block size g falls at fixed k*g and total
memory; Avg-K beats the other selection methods at equal FLOPs; every sparse memory with more
cells than the dense FFN beats it.

Scale of every replication space: 4 layers, d=256, seq 256, batch 64, BPE 2048, the en-mix
corpus, 24M tokens (1465 steps, 0.67 epochs), three seeds per design and the learning rate fit to
each design (``Tuned``). The memory of every sparse design is 16 x 1024 = 16,384 cells of which
1024 (the dense FFN's width, 4d) are read per token, except PKM (128^2 slots, 4 heads x top-32
read) and VanillaM (2048 cells, 256 read: it scores every key, so that its FLOPs match dense).

    workbench run spaces/replicate/sffn.py --device cuda --sampler grid --workers 3
"""

from workbench.space import Budget, Categorical, Derived, Objective, Space, Tuned

space = Space(
    "replicate-sffn",
    {
        "data.corpus": "en-mix",
        "data.tokenizer": "bpe",
        "data.vocab_size": 2048,
        "model.seq_len": 256,
        "model.n_layers": 4,
        "model.d_model": 256,
        "model.n_heads": 4,
        "memory.kind": Categorical(["dense", "avgk", "switch", "gshard", "base", "hash", "pkm", "vanilla"]),
        "memory.d_ff": Derived(
            "1024 if memory.kind == 'dense' else (2048 if memory.kind == 'vanilla' else 16384)",
            when={"memory.kind": ["dense", "avgk", "vanilla"]},
        ),
        # Avg-K: k blocks of g cells at k*g = 1024.
        "memory.block_size": Categorical([1024, 256, 64], when={"memory.kind": "avgk"}),
        "memory.k": Derived(
            "1024 // memory.block_size if memory.kind == 'avgk' else "
            "(2 if memory.kind == 'gshard' else (32 if memory.kind == 'pkm' else 256))",
            when={"memory.kind": ["avgk", "gshard", "pkm", "vanilla"]},
        ),
        # Experts: GShard reads 2 of 32 experts of 512 cells; the others 1 of 16 of 1024.
        "memory.expert_width": Derived(
            "512 if memory.kind == 'gshard' else 1024",
            when={"memory.kind": ["switch", "gshard", "base", "hash"]},
        ),
        "memory.n_experts": Derived(
            "32 if memory.kind == 'gshard' else 16",
            when={"memory.kind": ["switch", "gshard", "base", "hash"]},
        ),
        "memory.variant": Categorical(["balanced"], when={"memory.kind": "hash"}),
        "memory.n_keys": Categorical([128], when={"memory.kind": "pkm"}),
        "memory.n_heads": Categorical([4], when={"memory.kind": "pkm"}),
        "train.batch_size": 64,
        "train.lr": Tuned([1e-3, 2e-3, 4e-3]),  # fit to each design (docs/METHODOLOGY.md)
        "train.eval_tokens": 262_144,
        # Scored on the head of the validation split, as every stored run of the suite was;
        # docs/METHODOLOGY.md ("Where the validation windows lie") says what that measures.
        "train.eval_windows": "head",
    },
    objectives=[Objective("val_ppl", "minimize"), Objective("flops_per_token", "minimize")],
    budget=Budget(tokens=24_000_000),
    trials=10,
    repeats=3,
)
