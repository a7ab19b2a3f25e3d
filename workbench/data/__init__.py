"""The data path: corpus text → tokenizer → cached uint16 token files → batches.

Typical use::

    data = prepare_tokens(cfg.data)             # cached after the first call
    x_BT, y_BT = random_batch(data.train, 16, 128, generator, device)
"""

from workbench.config import MAX_VOCAB, MIN_BPE_VOCAB, TOKENIZERS
from workbench.data.batches import Batch, Batches, DeviceTokens, eval_batches, random_batch, window_starts
from workbench.data.corpus import (
    KJV,
    CorpusExport,
    CorpusText,
    cache_root,
    export_corpus,
    kjv_text,
    load_text,
)
from workbench.data.sources import CORPORA
from workbench.data.tokenizer import (
    BPETokenizer,
    ByteTokenizer,
    Tokenizer,
    get_tokenizer,
)
from workbench.data.tokens import TokenData, prepare_tokens, split_chunks

__all__ = [
    "CORPORA",
    "KJV",
    "MAX_VOCAB",
    "MIN_BPE_VOCAB",
    "TOKENIZERS",
    "BPETokenizer",
    "Batch",
    "Batches",
    "ByteTokenizer",
    "CorpusExport",
    "CorpusText",
    "DeviceTokens",
    "TokenData",
    "Tokenizer",
    "cache_root",
    "eval_batches",
    "export_corpus",
    "get_tokenizer",
    "kjv_text",
    "load_text",
    "prepare_tokens",
    "random_batch",
    "split_chunks",
    "window_starts",
]
