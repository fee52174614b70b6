"""Splitting Markdown table rows as GitHub does (for the escaping tests)."""

from __future__ import annotations


def markdown_rows(text: str) -> list[list[str]]:
    """The cells of every table row of ``text``, split on unescaped ``|``."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("|"):
            continue
        cells, cur, i = [], "", 1
        while i < len(line):
            if line[i] == "\\" and i + 1 < len(line):
                cur += line[i : i + 2]
                i += 2
                continue
            if line[i] == "|":
                cells.append(cur.strip())
                cur = ""
            else:
                cur += line[i]
            i += 1
        rows.append(cells)
    return rows


HOSTILE = ("a|b", "line\nbreak", "back\\slash|\\|", "tab\there", "`tick`")
"""Names that break a table or a list item unless escaped."""
