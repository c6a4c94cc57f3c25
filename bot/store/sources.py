"""Sources: the ingested folders documents come from, by name, and `SOURCE:PATH` references to documents.

Two folders may hold the same relative path, so a document is named by its source and its path. A
source's name is its folder's base name (`knowledge`); when several ingested folders share a base name,
each is named by the shortest end of its path that tells it apart (`team-a/docs`, `team-b/docs`). Names
are computed from the folders the catalog holds, never stored: ingesting another folder can lengthen
them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePath


def source_names(roots: Iterable[str]) -> dict[str, str]:
    """Each ingested folder (its resolved path, as the catalog stores it) -> its source name."""
    parts = {root: PurePath(root).parts for root in set(roots)}
    names: dict[str, str] = {}
    for root, own in parts.items():
        for length in range(1, len(own) + 1):
            suffix = own[-length:]
            if not any(other[-length:] == suffix for key, other in parts.items() if key != root):
                break
        names[root] = str(PurePath(*suffix)) if suffix else root
    return names


@dataclass(frozen=True)
class DocumentRef:
    """A document named by its path, and by its source when the reference gives one."""

    path: str
    source: str | None = None

    def __str__(self) -> str:
        return f"{self.source}:{self.path}" if self.source is not None else self.path


def document_ref(text: str) -> DocumentRef:
    """`PATH` or `SOURCE:PATH`: the first colon ends the source's name (source names hold no colon, and a
    path with a colon in it is written with its source, `knowledge:notes/a:b.md`)."""
    source, colon, path = text.strip().partition(":")
    if not colon:
        return DocumentRef(source)
    return DocumentRef(path.strip(), source.strip().rstrip("/"))
