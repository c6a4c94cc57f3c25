"""The Git source's mechanics against real repositories created in tmp_path and served over file://."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ingest.git_source import (
    GitSourceError,
    codeowners,
    last_change,
    last_changes,
    masked_url,
    sync,
    web_url,
)

TOKEN = "s3cr3t-t0ken-value-9f2c"


def _git(cwd: Path, *args: str, minute: int = 0, name: str = "Ada Author") -> str:
    """Run git as a subprocess with fixed identities and a fixed date (2024-03-01 10:MM UTC)."""
    date = f"2024-03-01T10:{minute:02d}:00+00:00"
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": "ada@example.com",
        "GIT_COMMITTER_NAME": "Cy Committer",
        "GIT_COMMITTER_EMAIL": "cy@example.com",
        "GIT_AUTHOR_DATE": date,
        "GIT_COMMITTER_DATE": date,
    }
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return done.stdout


class Author:
    """A working repository that commits (one minute apart) and pushes to a bare "remote"."""

    def __init__(self, root: Path) -> None:
        self.remote = root / "remote.git"
        self.work = root / "author"
        self.url = self.remote.as_uri()
        self.minute = 0

    def git(self, *args: str, name: str = "Ada Author") -> str:
        """git in the working repository at the current minute."""
        return _git(self.work, *args, minute=self.minute, name=name)

    def commit(self, files: dict[str, str | None], message: str = "change", name: str = "Ada Author") -> str:
        """Write (or, for None, delete) files, commit and push; the new commit."""
        for path, text in files.items():
            target = self.work / path
            if text is None:
                target.unlink()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
        self.git("add", "--all")
        self.minute += 1
        self.git("commit", "--quiet", "-m", message, name=name)
        self.git("push", "--quiet", "--force", "origin", "main")
        return self.git("rev-parse", "HEAD").strip()


@pytest.fixture
def git_isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """git (the tests' and sync's) reads no user or system config, and is installed."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("HOME", str(tmp_path))
    _git(tmp_path, "--version")


@pytest.fixture
def author(tmp_path: Path, git_isolated: None) -> Author:
    """A bare remote and a working repository with two documents pushed to main."""
    repo = Author(tmp_path)
    _git(tmp_path, "init", "--quiet", "--bare", "-b", "main", str(repo.remote))
    _git(tmp_path, "init", "--quiet", "-b", "main", str(repo.work))
    _git(repo.work, "remote", "add", "origin", repo.url)
    repo.commit({"docs/a.md": "# A\n", "docs/b.md": "# B\n"}, "first")
    return repo


def test_first_sync_lists_every_file(author: Author, tmp_path: Path) -> None:
    """The first sync clones the branch and reports every file as changed."""
    head = author.git("rev-parse", "HEAD").strip()
    result = sync(author.url, "main", tmp_path / "checkout")
    assert (result.commit, result.previous, result.full) == (head, None, True)
    assert sorted(result.changed) == ["docs/a.md", "docs/b.md"]
    assert (tmp_path / "checkout" / "docs" / "a.md").read_text() == "# A\n"


def test_unchanged_resync_reports_nothing(author: Author, tmp_path: Path) -> None:
    """A sync with no new commit reports no change."""
    first = sync(author.url, "main", tmp_path / "checkout")
    again = sync(author.url, "main", tmp_path / "checkout")
    assert (again.commit, again.previous, again.changed, again.deleted, again.full) == (
        first.commit,
        first.commit,
        (),
        (),
        False,
    )


def test_modify_add_delete_and_rename_come_from_the_diff(author: Author, tmp_path: Path) -> None:
    """A modify, an add, a delete and a rename are reported as such, and the checkout follows."""
    checkout = tmp_path / "checkout"
    first = sync(author.url, "main", checkout)
    author.commit({"docs/a.md": "# A, edited\n", "docs/new.md": "# New\n", "docs/b.md": None})
    author.git("mv", "docs/new.md", "docs/renamed.md")
    author.commit({}, "rename")
    result = sync(author.url, "main", checkout)
    assert (result.previous, result.full) == (first.commit, False)
    assert sorted(result.changed) == ["docs/a.md", "docs/renamed.md"]
    assert result.deleted == ("docs/b.md",)
    assert result.renamed == ()
    author.git("mv", "docs/renamed.md", "docs/moved.md")
    second = author.commit({}, "rename again")
    moved = sync(author.url, "main", checkout)
    assert (moved.commit, moved.changed, moved.deleted) == (second, (), ())
    assert moved.renamed == (("docs/renamed.md", "docs/moved.md"),)
    assert not (checkout / "docs" / "b.md").exists()
    assert (checkout / "docs" / "moved.md").read_text() == "# New\n"


def test_force_push_falls_back_to_everything(author: Author, tmp_path: Path) -> None:
    """After a force push that rewrote history, every file is changed and the vanished ones deleted."""
    checkout = tmp_path / "checkout"
    author.commit({"docs/c.md": "# C\n"})
    before = sync(author.url, "main", checkout)
    author.git("checkout", "--quiet", "--orphan", "rewritten")
    author.git("rm", "--quiet", "-r", "--cached", ".")
    for path in ("docs/a.md", "docs/b.md", "docs/c.md"):
        (author.work / path).unlink()
    author.commit({"docs/a.md": "# A rewritten\n", "docs/d.md": "# D\n"}, "rewrite")
    author.git("push", "--quiet", "--force", "origin", "rewritten:main")
    after = sync(author.url, "main", checkout)
    assert (after.previous, after.full) == (before.commit, True)
    assert sorted(after.changed) == ["docs/a.md", "docs/d.md"]
    assert sorted(after.deleted) == ["docs/b.md", "docs/c.md"]
    assert (checkout / "docs" / "a.md").read_text() == "# A rewritten\n"
    assert not (checkout / "docs" / "c.md").exists()


def test_wrong_branch_is_a_clear_error(
    author: Author, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A branch the remote lacks names the URL and the branch, and never shows the token."""
    monkeypatch.setenv("STEWARD_TEST_GIT_TOKEN", TOKEN)
    with pytest.raises(GitSourceError) as raised:
        sync(author.url, "no-such-branch", tmp_path / "checkout", token_env="STEWARD_TEST_GIT_TOKEN")
    message = str(raised.value)
    assert author.url in message
    assert "check the branch name" in message
    assert TOKEN not in message


def test_unreachable_url_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, git_isolated: None
) -> None:
    """A URL with no repository names the URL and what to check, and never shows the token."""
    monkeypatch.setenv("STEWARD_TEST_GIT_TOKEN", TOKEN)
    url = (tmp_path / "missing.git").as_uri()
    with pytest.raises(GitSourceError) as raised:
        sync(url, "main", tmp_path / "checkout", token_env="STEWARD_TEST_GIT_TOKEN")
    message = str(raised.value)
    assert url in message
    assert "check the URL" in message
    assert TOKEN not in message


def test_missing_token_variable_names_it(
    author: Author, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token_env that is not set is an error naming the variable."""
    monkeypatch.delenv("STEWARD_TEST_GIT_TOKEN", raising=False)
    with pytest.raises(GitSourceError, match="STEWARD_TEST_GIT_TOKEN"):
        sync(author.url, "main", tmp_path / "checkout", token_env="STEWARD_TEST_GIT_TOKEN")


def test_token_is_never_written_to_the_checkout(
    author: Author, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sync with a token leaves it out of the checkout's config and anything else under .git."""
    monkeypatch.setenv("STEWARD_TEST_GIT_TOKEN", TOKEN)
    checkout = tmp_path / "checkout"
    sync(author.url, "main", checkout, token_env="STEWARD_TEST_GIT_TOKEN")
    stored = [p for p in (checkout / ".git").rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]
    assert stored == []


def test_a_foreign_non_empty_workdir_is_refused(author: Author, tmp_path: Path) -> None:
    """A workdir holding other files is not taken over."""
    workdir = tmp_path / "busy"
    workdir.mkdir()
    (workdir / "keep.txt").write_text("mine")
    with pytest.raises(GitSourceError, match="not empty"):
        sync(author.url, "main", workdir)
    assert (workdir / "keep.txt").read_text() == "mine"


def test_credentials_in_a_url_are_masked() -> None:
    """A user name and password in a URL never reach a message."""
    assert (
        masked_url("https://bot:hunter2@git.example.com:8443/a/b.git")
        == "https://***@git.example.com:8443/a/b.git"
    )
    assert masked_url("https://git.example.com/a/b.git") == "https://git.example.com/a/b.git"


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("github", "https://h.example/org/repo/blob/abc123/docs/run%20book%23.md"),
        ("gitlab", "https://h.example/org/repo/-/blob/abc123/docs/run%20book%23.md"),
        ("bitbucket", "https://h.example/org/repo/src/abc123/docs/run%20book%23.md"),
        ("gitea", "https://h.example/org/repo/src/commit/abc123/docs/run%20book%23.md"),
        (
            "https://cgit.example/repo/tree/{path}?id={commit}",
            "https://cgit.example/repo/tree/docs/run%20book%23.md?id=abc123",
        ),
    ],
)
def test_web_url_per_host(host: str, expected: str) -> None:
    """Each host kind (and a custom template) links the file at the commit, quoting each segment."""
    assert web_url("https://h.example/org/repo/", host, "abc123", "docs/run book#.md") == expected


def test_web_url_rejects_an_unknown_host() -> None:
    """An unknown host kind is an error naming it."""
    with pytest.raises(ValueError, match="sourcehut"):
        web_url("https://h.example/r", "sourcehut", "abc", "a.md")


CODEOWNERS = """\
# comment
*                 @org/everyone
*.md              @docs-team   # trailing comment
/docs/            @org/docs
docs/adr/*        @architects
**/runbooks/**    @sre
build/            @build
/ops/secret.md
apps              @apps
"""


@pytest.mark.parametrize(
    ("path", "owners"),
    [
        ("main.py", ["@org/everyone"]),
        ("README.md", ["@docs-team"]),
        ("src/notes.md", ["@docs-team"]),
        ("docs/guide.txt", ["@org/docs"]),
        ("docs/adr/0001.md", ["@architects"]),
        ("docs/adr/old/0000.md", ["@org/docs"]),
        ("team/runbooks/db/restart.md", ["@sre"]),
        ("runbooks/x.md", ["@sre"]),
        ("deep/build/out.txt", ["@build"]),
        ("ops/secret.md", []),
        ("x/apps/y.txt", ["@apps"]),
        ("nested/docs/guide.txt", ["@org/everyone"]),
    ],
)
def test_codeowners_rules(tmp_path: Path, path: str, owners: list[str]) -> None:
    """Gitignore-style patterns (`*`, `**`, leading and trailing `/`) match, and the last match wins."""
    (tmp_path / ".github").mkdir()
    (tmp_path / ".github" / "CODEOWNERS").write_text(CODEOWNERS)
    assert codeowners(tmp_path)(path) == owners


def test_codeowners_place_order(tmp_path: Path) -> None:
    """.github/ comes before the root, the root before docs/ and .gitlab/; no file means no owner."""
    assert codeowners(tmp_path)("a.md") == []
    (tmp_path / ".gitlab").mkdir()
    (tmp_path / ".gitlab" / "CODEOWNERS").write_text("[Docs]\n* @gitlab\n")
    assert codeowners(tmp_path)("a.md") == ["@gitlab"]
    (tmp_path / "CODEOWNERS").write_text("* @root\n")
    assert codeowners(tmp_path)("a.md") == ["@root"]
    (tmp_path / ".github").mkdir()
    (tmp_path / ".github" / "CODEOWNERS").write_text("* @github\n")
    assert codeowners(tmp_path)("a.md") == ["@github"]


def test_last_change_reads_committer_date_and_author(author: Author, tmp_path: Path) -> None:
    """The last commit touching a path gives its committer date and author; batch and single agree."""
    author.commit({"docs/b.md": "# B, edited\n"}, name="Bo Editor")
    checkout = tmp_path / "checkout"
    sync(author.url, "main", checkout)
    assert last_change(checkout, "docs/a.md") == ("2024-03-01T10:01:00+00:00", "Ada Author")
    assert last_change(checkout, "docs/b.md") == ("2024-03-01T10:02:00+00:00", "Bo Editor")
    assert last_change(checkout, "docs/none.md") is None
    assert last_changes(checkout, ["docs/a.md", "docs/b.md", "docs/none.md"]) == {
        "docs/a.md": ("2024-03-01T10:01:00+00:00", "Ada Author"),
        "docs/b.md": ("2024-03-01T10:02:00+00:00", "Bo Editor"),
    }


def test_history_of_a_folder_that_is_no_repository_is_a_clear_error(
    tmp_path: Path, git_isolated: None
) -> None:
    """last_change outside a checkout raises GitSourceError naming the folder, not a traceback."""
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(GitSourceError, match="plain"):
        last_change(plain, "a.md")
