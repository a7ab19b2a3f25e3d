"""The unified view of sparse feed-forward layers at small scale (Liu et al., EMNLP 2023).

Every design is a memory of 2048 cells (except the dense baseline, the VanillaM and the table
layers, whose sizes are noted) of which 256 are read per token: block size g and blocks
read k trade off at k*g = 256, and a constraint keeps the active forward FLOPs within 15% of
the dense model's. Every selection method of docs/DESIGN.md §1-§2 is covered: each value of
``memory.kind`` is tried once first (``cover``), then the sampler explores block sizes,
variants and learning rates.

At d=64, 2 layers, seq 128 and a BPE of 2048 tokens, the dense model costs 524,288 forward
FLOPs per token (attention 2*(4d^2 + 2Td) + FFN 4*d*256 per layer, LM head 2*d*V).

CPU, tiny budget (about 3-4 minutes for 12 trials on 2 cores):
    workbench run spaces/unified.py --trials 12 --device cpu --set train.tokens=60000
"""

from workbench.space import Budget, Categorical, Constraint, Derived, Objective, Space, Tuned

DENSE_FLOPS = 524_288

space = Space(
    "unified",
    {
        "data.vocab_size": 2048,
        "model.seq_len": 128,
        "model.d_model": 64,
        "model.n_layers": 2,
        "model.n_heads": 4,
        "memory.kind": Categorical(
            [
                "dense",
                "switch",
                "gshard",
                "base",
                "hash",
                "vanilla",
                "avgk",
                "pkm",
                "lsh",
                "token_table",
                "softmax_table",
            ]
        ),
        # Every memory has 2048 cells of which 256 are read, except: dense (256 cells, the
        # baseline), VanillaM (512 cells, 64 read: it scores every cell) and the tables.
        "memory.d_ff": Derived(
            "256 if memory.kind in ('dense', 'token_table', 'softmax_table') else (512 if memory.kind == 'vanilla' else 2048)",
            when={"memory.kind": ["dense", "vanilla", "avgk", "token_table", "softmax_table"]},
        ),
        # Block size g against blocks read k at k*g = 256: GShard reads k experts of 256/k cells,
        # Avg-K reads 256/g blocks of g cells.
        "aux.gshard_k": Categorical([2, 4], when={"memory.kind": "gshard"}),
        "memory.block_size": Categorical([8, 32, 128], when={"memory.kind": "avgk"}),
        "memory.k": Derived(
            "aux.gshard_k if memory.kind == 'gshard' else (64 if memory.kind == 'vanilla' else 256 // memory.block_size)",
            when={"memory.kind": ["gshard", "avgk", "vanilla"]},
        ),
        "memory.expert_width": Derived(
            "256 // memory.k if memory.kind == 'gshard' else 256",
            when={"memory.kind": ["switch", "gshard", "base", "hash", "lsh"]},
        ),
        "memory.n_experts": Derived(
            "2048 // memory.expert_width", when={"memory.kind": ["switch", "gshard", "base", "hash"]}
        ),
        "memory.variant": Categorical(["random", "balanced"], when={"memory.kind": "hash"}),
        # PKM: 32^2 = 1024 slots, 4 heads x top-8.
        "memory.n_keys": Categorical([32], when={"memory.kind": "pkm"}),
        # LSH: 3 bits -> 8 bucket experts of 256 cells, one hash table.
        "memory.n_bits": Categorical([3], when={"memory.kind": "lsh"}),
        "memory.n_tables": Categorical([1], when={"memory.kind": "lsh"}),
        "memory.consume": Categorical(["expert"], when={"memory.kind": "lsh"}),
        "train.batch_size": 16,
        "train.lr": Tuned([2e-3, 4e-3, 8e-3]),  # fit to each design (docs/METHODOLOGY.md)
        "train.eval_tokens": 16_384,
    },
    constraints=[
        Constraint(f"cost.flops_per_token <= 1.15 * {DENSE_FLOPS}", name="active FLOPs within 15% of dense"),
    ],
    objectives=[Objective("val_ppl", "minimize"), Objective("flops_per_token", "minimize")],
    budget=Budget(tokens=200_000),
    trials=24,
    cover=["memory.kind"],
)
