"""Documentation stays honest: every setting and command is documented (README.md and docs/*.md), CI runs the
README's command, and every internal link and anchor resolves."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest
import yaml

from bot.cli import COMMANDS, main
from bot.config import Settings, variable_name
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
# The user's path (README.md) and the guides and references beside it (docs/*.md)
DOCUMENTS = ["README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def docs_section(title: str) -> str:
    """The text under the one heading named `title` (at any level) in README.md or docs/*.md, up to the next
    heading of the same or a higher level."""
    found = []
    for name in DOCUMENTS:
        lines, fenced = (ROOT / name).read_text(encoding="utf-8").splitlines(), False
        for start, line in enumerate(lines):
            if FENCE.match(line):
                fenced = not fenced
            heading = None if fenced else HEADING.match(line)
            if heading is None or heading.group(2) != title:
                continue
            level, body, inner = len(heading.group(1)), [], False
            for after in lines[start + 1 :]:
                if FENCE.match(after):
                    inner = not inner
                other = None if inner else HEADING.match(after)
                if other is not None and len(other.group(1)) <= level:
                    break
                body.append(after)
            found.append((name, "\n".join(body)))
    assert len(found) == 1, f"the heading {title!r} is in {[name for name, _ in found] or 'no document'}"
    return found[0][1]


def settings_rows() -> set[str]:
    """The variables the Settings table has a row for."""
    return {line.split("`")[1] for line in docs_section("Settings").splitlines() if line.startswith("| `")}


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_is_documented_with_its_default(name: str) -> None:
    """Each setting's variable has a row in the Settings table and help text in code."""
    variable = variable_name(name)
    assert variable in settings_rows(), f"{variable} is missing from the Settings table"
    assert Settings.model_fields[name].description, f"{name} has no help text"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_is_documented(command: str) -> None:
    """Each `steward` sub-command appears in the README, the user's path."""
    assert f"steward {command}" in README


def test_the_two_setup_commands_and_ci_agree() -> None:
    """README shows `make demo` and `make test`; .ci/run calls `make test`."""
    assert "make demo" in README and "make test" in README
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


# ---- links, anchors and the facts the README repeats from other files

LINKED_DOCS = [
    "README.md",
    *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")),
    "policies/README.md",
    "deploy/README.md",
]


def _outside_fences(text: str) -> list[str]:
    """The lines outside code fences."""
    kept, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            kept.append(line)
    return kept


def _prose(text: str) -> str:
    """The Markdown outside code fences and inline code spans (where `[a](b)` is an example, not a link)."""
    return "\n".join(re.sub(r"(`+).+?\1", "", line) for line in _outside_fences(text))


def anchors(text: str) -> set[str]:
    """The anchors GitHub gives the headings: text lowercased, punctuation but `-` and `_` removed, each space
    a `-`; a repeated heading gets `-1`, `-2` …"""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in _outside_fences(text):  # a heading's code spans are part of its text
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading is None:
            continue
        words = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.group(1)).lower()
        kept = "".join(
            c for c in words if c.isalnum() or c in "-_ " or unicodedata.category(c).startswith("M")
        )
        anchor = kept.replace(" ", "-")
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        found.add(anchor if count == 0 else f"{anchor}-{count}")
    return found


def test_anchors_follow_githubs_rules() -> None:
    """The anchor rules the link test relies on, on headings like the README's."""
    text = "\n".join(
        [
            "# Set-up: two commands",
            '### `steward ask "QUESTION" [--kind K]`',
            "## Slack's contract",
            "## Notes",
            "## Notes",
        ]
    )
    assert anchors(text) == {
        "set-up-two-commands",
        "steward-ask-question---kind-k",
        "slacks-contract",
        "notes",
        "notes-1",
    }
    assert anchors("```\n# not a heading\n```\n") == set()


@pytest.mark.parametrize("name", LINKED_DOCS)
def test_every_internal_link_points_to_something_that_exists(name: str) -> None:
    """`](#anchor)` names a heading of the same file; a relative link names a file that exists (and, for
    Markdown, a heading of it)."""
    page = ROOT / name
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", _prose(page.read_text(encoding="utf-8"))):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: …
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path) if path else page
        if not linked.exists():
            broken.append(
                f"{target}: no file {linked.relative_to(ROOT) if linked.is_relative_to(ROOT) else linked}"
            )
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked.read_text(encoding="utf-8")):
            broken.append(f"{target}: no heading with that anchor")
    assert broken == [], f"{name}: broken links"


def test_the_readme_scopes_are_the_manifests() -> None:
    """The scope list under "Installing the Slack app" is the manifest's bot scopes, in the same order."""
    manifest = yaml.safe_load((ROOT / "deploy" / "slack" / "manifest.yaml").read_text(encoding="utf-8"))
    section = docs_section("Installing the Slack app")
    # `- `a:read`, `b:read`: why`: the scopes are the code spans before the first "`: "
    heads = [line.split("`: ", 1)[0] + "`" for line in section.splitlines() if line.startswith("- `")]
    listed = [scope for head in heads for scope in re.findall(r"`([a-z_:.]+)`", head)]
    assert listed == manifest["oauth_config"]["scopes"]["bot"]


def test_serve_without_credentials_points_to_a_readme_section_that_exists(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`steward serve` with no Slack variables exits 1 and names a heading that exists in the named file."""
    code = main(["serve"])
    err = capsys.readouterr().err
    assert code == 1 and "Slack credentials missing: set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET" in err
    named = re.search(r'see "([^"]+)" in ((?:docs/)?[\w.-]+\.md)', err)
    assert named is not None, err
    page = (ROOT / named.group(2)).read_text(encoding="utf-8")
    assert re.search(rf"^#+ {re.escape(named.group(1))}$", page, re.MULTILINE)


def _policy_variables() -> set[str]:
    """Each `${VAR}` and `secret_env:` the starter policies and digests.yaml use (outside comments)."""
    names: set[str] = set()
    for path in [*(ROOT / "policies").glob("*.y*ml"), ROOT / "digests.yaml"]:
        text = re.sub(r"(^|\s)#.*", "", path.read_text(encoding="utf-8"))  # not the comments' examples
        names.update(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text))
        names.update(re.findall(r"secret_env:\s*([A-Z_][A-Z0-9_]*)", text))
    return names


def _variables_read_directly() -> set[str]:
    """Variables code reads from the environment by itself, outside Settings (the demo flag store)."""
    names: set[str] = set()
    for path in [*(ROOT / "bot").rglob("*.py"), *(ROOT / "ingest").rglob("*.py")]:
        text = path.read_text(encoding="utf-8")
        names.update(
            re.findall(r"(?:os\.environ\.get\(|os\.environ\[|os\.getenv\()\s*\"([A-Z_][A-Z0-9_]*)\"", text)
        )
    return names


def test_the_variables_policies_digests_and_code_read_are_in_the_settings_table() -> None:
    """Every `${VAR}` in policies/*.yaml and digests.yaml, every secret_env and every variable code reads
    directly has a row in the Settings table."""
    variables = _policy_variables() | _variables_read_directly()
    assert {
        "MLFLOW_TRACKING_URI",
        "RETRAIN_WEBHOOK_URL",
        "ACTIONS_WEBHOOK_SECRET",
        "STEWARD_DEMO_FLAGS",
    } <= variables
    assert sorted(variables - settings_rows()) == []


def test_deploy_readme_describes_what_is_there() -> None:
    """deploy/README.md names each file under deploy/ (but the copies in k8s/config/), and only files that
    exist, and promises nothing for later."""
    deploy = ROOT / "deploy"
    text = (deploy / "README.md").read_text(encoding="utf-8")
    assert "will live" not in text
    named = set(re.findall(r"`([\w./-]+)`", text))  # code spans without spaces: names of files
    present = {
        path.relative_to(deploy).as_posix()
        for path in deploy.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and "config" not in path.parts
    } - {"README.md"}
    unnamed = [path for path in sorted(present) if path not in named and path.split("/")[-1] not in named]
    assert unnamed == [], "deploy/README.md does not describe these files"
    paths = [name for name in named if "." in name or name.endswith("/")]
    missing = [name for name in paths if not any((base / name).exists() for base in _deploy_dirs(deploy))]
    assert missing == [], "deploy/README.md names files that do not exist"


def _deploy_dirs(deploy: Path) -> list[Path]:
    """Where a name in deploy/README.md may be: deploy/, its folders, and the repository root."""
    return [ROOT, deploy, *(path for path in deploy.rglob("*") if path.is_dir())]


def test_front_matter_has_a_heading_linked_from_owners_and_review_dates() -> None:
    """Document front matter is a section of its own, not a passage inside "Secrets and personal data",
    and the passages about owners and review dates link to it."""
    assert re.search(r"^## Document front matter$", README, re.MULTILINE)
    assert "front matter" not in docs_section("Secrets and personal data")
    pages = "\n".join((ROOT / name).read_text(encoding="utf-8") for name in DOCUMENTS)
    assert len(re.findall(r"\]\((?:\.\./README\.md)?#document-front-matter\)", pages)) >= 3


def test_the_checklist_from_the_demo_to_a_workspace_covers_each_placeholder() -> None:
    """The checklist names the app, the group ids, the digest channels, the executors and front matter."""
    section = docs_section("From the demo to your workspace")
    for needed in (
        "deploy/slack/manifest.yaml",
        "policies/00-groups.yaml",
        "digests.yaml",
        "steward policy check",
        "STEWARD_ALLOWED_PROGRAMS",
        "](#document-front-matter)",
    ):
        assert needed in section


def test_the_readme_keeps_no_progress_log() -> None:
    """The README says what Steward does and what is planned, not which issue built what."""
    entry = r"\(issue \d+\)|\b(?:is|are) built:|\b(?:is|are) in progress:"  # the old Roadmap's entries
    logged = re.findall(rf"[^.\n]*(?:{entry})[^.\n]*", README)
    assert logged == []
