"""Trust levels of sources (ingested folders): which may govern guarded actions, which are untrusted.

- `runbooks`: approval cards may quote its documents as an action's runbook (STEWARD_RUNBOOK_SOURCES;
  unset, the one source of a catalog that holds only one);
- `standard`: answered from and cited as usual;
- `untrusted` (STEWARD_UNTRUSTED_SOURCES): answered from, ranked below the others and cited with a
  warning.

A setting's entry is a source name (`knowledge`, `team-a/docs`) or a folder (`/srv/kb/knowledge`,
`./knowledge`: an absolute path, or one that starts with `./` or `../`, resolved from the working
folder). An entry that matches no source is reported, never guessed at; a source in both settings is
untrusted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bot.store.catalog import DocumentRecord
from bot.store.sources import source_names

RUNBOOKS, STANDARD, UNTRUSTED = "runbooks", "standard", "untrusted"
RUNBOOK_SETTING, UNTRUSTED_SETTING = "STEWARD_RUNBOOK_SOURCES", "STEWARD_UNTRUSTED_SOURCES"


def _is_folder(entry: str) -> bool:
    return entry in (".", "..") or entry.startswith(("/", "~", "./", "../"))


def _matches(entry: str, root: str, name: str) -> bool:
    if _is_folder(entry):
        return Path(entry).expanduser().resolve() == Path(root)
    return entry.rstrip("/") == name


def untrusted_warning(name: str) -> str:
    """What a citation of an untrusted source's document says."""
    return f"from an untrusted source: {name}; check before acting on it"


@dataclass(frozen=True)
class SourceTrust:
    """The two settings, as given (None: STEWARD_RUNBOOK_SOURCES unset)."""

    runbook_sources: tuple[str, ...] | None = None
    untrusted_sources: tuple[str, ...] = ()

    def levels(self, roots: Iterable[str]) -> SourceLevels:
        """The level of each of these ingested folders, and what is wrong with the settings."""
        names = source_names(roots)
        untrusted = self._chosen(self.untrusted_sources, names)
        if self.runbook_sources is None:  # one source has nothing to be confused with
            runbooks = set(names) if len(names) == 1 else set()
        else:
            runbooks = self._chosen(self.runbook_sources, names)
        problems = [
            *self._unmatched(RUNBOOK_SETTING, self.runbook_sources or (), names),
            *self._unmatched(UNTRUSTED_SETTING, self.untrusted_sources, names),
        ]
        both = sorted(names[root] for root in runbooks & untrusted)
        if both and self.runbook_sources is not None:
            problems.append(
                f"{', '.join(both)} is named in both {RUNBOOK_SETTING} and {UNTRUSTED_SETTING}: it is "
                f"treated as untrusted; remove it from one of them"
            )
        levels = {
            root: UNTRUSTED if root in untrusted else RUNBOOKS if root in runbooks else STANDARD
            for root in names
        }
        return SourceLevels(names, levels, tuple(problems), self.runbook_sources is not None)

    @staticmethod
    def _chosen(entries: Iterable[str], names: Mapping[str, str]) -> set[str]:
        return {root for root, name in names.items() if any(_matches(e, root, name) for e in entries)}

    @staticmethod
    def _unmatched(setting: str, entries: Iterable[str], names: Mapping[str, str]) -> list[str]:
        known = ", ".join(sorted(names.values())) or "none yet"
        return [
            f"{setting} names {entry!r}, which is no ingested source (the sources are: {known}); "
            "give a source's name or its folder"
            for entry in entries
            if not any(_matches(entry, root, name) for root, name in names.items())
        ]


@dataclass(frozen=True)
class SourceLevels:
    """The sources of one catalog: their names, their trust levels, and problems with the settings."""

    names: Mapping[str, str] = field(default_factory=dict)  # root -> source name
    levels: Mapping[str, str] = field(default_factory=dict)  # root -> level
    problems: tuple[str, ...] = ()
    runbooks_set: bool = False  # STEWARD_RUNBOOK_SOURCES is set (else the one-source default applies)

    @property
    def several(self) -> bool:
        """More than one source: documents are told apart by their source."""
        return len(self.names) > 1

    def level(self, document: DocumentRecord) -> str:
        """The trust level of a document's source."""
        return self.levels.get(document.root, STANDARD)

    def untrusted(self, document: DocumentRecord) -> bool:
        """Whether a document comes from an untrusted source."""
        return self.level(document) == UNTRUSTED

    def named(self, level: str) -> list[str]:
        """The names of the sources at a level."""
        return sorted(self.names[root] for root, found in self.levels.items() if found == level)

    def root_of(self, name: str) -> str | None:
        """The folder of the source with this name."""
        return next((root for root, found in self.names.items() if found == name), None)
