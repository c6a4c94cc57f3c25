"""Git repositories as a knowledge source: the mechanics (issue 18, item 2).

`sync` clones or fetches one branch of a repository into a working directory with the real `git`
binary and reports what changed since the previous sync (by commit diff, or "everything" when the
history was rewritten). `web_url` links a file at a commit on its web host, `codeowners` reads the
repository's CODEOWNERS and `last_change`/`last_changes` read a file's last commit from history.

A token is read from the environment variable the caller names and handed to git as an
`http.extraHeader` through git's `GIT_CONFIG_*` environment (never on the command line, in the URL,
in the repository's config or in an exception's text). Nothing here is wired into `steward ingest`.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from bot.errors import Unavailable

GIT_TIMEOUT_S = 300.0
HOST_KINDS = {
    "github": "{base}/blob/{commit}/{path}",
    "gitlab": "{base}/-/blob/{commit}/{path}",
    "bitbucket": "{base}/src/{commit}/{path}",
    "gitea": "{base}/src/commit/{commit}/{path}",
}
# Where GitHub (.github/, root, docs/) and GitLab (root, docs/, .gitlab/) look for CODEOWNERS.
CODEOWNERS_PLACES = (".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS", ".gitlab/CODEOWNERS")
MASK = "***"


class GitSourceError(Unavailable):
    """A repository could not be synced or read: the message names the URL (credentials masked) and
    what to check."""


@dataclass(frozen=True)
class GitSync:
    """The result of one sync: the commit now checked out and what changed since `previous`.

    `full` is true on the first sync and when `previous` is no longer in the branch's history (a force
    push): then `changed` lists every file of `commit` and `deleted` the files of `previous` that
    `commit` no longer has (empty when `previous` itself is gone)."""

    commit: str
    previous: str | None
    changed: tuple[str, ...]
    deleted: tuple[str, ...]
    renamed: tuple[tuple[str, str], ...]
    full: bool


def masked_url(url: str) -> str:
    """The URL with any user name or password replaced by `***`."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"{MASK}@{host}", parts.path, parts.query, parts.fragment))


class _Git:
    """Runs git for one repository URL, with the token (if any) in the environment only."""

    def __init__(self, url: str, token_env: str | None) -> None:
        self.url = url
        self.shown_url = masked_url(url)
        self.token_env = token_env
        self.secrets: list[str] = []
        self.env = {
            **os.environ,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": "",
            "SSH_ASKPASS": "",
            "GIT_SSH_COMMAND": os.environ.get("GIT_SSH_COMMAND", "ssh -o BatchMode=yes"),
            "LC_ALL": "C",
        }
        parts = urlsplit(url)
        self.secrets += [s for s in (parts.password, parts.username) if s]
        if token_env is not None:
            token = os.environ.get(token_env, "")
            if not token.strip():
                raise GitSourceError(
                    f"git source {self.shown_url}: the environment variable {token_env} (token_env) is "
                    "not set or empty; set it to an access token with read access to the repository"
                )
            token = token.strip()
            self.secrets.append(token)
            count = int(self.env.get("GIT_CONFIG_COUNT", "0") or "0")
            self.env |= {
                "GIT_CONFIG_COUNT": str(count + 1),
                f"GIT_CONFIG_KEY_{count}": "http.extraHeader",
                f"GIT_CONFIG_VALUE_{count}": f"Authorization: Bearer {token}",
            }

    def mask(self, text: str) -> str:
        """The text with the URL's credentials and the token removed."""
        text = text.replace(self.url, self.shown_url)
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text

    def _call(self, args: list[str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
        """git with the source's environment, no terminal and a time limit."""
        return subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=self.env,
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )

    def run(self, args: list[str], cwd: Path, *, what: str) -> str:
        """git's standard output; a failure raises GitSourceError explaining what to check."""
        try:
            done = self._call(args, cwd)
        except FileNotFoundError as error:
            raise GitSourceError("git source: the `git` program is not installed or not on PATH") from error
        except subprocess.TimeoutExpired as error:
            raise GitSourceError(
                f"git source {self.shown_url}: {what} took longer than {GIT_TIMEOUT_S:.0f} s; "
                "check that the host is reachable"
            ) from error
        if done.returncode != 0:
            stderr = self.mask(done.stderr.decode(errors="replace")).strip()
            raise GitSourceError(f"git source {self.shown_url}: {what} failed: {_advice(stderr)}\n{stderr}")
        return done.stdout.decode(errors="surrogateescape")

    def ok(self, args: list[str], cwd: Path) -> bool:
        """Whether git succeeds (for questions such as "is this commit an ancestor")."""
        try:
            return self._call(args, cwd).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False


def _advice(stderr: str) -> str:
    """What to check, from git's error text."""
    lowered = stderr.lower()
    if "couldn't find remote ref" in lowered or "could not find remote branch" in lowered:
        return "the branch does not exist on the remote; check the branch name"
    if any(
        word in lowered
        for word in ("authentication failed", "could not read username", "permission denied", " 401", " 403")
    ):
        return "the remote refused the credentials; check the token (token_env) and its read access"
    if any(
        word in lowered
        for word in (
            "does not appear to be a git repository",
            "could not read from remote",
            "unable to access",
            "could not resolve host",
            "repository not found",
            "connection refused",
            "timed out",
        )
    ):
        return (
            "the repository could not be reached; check the URL, the network and that the repository exists"
        )
    return "see git's message below"


def _z(text: str) -> list[str]:
    """NUL-separated fields (git's `-z` output) without the empty last one."""
    return [field for field in text.split("\0") if field]


def sync(url: str, branch: str, workdir: Path | str, *, token_env: str | None = None) -> GitSync:
    """Make `workdir` a checkout of `origin/BRANCH` of `url` and report what changed since the last sync.

    The first call clones (an `init` and a fetch of the one branch); later calls fetch and force the
    local branch onto the remote's, so a force push is followed. Untracked and changed files in
    `workdir` are discarded: the directory belongs to the sync."""
    if not branch or branch.startswith("-"):
        raise GitSourceError(f"git source {masked_url(url)}: branch {branch!r} is not a branch name")
    if url.startswith("-"):
        raise GitSourceError(f"git source: url {masked_url(url)!r} is not a repository URL")
    git = _Git(url, token_env)
    root = Path(workdir)
    root.mkdir(parents=True, exist_ok=True)
    if not (root / ".git").exists():
        if any(root.iterdir()):
            raise GitSourceError(
                f"git source {git.shown_url}: workdir {root} is not empty and not a git checkout; "
                "give the source a directory of its own"
            )
        git.run(["init", "--quiet"], root, what="creating the checkout")
    git.run(["config", "remote.origin.url", url], root, what="setting the remote")
    previous_commit = None
    if git.ok(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"], root):
        previous_commit = git.run(["rev-parse", "HEAD^{commit}"], root, what="reading HEAD").strip()
    remote_ref = f"refs/remotes/origin/{branch}"
    git.run(
        ["fetch", "--quiet", "--no-tags", "--force", "origin", f"+refs/heads/{branch}:{remote_ref}"],
        root,
        what=f"fetching branch {branch}",
    )
    commit = git.run(
        ["rev-parse", "--verify", f"{remote_ref}^{{commit}}"], root, what="reading the commit"
    ).strip()
    git.run(["checkout", "--quiet", "--force", "-B", branch, remote_ref], root, what="checking out")
    git.run(["clean", "--quiet", "-ffdx"], root, what="cleaning the checkout")
    if previous_commit == commit:
        return GitSync(commit, previous_commit, (), (), (), full=False)
    if previous_commit is not None and git.ok(["merge-base", "--is-ancestor", previous_commit, commit], root):
        return _diff(git, root, previous_commit, commit)
    now = _tree(git, root, commit)
    gone: list[str] = []
    if previous_commit is not None and git.ok(["cat-file", "-e", f"{previous_commit}^{{tree}}"], root):
        files = set(now)
        gone = [path for path in _tree(git, root, previous_commit) if path not in files]
    return GitSync(commit, previous_commit, tuple(now), tuple(gone), (), full=True)


def _tree(git: _Git, root: Path, commit: str) -> list[str]:
    """Every file of a commit."""
    return _z(git.run(["ls-tree", "-r", "-z", "--name-only", commit], root, what="listing files"))


def _diff(git: _Git, root: Path, previous: str, commit: str) -> GitSync:
    """What changed between two commits of one history (`git diff --name-status -M`)."""
    fields = _z(
        git.run(
            ["diff", "--name-status", "-z", "-M", "--no-ext-diff", previous, commit], root, what="diffing"
        )
    )
    changed: list[str] = []
    deleted: list[str] = []
    renamed: list[tuple[str, str]] = []
    at = 0
    while at < len(fields):
        status = fields[at][0]
        if status in "RC":
            old, new = fields[at + 1], fields[at + 2]
            if status == "R":
                renamed.append((old, new))
            else:
                changed.append(new)
            at += 3
            continue
        (deleted if status == "D" else changed).append(fields[at + 1])
        at += 2
    return GitSync(commit, previous, tuple(changed), tuple(deleted), tuple(renamed), full=False)


def web_url(base: str, host: str, commit: str, path: str) -> str:
    """The link to `path` at `commit` on the web host.

    `host` is a kind (github, gitlab, bitbucket, gitea) or a template with `{commit}` and `{path}`
    (and optionally `{base}`). Each path segment is URL-quoted."""
    quoted = "/".join(quote(segment, safe="") for segment in path.split("/"))
    if "{path}" in host:
        template = host
    elif host in HOST_KINDS:
        template = HOST_KINDS[host]
    else:
        raise ValueError(
            f"host {host!r} is not one of {', '.join(HOST_KINDS)} nor a template with {{commit}} and {{path}}"
        )
    return (
        template.replace("{base}", base.rstrip("/"))
        .replace("{commit}", quote(commit, safe=""))
        .replace("{path}", quoted)
    )


def _pattern(pattern: str) -> re.Pattern[str]:
    """A CODEOWNERS (gitignore-style) pattern as a regular expression over a repository path."""
    directory = pattern.endswith("/")
    body = pattern.strip("/")
    anchored = pattern.startswith("/") or "/" in body
    out = ""
    at = 0
    while at < len(body):
        if body.startswith("**/", at):
            out += "(?:.*/)?"
            at += 3
        elif body.startswith("**", at):
            out += ".*"
            at += 2
        elif body[at] == "*":
            out += "[^/]*"
            at += 1
        elif body[at] == "?":
            out += "[^/]"
            at += 1
        else:
            out += re.escape(body[at])
            at += 1
    prefix = "" if anchored else "(?:.*/)?"
    last = body.rsplit("/", 1)[-1]
    if directory:
        suffix = "/.*"
    elif "*" in last:
        suffix = ""  # `docs/*` owns docs' files, not those of its subfolders (as GitHub documents)
    else:
        suffix = "(?:/.*)?"  # a name owns the file of that name or everything in the folder of that name
    return re.compile(f"{prefix}{out}{suffix}")


def parse_codeowners(text: str) -> list[tuple[re.Pattern[str], list[str]]]:
    """The rules of a CODEOWNERS file in order: (pattern, owners). Comments, blank lines and GitLab
    section headers are skipped; a pattern without owners clears ownership."""
    rules: list[tuple[re.Pattern[str], list[str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "[", "^[")):
            continue
        fields = re.split(r"(?<!\\)\s+", line)
        pattern = fields[0].replace("\\ ", " ").replace("\\#", "#")
        owners = []
        for owner in fields[1:]:
            if owner.startswith("#"):
                break
            owners.append(owner)
        rules.append((_pattern(pattern), owners))
    return rules


def codeowners(workdir: Path | str) -> Callable[[str], list[str]]:
    """The owners of a repository path by the checkout's CODEOWNERS (the first of .github/, the root,
    docs/, .gitlab/); the last matching pattern wins. Without a CODEOWNERS file nobody owns anything."""
    root = Path(workdir)
    rules: list[tuple[re.Pattern[str], list[str]]] = []
    for place in CODEOWNERS_PLACES:
        candidate = root / place
        if candidate.is_file():
            rules = parse_codeowners(candidate.read_text(encoding="utf-8", errors="replace"))
            break

    def owners(path: str) -> list[str]:
        path = path.lstrip("/")
        for pattern, names in reversed(rules):
            if pattern.fullmatch(path):
                return list(names)
        return []

    return owners


def _local(root: Path) -> _Git:
    """git for a checkout `sync` made: pinned to its `.git`, never a repository in a parent folder."""
    git = _Git(str(root), None)
    git.env |= {"GIT_DIR": str(root / ".git"), "GIT_WORK_TREE": str(root)}
    return git


_LOG_FORMAT = "--format=%x01%cI%x00%an"


def last_change(workdir: Path | str, path: str) -> tuple[str, str] | None:
    """The committer date (ISO 8601) and author name of the last commit that changed `path`, or None
    when the path has no history."""
    root = Path(workdir)
    git = _local(root)
    out = git.run(["log", "-1", "-z", _LOG_FORMAT, "--", path], root, what=f"reading the history of {path}")
    fields = out.strip("\x01\0\n").split("\0")
    if len(fields) < 2:
        return None
    return fields[0], fields[1]


def last_changes(workdir: Path | str, paths: Iterable[str]) -> Mapping[str, tuple[str, str]]:
    """`last_change` for many paths in one pass over the history (`git log --name-only`); paths without
    history are left out."""
    root = Path(workdir)
    wanted = set(paths)
    found: dict[str, tuple[str, str]] = {}
    if not wanted:
        return found
    git = _local(root)
    out = git.run(["log", "-z", "--name-only", "--no-renames", _LOG_FORMAT], root, what="reading the history")
    for entry in out.split("\x01"):
        fields = entry.split("\0")
        if len(fields) < 3:
            continue
        date, author = fields[0], fields[1]
        for name in fields[2:]:
            name = name.lstrip("\n")
            if name in wanted and name not in found:
                found[name] = (date, author)
        if len(found) == len(wanted):
            break
    return found
