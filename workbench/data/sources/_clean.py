"""Markup → prose: reStructuredText, HTML, OSIS (SWORD Bible modules), and dictionary entries.

Every cleaner returns paragraphs, one per line (hard-wrapped source lines are reflowed), and
drops what is not prose: code and literal blocks, tables, tables of contents, navigation,
footnote markers, pronunciations, source tags. They are heuristics, deterministic, and tuned
on the packages :mod:`workbench.data.sources._corpora` names; on other input they degrade to
"text with some markup left", never to an error.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from html.parser import HTMLParser

# ---------------------------------------------------------------------------------------------
# shared


def reflow(lines: Iterable[str]) -> str:
    """Lines joined into one, whitespace runs collapsed to one space."""
    return " ".join(" ".join(lines).split())


def paragraphs(text: str) -> list[str]:
    """``text`` split at blank lines, each paragraph reflowed to one line; empty ones dropped."""
    out = [reflow(block.splitlines()) for block in re.split(r"\n\s*\n", text)]
    return [p for p in out if p]


def nonblank_lines(text: str) -> list[str]:
    """Each line of ``text`` with its whitespace collapsed; blank lines dropped."""
    return [" ".join(ln.split()) for ln in text.splitlines() if ln.strip()]


# ---------------------------------------------------------------------------------------------
# reStructuredText (Sphinx sources: the Linux kernel's and Python's documentation)

# Directives whose body is prose: kept, dedented. Every other directive is dropped whole
# (code, tables, figures, toctrees, kernel-doc extraction, ...). Value: keep the argument too.
_RST_PROSE = {
    **dict.fromkeys(
        ["note", "warning", "important", "attention", "tip", "hint", "caution", "danger", "error"], False
    ),
    **dict.fromkeys(["seealso", "impl-detail", "container", "glossary", "epigraph", "highlights"], False),
    **dict.fromkeys(["versionadded", "versionchanged", "deprecated", "deprecated-removed"], False),
    **dict.fromkeys(["admonition", "topic", "sidebar", "rubric"], True),
    # API descriptions: the signature is code, the body prose.
    **dict.fromkeys(
        [
            "function",
            "method",
            "classmethod",
            "staticmethod",
            "class",
            "attribute",
            "data",
            "exception",
            "decorator",
            "describe",
            "option",
            "cmdoption",
            "envvar",
            "opcode",
            "pdbcommand",
            "coroutinefunction",
            "coroutinemethod",
            "abstractmethod",
            "property",
        ],
        False,
    ),
}
_RST_DOMAIN_PROSE = re.compile(r"(c|cpp|py|js|rst):\w+$")  # c:function::, c:type::, py:method::, ...
_RST_DIRECTIVE = re.compile(r"^(\s*)\.\.\s+([\w:.+-]+)::\s*(.*)$")
_RST_EXPLICIT = re.compile(r"^(\s*)\.\.(\s|$)")  # a comment, target, footnote or substitution
_RST_ADORNMENT = re.compile(r"^\s*([=\-~^\"'`#*+_.:<>!$%&,;?@/|\\])\1{2,}\s*$")
_RST_TABLE_BORDER = re.compile(r"^\s*(\+[-=+]{2,}|=+( +=+)+)\s*$")
_RST_BULLET = re.compile(r"^(\s*)([-*+•]|#\.)\s+")
_RST_FIELD = re.compile(r"^(\s*):([^:`]+):(\s|$)")
_RST_ROLE = re.compile(r"(?::[\w.+-]+)+:`([^`]+)`")
_RST_LITERAL = re.compile(r"``(.+?)``")
_RST_REF = re.compile(r"`([^`<]*?)\s*(?:<[^>`]*>)?`__?")
_RST_INTERPRETED = re.compile(r"`([^`]+)`")
_RST_STRONG = re.compile(r"\*\*(\S[^*]*?)\*\*")
_RST_EMPH = re.compile(r"(?<![\w*\\])\*(\S[^*]*?)\*(?![\w*])")
_RST_FOOTREF = re.compile(r"\s?\[(#\w*|\d+|\*)\]_")
_RST_NAMEREF = re.compile(r"\b([A-Za-z][\w-]*[A-Za-z0-9])__?(?=[\s.,;:!?)]|$)")
_RST_ESCAPE = re.compile(r"\\([^\w\s\\])")  # "\:" → ":", "\*" → "*"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _role_text(m: re.Match[str]) -> str:
    inner = m.group(1).strip()
    target = re.match(r"(.*?)\s*<[^>]*>$", inner, re.S)
    if target and target.group(1):
        return target.group(1)
    if inner.startswith("~"):
        return inner[1:].rsplit(".", 1)[-1]
    return inner.lstrip("!")


def rst_inline(text: str) -> str:
    """Inline markup → its text: roles, literals, references, emphasis, footnote markers."""
    text = _RST_ROLE.sub(_role_text, text)
    text = _RST_LITERAL.sub(r"\1", text)
    text = _RST_FOOTREF.sub("", text)
    text = _RST_REF.sub(r"\1", text)
    text = _RST_INTERPRETED.sub(r"\1", text)
    text = _RST_STRONG.sub(r"\1", text)
    text = _RST_EMPH.sub(r"\1", text)
    return _RST_ESCAPE.sub(r"\1", _RST_NAMEREF.sub(r"\1", text))


def rst_to_prose(source: str) -> list[str]:
    """A reStructuredText document as prose paragraphs (see the module docstring)."""
    lines = source.expandtabs(8).splitlines()
    kept: list[str] = []  # lines with block structure removed; "" separates paragraphs
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            kept.append("")
            i += 1
            continue
        ind = _indent(line)
        directive = _RST_DIRECTIVE.match(line)
        if directive or _RST_EXPLICIT.match(line):
            end = _block_end(lines, i + 1, ind)
            name = directive.group(2) if directive else ""
            keep_arg = _RST_PROSE.get(name)
            if keep_arg is None and _RST_DOMAIN_PROSE.match(name):
                keep_arg = False
            if directive and keep_arg is not None:
                kept.append("")
                if keep_arg and directive.group(3):
                    kept += [directive.group(3), ""]
                body = [b for b in lines[i + 1 : end] if not _RST_FIELD.match(b) or _indent(b) <= ind]
                kept += body
                kept.append("")
            i = end
            continue
        if _RST_TABLE_BORDER.match(line):
            while i < len(lines) and lines[i].strip():
                i += 1
            continue
        if _RST_ADORNMENT.match(line):
            kept.append("")
            i += 1
            continue
        if line.lstrip().startswith(">>>"):
            while i < len(lines) and lines[i].strip():
                i += 1
            continue
        if line.rstrip().endswith("::"):
            # A literal block follows: keep the introducing text ("Example::" → "Example:").
            text = line.rstrip()[:-2].rstrip()
            kept.append(f"{text}:" if text and not line.rstrip().endswith(" ::") else text)
            i = _block_end(lines, i + 1, _paragraph_indent(lines, i))
            kept.append("")
            continue
        bullet = _RST_BULLET.match(line)
        if bullet:
            kept += ["", line[bullet.end() :]]
        else:
            kept.append(_RST_FIELD.sub(r"\1\2: ", line))
        i += 1
    return [p for p in (rst_inline(p) for p in paragraphs("\n".join(kept))) if _is_prose(p)]


def _paragraph_indent(lines: list[str], i: int) -> int:
    """Indentation of the paragraph that holds line ``i`` (its first line's)."""
    while i > 0 and lines[i - 1].strip():
        i -= 1
    return _indent(lines[i])


def _block_end(lines: list[str], i: int, ind: int) -> int:
    """The first line at or after ``i`` that is not blank and not indented past ``ind``."""
    while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > ind):
        i += 1
    return i


def _is_prose(paragraph: str) -> bool:
    """Whether a paragraph has words: not a lone symbol, rule, or table fragment."""
    letters = sum(map(str.isalpha, paragraph))
    return letters >= 2 and letters >= 0.4 * len(paragraph.replace(" ", ""))


# ---------------------------------------------------------------------------------------------
# HTML (DocBook output: PostgreSQL's documentation)

_HTML_BLOCK = {
    "p",
    "div",
    "br",
    "li",
    "dt",
    "dd",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "ul",
    "ol",
    "dl",
    "section",
    "title",
}
_HTML_SKIP_TAGS = {"script", "style", "head", "pre", "table", "code-block"}
_HTML_SKIP_CLASSES = {
    "navheader",
    "navfooter",
    "toc",
    "list-of-tables",
    "list-of-examples",
    "list-of-figures",
}
_HTML_VOID = {"br", "hr", "img", "meta", "link", "input", "col", "area", "base", "wbr"}


class _HTMLText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip: list[str] = []  # open tags, from the one that started skipping
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HTML_VOID:
            if tag == "br" and not self._skip:
                self.parts.append("\n")
            return
        classes = set((dict(attrs).get("class") or "").split())
        if self._skip or tag in _HTML_SKIP_TAGS or classes & _HTML_SKIP_CLASSES:
            self._skip.append(tag)
        elif tag in _HTML_BLOCK:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HTML_VOID:
            return
        if self._skip:
            # Pop to the matching open tag; a stray end tag inside a skipped block is ignored.
            if tag in self._skip:
                while self._skip.pop() != tag:
                    pass
        elif tag in _HTML_BLOCK:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        # A bare "§" is a link to the commit behind a release note, not text.
        if not self._skip and data.strip() != "§":
            self.parts.append(data)


def html_to_prose(source: str) -> list[str]:
    """An HTML page's prose paragraphs: no head, scripts, navigation, tables of contents, code or tables."""
    parser = _HTMLText()
    parser.feed(source)
    parser.close()
    return [p for p in paragraphs("".join(parser.parts)) if _is_prose(p)]


# ---------------------------------------------------------------------------------------------
# OSIS (SWORD modules: Bibles and commentaries)

_OSIS_NOTE = re.compile(r"<note\b[^>]*/>|<note\b.*?</note>", re.S)
_OSIS_TITLE = re.compile(r"<title\b[^>]*>(.*?)</title>", re.S)
_OSIS_BREAK = re.compile(
    r"<(chapter|lb|lg|l|p|div|item|list|br)\b[^>]*>|</(p|l|lg|item|list|div)>|<milestone\b[^>]*type=\"(x-p|line|pb)\"[^>]*/>"
)
_TAG = re.compile(r"<[^>]*>")


def osis_to_prose(source: str) -> list[str]:
    """OSIS (or HTML-like ThML) markup → paragraphs: notes dropped, titles on their own line."""
    text = _OSIS_NOTE.sub("", source)
    text = _OSIS_TITLE.sub(lambda m: f"\n\n{m.group(1)}\n\n", text)
    text = _OSIS_BREAK.sub("\n\n", text)
    text = html.unescape(_TAG.sub("", text))
    return paragraphs(text)


# ---------------------------------------------------------------------------------------------
# dictionaries (dictd databases: GCIDE, FOLDOC, the Jargon File, the Devil's Dictionary)

# A line that only names where a GCIDE sense came from: [1913 Webster], [WordNet 1.5], [PJC], ...
_GCIDE_SOURCE = re.compile(
    r"^\s*\[(\d{4} Webster|Webster \d{4}[^\]]*|WordNet [\d.]+|Century Dict[^\]]*|[A-Z]{2,4})\]\s*$"
)
_GCIDE_PRONUNCIATION = re.compile(r"\\[^\\\n]*\\")
# An accented or ligature letter: [=a] (ā), ["o] (ö), [ae] (æ); the letters are kept.
_GCIDE_CHAR = re.compile(r"\[(?:[=\"'`^~,.]|\?/)?([a-zA-Z]{1,2})\]")
_BRACES = re.compile(r"\{([^{}]*)\}")
_URL = re.compile(r"<?\b(?:https?|ftp)://[^\s>]+>?")
_ATTRIBUTION = re.compile(r"--(?=[A-Z])")


def gcide_entry(entry: str) -> list[str]:
    """One GCIDE entry as paragraphs: headword line without pronunciation, senses, quotations."""
    lines = [ln for ln in entry.splitlines() if not _GCIDE_SOURCE.match(ln)]
    text = _GCIDE_PRONUNCIATION.sub("", "\n".join(lines))
    text = _GCIDE_CHAR.sub(r"\1", text)
    text = _ATTRIBUTION.sub("", text)
    text = _BRACES.sub(r"\1", _BRACES.sub(r"\1", text))
    return [p.replace(" ,", ",") for p in paragraphs(text)]


def dict_entry(entry: str) -> list[str]:
    """One plain-text dictd entry (FOLDOC, Jargon, Devil's): cross-reference braces and URLs dropped."""
    text = _URL.sub("", _BRACES.sub(r"\1", entry))
    return [p for p in paragraphs(text) if p]
