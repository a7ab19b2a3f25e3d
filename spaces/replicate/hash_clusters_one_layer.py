"""Does clustered hashing win only when every layer hashes the same way? (Hash 5, isolation)

In spaces/replicate/hash_clusters.py every one of the 4 FFN slots is a hash layer, and all of
them route a token by the same clusters, so a clustered model has one FFN per word class in
every layer. A single hash layer among dense ones leaves the shared processing to the dense
FFNs, closer to the ablations of Roller et al. This grid changes only that: the hash layer sits
in layer 3 of 4 (``DDMD``), the others are dense FFNs of the same width; clustered, dispersed
and random hashing, everything else as in hash_clusters.py, three seeds.

    workbench run spaces/replicate/hash_clusters_one_layer.py --device cuda --sampler grid --workers 3
"""

from workbench.space import Budget, Categorical, Objective, Space

space = Space(
    "replicate-hash-clusters-one-layer",
    {
        "data.corpus": "en-mix",
        "data.tokenizer": "bpe",
        "data.vocab_size": 2048,
        "model.seq_len": 256,
        "model.n_layers": 4,
        "model.d_model": 256,
        "model.n_heads": 4,
        "model.placement": "DDMD",
        "memory.kind": "hash",
        "memory.variant": Categorical(["clustered", "dispersed", "random"]),
        "memory.features": Categorical(["cooccurrence"], when={"memory.variant": ["clustered", "dispersed"]}),
        "memory.n_experts": 16,
        "memory.expert_width": 1024,
        "train.batch_size": 64,
        "train.lr": 4e-3,
        "train.eval_tokens": 262_144,
        # Scored on the head of the validation split, as every stored run of the suite was.
        "train.eval_windows": "head",
    },
    objectives=[Objective("val_ppl", "minimize"), Objective("flops_per_token", "minimize")],
    budget=Budget(tokens=24_000_000),
    trials=3,
    repeats=3,
)
