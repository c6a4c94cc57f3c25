"""Documentation stays honest: every setting and command is in the README, CI runs the README's command."""

from __future__ import annotations

import pytest

from bot.cli import COMMANDS
from bot.config import Settings, variable_name
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_is_documented_with_its_default(name: str) -> None:
    """Each setting's variable has a README table row and help text in code."""
    variable = variable_name(name)
    rows = [line for line in README.splitlines() if line.startswith(f"| `{variable}`")]
    assert rows, f"{variable} is missing from the settings table in README.md"
    assert Settings.model_fields[name].description, f"{name} has no help text"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_is_documented(command: str) -> None:
    """Each `steward` sub-command appears in the README."""
    assert f"steward {command}" in README


def test_the_two_setup_commands_and_ci_agree() -> None:
    """README shows `make demo` and `make test`; .ci/run calls `make test`."""
    assert "make demo" in README and "make test" in README
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
