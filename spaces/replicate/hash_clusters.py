"""Dispersed against clustered hashing, with token similarity taken from the corpus (Hash 5).

Roller et al. cluster a pretrained model's token embeddings with k-means: "clustered" gives each
cluster an expert (similar tokens share one), "dispersed" spreads every cluster over all experts,
and dispersed wins. The hash suite (spaces/replicate/hash.py) clustered random features, so both
were random hashes and the claim was not testable. Here the features are distributional
(``memory.features = "cooccurrence"``: each token's left and right neighbours in the training
split, PPMI and SVD; workbench/data/features.py): its clusters hold punctuation, determiners,
verbs, word pieces. Random hashing runs beside them as the reference. 16 experts of 1024 cells,
the suite's scale and init, lr 4e-3 (the rate the S-FFN suite fit to balanced hash), three seeds.

    workbench run spaces/replicate/hash_clusters.py --device cuda --sampler grid --workers 3
"""

from workbench.space import Budget, Categorical, Objective, Space

space = Space(
    "replicate-hash-clusters",
    {
        "data.corpus": "en-mix",
        "data.tokenizer": "bpe",
        "data.vocab_size": 2048,
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
