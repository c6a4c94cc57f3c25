"""Point a registered model's alias (such as `production`) at a version in an MLflow model registry.

MLflow is imported inside the functions: it takes seconds to import and most processes never need it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from bot.errors import Refused

_NOISY_LOGGERS = ("mlflow", "alembic")  # first use of a SQLite registry logs its migrations at INFO
_LISTED_VERSIONS = 20  # a refusal lists at most this many versions, the newest


class RegistryRefusedError(Refused):
    """The registry cannot do what was asked (unknown model or version, unready version); nothing changed."""


@dataclass(frozen=True)
class AliasMove:
    """An alias pointed at a version, and where it pointed before (None when it was unset)."""

    model: str
    alias: str
    version: str
    previous: str | None

    @property
    def changed(self) -> bool:
        """False when the alias already pointed at the version and nothing was written."""
        return self.previous != self.version

    def summary(self) -> str:
        """One line for Slack: `fraud-scorer alias production -> version 12 (was 13)`."""
        if not self.changed:
            return f"{self.model} alias {self.alias} already at version {self.version}"
        was = "unset" if self.previous is None else self.previous
        return f"{self.model} alias {self.alias} -> version {self.version} (was {was})"

    def describe(self) -> str:
        """The summary and how to undo it."""
        if not self.changed:
            return f"{self.summary()}; nothing changed"
        if self.previous is None:
            undo = f"to roll back, delete alias {self.alias} of {self.model}"
        else:
            undo = f"to roll back, set alias {self.alias} of {self.model} to version {self.previous}"
        return f"{self.summary()}\n{undo}"

    def details(self) -> dict[str, str]:
        """Facts for the audit log; `previous_version` is empty when the alias was unset."""
        return {
            "model": self.model,
            "alias": self.alias,
            "version": self.version,
            "previous_version": self.previous or "",
            "changed": str(self.changed).lower(),
        }


@contextlib.contextmanager
def _quiet_mlflow() -> Iterator[None]:
    """Raise MLflow's and alembic's loggers to WARNING for the duration, then restore them."""
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def move_alias(*, tracking_uri: str, registry_uri: str, model: str, alias: str, version: str) -> AliasMove:
    """Set `alias` of `model` to `version` unless it is already there; refuse unknown or unready versions."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    with _quiet_mlflow():
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
        try:
            registered = client.get_registered_model(model)
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise RegistryRefusedError(f"no registered model {model!r} in the registry") from error
            raise
        try:
            found = client.get_model_version(model, version)
        except MlflowException as error:
            # A non-numeric version is INVALID_PARAMETER_VALUE; both mean "no such version" to a user.
            if error.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise
            raise RegistryRefusedError(
                f"{model} has no version {version}; versions: {_versions(client, model)}"
            ) from error
        if found.status != "READY":
            raise RegistryRefusedError(f"{model} version {found.version} is {found.status}, not READY")
        current = registered.aliases.get(alias)
        move = AliasMove(
            model=model,
            alias=alias,
            version=str(found.version),  # the registry's spelling: "012" becomes "12"
            previous=None if current is None else str(current),
        )
        # Read and write are not atomic: a change made in between is overwritten and `was` is stale.
        if move.changed:
            client.set_registered_model_alias(model, alias, move.version)
        return move


def _versions(client: Any, model: str) -> str:
    """The model's versions, oldest first, for a refusal message."""
    if "'" in model:  # the search filter has no escaping for quotes
        return "unknown"
    numbers = sorted(int(v.version) for v in client.search_model_versions(f"name='{model}'"))
    if not numbers:
        return "none"
    shown = ", ".join(str(n) for n in numbers[-_LISTED_VERSIONS:])
    return shown if len(numbers) <= _LISTED_VERSIONS else f"…, {shown}"
