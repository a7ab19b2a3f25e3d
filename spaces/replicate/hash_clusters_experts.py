"""Does the number of experts flip clustered against dispersed hashing? (Hash 5, next step)

At 16 experts, on clusters of corpus co-occurrence features, clustered hashing ended 6% better
than dispersed on all three seeds (spaces/replicate/hash_clusters.py), the reverse of Roller et
al. With 16 clusters a clustered expert holds a whole word class; with 64 it holds a narrower
group, and dispersed spreads each group over more experts. This grid changes that one thing:
clustered and dispersed at 16 and 64 experts of 1024 cells, everything else as in
hash_clusters.py (4 layers, d = 256, lr 4e-3, 24M tokens), three seeds.

    workbench run spaces/replicate/hash_clusters_experts.py --device cuda --sampler grid --workers 3
"""

from workbench.space import Budget, Categorical, Objective, Space

space = Space(
    "replicate-hash-clusters-experts",
    {
        "data.corpus": "en-mix",
        "data.tokenizer": "bpe",
        "data.vocab_size": 2048,
        "model.seq_len": 256,
        "model.n_layers": 4,
        "model.d_model": 256,
        "model.n_heads": 4,
        "memory.kind": "hash",
        "memory.variant": Categorical(["clustered", "dispersed"]),
        "memory.features": "cooccurrence",
        "memory.n_experts": Categorical([16, 64]),
        "memory.expert_width": 1024,
        "train.batch_size": 64,
        "train.lr": 4e-3,
        "train.eval_tokens": 262_144,
        # Scored on the head of the validation split, as every stored run of the suite was.
        "train.eval_windows": "head",
    },
    objectives=[Objective("val_ppl", "minimize"), Objective("flops_per_token", "minimize")],
    budget=Budget(tokens=24_000_000),
    trials=4,
    repeats=3,
)
