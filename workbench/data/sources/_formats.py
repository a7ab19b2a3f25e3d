"""Readers for the container formats inside the source packages, each returning raw entries in order.

* dictd databases (``NAME.index`` + ``NAME.dict.dz``): entries in file order, each once.
* SWORD compressed Bible and commentary modules (``zText``/``zCom``: ``*.?zs`` block index,
  ``*.?zv`` verse index, ``*.?zz`` zlib blocks): entries in canonical verse order, each once.
* WordNet 3.0 ``data.*`` files: one ``(lemmas, gloss)`` pair per synset.
"""

from __future__ import annotations

import gzip
import struct
import zlib

from workbench.errors import DataError

_B64 = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}


def _b64_number(s: str) -> int:
    n = 0
    for c in s:
        n = n * 64 + _B64[c]
    return n


def dictd_entries(index: bytes, dict_dz: bytes) -> list[str]:
    """The entries of a dictd database, in file order; the ``00-database-*`` header entries are skipped.

    Several headwords may point at one entry; each entry comes once.
    """
    data = gzip.decompress(dict_dz)
    spans: set[tuple[int, int]] = set()
    for line in index.decode("utf-8").splitlines():
        fields = line.split("\t")
        if len(fields) < 3 or fields[0].startswith("00-database") or fields[0].startswith("00database"):
            continue
        spans.add((_b64_number(fields[1]), _b64_number(fields[2])))
    return [data[off : off + size].decode("utf-8", errors="replace") for off, size in sorted(spans)]


def sword_entries(blocks_index: bytes, verse_index: bytes, blocks: bytes) -> list[str]:
    """The entries of one testament of a zText/zCom SWORD module, in verse order.

    Verse-index records are 10 bytes (block u32, offset u32, size u16) in zText/zCom and 12
    bytes (size u32) in zText4/zCom4; the size is the one under which every record fits its
    block. Linked entries (one text for several verses) come once.
    """
    texts = []
    for i in range(0, len(blocks_index) - 11, 12):
        off, size, _ = struct.unpack_from("<III", blocks_index, i)
        texts.append(zlib.decompress(blocks[off : off + size]))
    for width in (10, 12):
        records = _sword_records(verse_index, width, texts)
        if records is not None:
            break
    else:
        raise DataError("corpus source: a SWORD verse index matches neither the 10- nor the 12-byte layout")
    out: list[str] = []
    seen: set[tuple[int, int, int]] = set()
    for rec in records:
        if rec[2] and rec not in seen:
            seen.add(rec)
            block, off, size = rec
            out.append(texts[block][off : off + size].decode("utf-8", errors="replace"))
    return out


def _sword_records(index: bytes, width: int, texts: list[bytes]) -> list[tuple[int, int, int]] | None:
    if len(index) % width:
        return None
    fmt = "<IIH" if width == 10 else "<III"
    records = [struct.unpack_from(fmt, index, i) for i in range(0, len(index), width)]
    for block, off, size in records:
        if size and (block >= len(texts) or off + size > len(texts[block])):
            return None
    return records


def wordnet_synsets(data_file: bytes) -> list[tuple[list[str], str]]:
    """``(lemmas, gloss)`` for each synset of a WordNet ``data.*`` file, in file order.

    A line is ``offset lex_filenum ss_type w_cnt(hex) [word lex_id]... p_cnt ... | gloss``;
    the licence header lines start with two spaces. Lemmas lose their underscores and
    adjective position markers ("(a)", "(p)", "(ip)").
    """
    out: list[tuple[list[str], str]] = []
    for line in data_file.decode("utf-8", errors="replace").splitlines():
        if not line or line.startswith("  ") or "|" not in line:
            continue
        head, gloss = line.split("|", 1)
        fields = head.split()
        count = int(fields[3], 16)
        words = [fields[4 + 2 * k] for k in range(count)]
        lemmas = [w.split("(")[0].replace("_", " ") for w in words]
        out.append((lemmas, gloss.strip()))
    return out
