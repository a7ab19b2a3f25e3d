"""Does clustered hashing win only on a small vocabulary? (Hash 5, isolation)

spaces/replicate/hash_clusters.py hashes the ids of a 2048-piece BPE, where many ids are word
pieces and 16 clusters of them are broad word classes. Roller et al. hash the ids of a much
larger vocabulary, whose clusters hold whole words of like meaning. This grid changes only the
vocabulary: a BPE of 8192 pieces trained on the same corpus (its features and clusters are
computed from its own training split), clustered, dispersed and random hashing, everything else
as in hash_clusters.py, three seeds. The budget stays below one epoch: 24M tokens of about 29M.

    workbench run spaces/replicate/hash_clusters_vocab.py --device cuda --sampler grid --workers 3
"""

from workbench.space import Budget, Categorical, Objective, Space

space = Space(
    "replicate-hash-clusters-vocab",
    {
        "data.corpus": "en-mix",
        "data.tokenizer": "bpe",
        "data.vocab_size": 8192,
        "model.seq_len": 256,
        "model.n_layers": 4,
        "model.d_model": 256,
        "model.n_heads": 4,
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
