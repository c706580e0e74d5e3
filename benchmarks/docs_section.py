"""Writing one benchmark's section of docs/benchmarks.md, leaving every other section as it is.

A section runs from its "## " heading to the next one. The file is read right before it is
written, so benchmarks run one after another each keep what the others wrote.
"""

from __future__ import annotations

from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def replace_section(text: str, heading: str, before: str | None = None, docs: Path = DOCS) -> None:
    """Put `text` (which starts with `heading`) in place of that section; the first time, before
    the section headed `before` when there is one, else at the end."""
    document = docs.read_text()
    marker = document.find(heading + "\n")
    if marker != -1:
        following = document.find("\n## ", marker + len(heading))
        start, end = marker, len(document) if following == -1 else following + 1
    elif before is not None and before in document:
        start = end = document.index(before)
    else:
        start = end = len(document)
    head = document[:start].rstrip("\n")
    rest = document[end:].lstrip("\n")
    parts = [head, text.strip("\n"), rest.rstrip("\n")]
    docs.write_text("\n\n".join(part for part in parts if part) + "\n")
