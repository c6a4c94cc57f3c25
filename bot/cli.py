"""`steward`: the command line. Parses arguments, calls a service, prints. Nothing else."""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import os
import re
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from bot.actions.executors.mcp_checks import tool_report
from bot.actions.models import Actor
from bot.actions.policy.engine import (
    SlackGroupResolver,
    build_request,
    check_report,
    explain,
    load_policy,
    parse_key_values,
)
from bot.actions.policy.gate import no_slack_groups
from bot.actions.policy.rules import AGENT_ID, AGENT_PREFIX, USER_ID, USERGROUP_ID, is_agent
from bot.answers.evaluation import evaluate, read_questions
from bot.answers.models import Answer
from bot.answers.questions import CLI, Asked
from bot.answers.retrieval import Filters
from bot.config import SettingsError, load_settings
from bot.errors import EXIT_FAILURE, ConfigurationError, StewardError, cli_report
from bot.redaction import mask_secrets, masked_notice
from bot.store.action_requests import actions_transaction, iter_audit
from bot.store.audit_checkpoints import CheckpointFile
from bot.store.audit_verify import AuditReport, verify_log
from bot.wiring import Services, build
from ingest.documents import KINDS, STATUSES
from ingest.pipeline import IngestReport, Progress

EXIT_BROKEN_PIPE = 128 + 13  # SIGPIPE

COMMANDS = {
    "ingest": "Index folders of runbooks and decision records (incremental; --rebuild starts over).",
    "ask": "Answer a question from the knowledge base, with cited sources.",
    "eval": "Measure retrieval and abstention quality on a labelled question file.",
    "serve": "Run the Slack bot: HTTP mode on --port, or Socket Mode when SLACK_APP_TOKEN is set.",
    "policy": "Check the policy files (`policy check`) or explain a decision without running anything.",
    "audit": "Verify the tamper-evident audit log (`audit verify`) or export it as JSON lines (`export`).",
    "digest": "Render a configured digest in the terminal (`digest run NAME`), or post it now (`--post`).",
    "agents": "Give an AI agent a token for the agent API and MCP (`agents add`), list or revoke them.",
    "mcp": "Serve an agent's MCP client over stdio: Steward's tools, through a Steward server's agent API.",
}


class _Bar(Progress):
    """A tqdm bar on a terminal; silent when output is piped."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.bar: Any = None

    def start(self, total_chunks: int) -> None:
        if total_chunks and self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total_chunks, unit="chunk", desc="embedding", file=self.stream)

    def advance(self, chunks: int) -> None:
        if self.bar is not None:
            self.bar.update(chunks)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="steward",
        description="Steward: cited answers from your runbooks and decision records.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    ingest = commands.add_parser("ingest", help=COMMANDS["ingest"], description=COMMANDS["ingest"])
    ingest.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="folder or file to ingest")
    ingest.add_argument("--rebuild", action="store_true", help="drop the index and ingest everything again")

    ask = commands.add_parser("ask", help=COMMANDS["ask"], description=COMMANDS["ask"])
    ask.add_argument("question", help="the question, in quotes")
    ask.add_argument(
        "--kind", action="append", choices=KINDS, help="only documents of this kind (repeatable)"
    )
    ask.add_argument("--status", action="append", choices=STATUSES, help="only documents with this status")
    ask.add_argument("--tag", action="append", help="only documents with this tag (repeatable: any of them)")
    ask.add_argument("--json", action="store_true", help="print the answer as JSON")
    ask.add_argument(
        "--as",
        dest="asker",
        type=_asker,
        metavar="NAME",
        help="who is asking, as the answer log records it (default: your login name)",
    )

    evaluation = commands.add_parser("eval", help=COMMANDS["eval"], description=COMMANDS["eval"])
    evaluation.add_argument("questions", type=Path, metavar="QUESTIONS.jsonl")
    evaluation.add_argument(
        "--report", type=Path, metavar="OUT.jsonl", help="write one JSON line per question"
    )

    serve = commands.add_parser("serve", help=COMMANDS["serve"], description=COMMANDS["serve"])
    serve.add_argument("--port", type=int, help="HTTP port (default STEWARD_PORT, 3000; 0 picks a free one)")
    serve.add_argument("--host", help="interface to listen on (default STEWARD_HOST, 0.0.0.0)")

    policy = commands.add_parser("policy", help=COMMANDS["policy"], description=COMMANDS["policy"])
    policy_commands = policy.add_subparsers(dest="policy_command", metavar="check|explain")
    policy_commands.required = True
    check_parser = policy_commands.add_parser(
        "check", help="validate the policy files; errors name file, line and field"
    )
    check_parser.add_argument(
        "--tools",
        action="store_true",
        help="also start or reach each mcp action's server, list its tools and compare them with the catalog",
    )
    explain_parser = policy_commands.add_parser(
        "explain", help="print the decision and the rule for a request, without running anything"
    )
    explain_parser.add_argument("action", metavar="ACTION")
    explain_parser.add_argument("params", nargs="*", metavar="key=value")
    explain_parser.add_argument(
        "--as",
        dest="user",
        required=True,
        type=_requester,
        metavar="USER",
        help="who asks: a Slack user id, or an AI agent as agent:NAME",
    )
    explain_parser.add_argument(
        "--owner",
        type=_user_id,
        metavar="USER",
        help="with --as agent:NAME, the agent's owner (default: as `steward agents add` recorded it)",
    )
    explain_parser.add_argument("--channel", metavar="CHANNEL", help="Slack channel id it is asked in")
    explain_parser.add_argument(
        "--at", type=_since, metavar="WHEN", help="decide as of this time (default now)"
    )

    audit = commands.add_parser("audit", help=COMMANDS["audit"], description=COMMANDS["audit"])
    audit_commands = audit.add_subparsers(dest="audit_command", metavar="verify|export")
    audit_commands.required = True
    audit_commands.add_parser(
        "verify",
        help="check every entry's MAC, the signed checkpoints and the approvals of every request that ran; "
        "exit 1 and say where it breaks",
    )
    export = audit_commands.add_parser("export", help="write the audit log as JSON lines")
    export.add_argument(
        "--since", type=_since, help="only entries from then on: 2026-11-01, 2026-11-01T08:00Z, 24h, 7d"
    )
    export.add_argument(
        "--output", type=Path, metavar="FILE", help="write to FILE instead of standard output"
    )
    _agents_parser(commands)
    mcp = commands.add_parser(
        "mcp",
        help=COMMANDS["mcp"],
        description=COMMANDS["mcp"] + " The server's address is STEWARD_URL (or --url), the agent's token "
        "STEWARD_AGENT_TOKEN (never an option: a command line is visible to every user of the machine).",
    )
    mcp.add_argument(
        "--url", help="the Steward server, e.g. https://steward.example.com (default STEWARD_URL)"
    )
    digest = commands.add_parser("digest", help=COMMANDS["digest"], description=COMMANDS["digest"])
    digest_commands = digest.add_subparsers(dest="digest_command", metavar="run")
    digest_commands.required = True
    run = digest_commands.add_parser("run", help="render the digest NAME from the digest configuration")
    run.add_argument("name", help="the digest's name in the configuration (STEWARD_DIGESTS_FILE)")
    run.add_argument(
        "--post", action="store_true", help="post it to the digest's channel now (needs SLACK_BOT_TOKEN)"
    )
    run.add_argument(
        "--at",
        type=_day,
        metavar="DATE",
        help="the day the digest is made (default: today); windows end before it",
    )
    run.add_argument(
        "--since",
        type=_day,
        metavar="DATE",
        help="the current window starts on DATE instead of the configured one",
    )
    return parser


def _agents_parser(commands: Any) -> None:
    agents = commands.add_parser("agents", help=COMMANDS["agents"], description=COMMANDS["agents"])
    agent_commands = agents.add_subparsers(dest="agents_command", metavar="add|list|revoke")
    agent_commands.required = True
    add = agent_commands.add_parser(
        "add", help="create an agent and print its token (shown once; only its hash is kept)"
    )
    add.add_argument("name", help="the agent's name: lowercase letters, digits and dashes")
    add.add_argument("--owner", required=True, metavar="USER_ID", help="the Slack user id answerable for it")
    add.add_argument(
        "--scope",
        default="ask,request",
        metavar="SCOPES",
        help="what the token may do: ask, request or both (default ask,request)",
    )
    add.add_argument(
        "--actions", metavar="A,B", help="the catalog actions it may request (default: every action)"
    )
    add.add_argument("--max-pending", type=int, default=20, help="requests waiting for approval at once")
    add.add_argument("--per-minute", type=int, default=60, help="requests it may create per minute")
    agent_commands.add_parser("list", help="every agent: owner, scopes, actions, token id, revoked or not")
    revoke = agent_commands.add_parser(
        "revoke", help="refuse the agent's token from now on, on every replica"
    )
    revoke.add_argument("name")


def _day(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date: use YYYY-MM-DD, e.g. 2026-11-24") from None


def _digest(services: Services, args: argparse.Namespace) -> int:
    from bot.digests.cli import run_digest, today_for

    if not args.post:
        return run_digest(
            services.settings.digests_file,
            lambda: services.catalog,
            lambda: services.report_records,
            lambda: services.drift_history,
            lambda: services.retriever,
            services.settings.runbook_min_similarity,
            args.name,
            args.at,
            args.since,
        )
    if args.since is not None:
        raise SettingsError("--since is for trying a configuration in the terminal; post without it")
    from bot.slack.app import SlackSetupError, check_token
    from bot.slack.digests import post_now

    today = args.at or today_for(services.settings.digests_file, args.name)
    if services.settings.slack_bot_token is None:
        raise SlackSetupError("--post needs SLACK_BOT_TOKEN (the bot token of your Slack app)")
    check_token(services.slack_client)
    ts = post_now(services.digest_poster(), services.slack_client, args.name, today)
    print(
        f"posted (message {ts})" if ts else "nothing to post: all quiet, and the digest says when_quiet: skip"
    )
    return 0


def _since(text: str) -> float:
    """A point in time from an ISO date/datetime (UTC unless it says otherwise) or a duration ago."""
    match = re.fullmatch(r"(\d+)\s*([mhdw])", text.strip())
    if match:
        unit = {"m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]
        return time.time() - int(match.group(1)) * unit
    try:
        moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: use a date (2026-11-01), a datetime (2026-11-01T08:00Z) "
            "or a duration (24h, 7d)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `steward` console script. Output cut short by its reader (`steward ask … | head`)
    ends the command quietly with 141, as a shell reports a command stopped by SIGPIPE."""
    try:
        try:
            return _command(argv)
        finally:
            sys.stdout.flush()  # here, not at exit, where a closed pipe is reported with a traceback
    except BrokenPipeError:
        _discard_stdout()
        return EXIT_BROKEN_PIPE


def _discard_stdout() -> None:
    """Point standard output at /dev/null, so flushing what is still buffered at exit fails no more."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # io.UnsupportedOperation is both
        pass  # not a real file (a test's capture): nothing will be flushed to the closed pipe


def _command(argv: Sequence[str] | None) -> int:
    """Parse the arguments and run the command; a known error is one line on standard error."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "mcp":  # a client of a Steward server: no settings or databases of its own
            return _mcp(args.url)
        settings = load_settings()
        services = build(settings)
        try:
            return _run(services, args)
        finally:
            # now, not whenever the garbage collector gets to it: the databases' connections closed
            # (SQLite folds its -wal file back in), the vector store's client released
            services.close()
    except StewardError as exc:
        code, line = cli_report(exc)
        print(line, file=sys.stderr)
        return code
    except KeyboardInterrupt:
        print("steward: interrupted; nothing half-written is kept, run the command again", file=sys.stderr)
        return 130


def _run(services: Services, args: argparse.Namespace) -> int:
    if args.command == "ingest":
        return _ingest(services, args)
    if args.command == "ask":
        return _ask(services, args)
    if args.command == "policy":
        return _policy(services, args)
    if args.command == "audit":
        return _audit(services, args)
    if args.command == "digest":
        return _digest(services, args)
    if args.command == "agents":
        return _agents(services, args)
    if args.command == "serve":
        from bot.runtime.serve import serve

        return serve(services, port=args.port, host=args.host)
    return _eval(services, args)


def _ingest(services: Services, args: argparse.Namespace) -> int:
    report = services.ingestor.run(args.paths, rebuild=args.rebuild, progress=_Bar(sys.stderr))
    print(format_report(report))
    return 0


def format_report(report: IngestReport) -> str:
    """The end-of-ingest summary."""
    lines = [
        f"added {len(report.added)}, updated {len(report.updated)}, removed {len(report.removed)}, "
        f"unchanged {report.unchanged}, skipped {len(report.skipped)}",
        f"{report.chunks} chunks ({report.word_pieces:,} word pieces) in {report.seconds:.1f} s: "
        f"{report.chunks_per_second:.1f} chunks/s, {report.word_pieces_per_second:,.0f} word pieces/s",
    ]
    if report.repaired:
        lines.append(f"repaired {report.repaired} vectors that disagreed with the catalog")
    for skipped in report.skipped:
        lines.append(f"skipped {skipped.path}: {skipped.reason}")
    for warning in report.warnings:
        lines.append(f"warning: {warning}")
    if report.closed_gaps:
        closed = ", ".join(f"#{gap_id}" for gap_id in report.closed_gaps)
        lines.append(f"closed knowledge gaps answered by accepted guidance: {closed}")
    return "\n".join(lines)


def _ask(services: Services, args: argparse.Namespace) -> int:
    filters = Filters(
        kinds=tuple(args.kind or ()),
        statuses=tuple(args.status or ()),
        tags=tuple(t.lower() for t in args.tag or ()),
    )
    masked = mask_secrets(args.question)  # searched without it, and recorded masked
    if masked.kinds:
        notice = masked_notice(masked.kinds, "the question", exposed="it is in your shell history")
        print(f"steward: note: {notice}", file=sys.stderr)
    # recorded as Slack records it: the answer log, and a knowledge gap when Steward abstains
    asked = Asked(args.question, place=CLI, asker=args.asker or _login_name(), filters=filters)
    answer = services.questions.ask(asked).answer
    for problem in services.retriever.sources().problems:  # the trust settings name no such source
        print(f"steward: warning: {problem}", file=sys.stderr)
    if args.json:
        print(json.dumps(answer.public_json(), indent=2, ensure_ascii=False))
    else:
        print(format_answer(answer))
    return 0


MAX_ASKER = 32  # characters: the answer log's asker column (a Slack user id in Slack)


def _requester(text: str) -> str:
    """`--as`: any requester id, but one written as an agent must be a valid `agent:NAME`."""
    if is_agent(text) and not AGENT_ID.fullmatch(text):
        raise argparse.ArgumentTypeError(
            "an agent is agent:NAME, NAME 1 to 40 lowercase letters, digits and dashes, "
            "starting with a letter"
        )
    return text


def _user_id(text: str) -> str:
    """`--owner`: a Slack user id."""
    if not USER_ID.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a Slack user id (U…)")
    return text


def _agent_owner(services: Services, requester: str, owner: str | None) -> str | None:
    """The owner `policy explain` names: the one given, else the one recorded for the agent, if any."""
    if owner is not None or not is_agent(requester):
        return owner
    name = requester.removeprefix(AGENT_PREFIX)
    return next((r.agent.owner for r in services.agent_registry.list() if r.agent.name == name), None)


def _asker(text: str) -> str:
    name = text.strip()
    if not name or len(name) > MAX_ASKER:
        raise argparse.ArgumentTypeError(f"give a name of 1 to {MAX_ASKER} characters")
    return name


def _login_name() -> str:
    """Who runs `steward ask`: the login name, or the user id where the system has no name for it."""
    try:
        return getpass.getuser()[:MAX_ASKER]
    except (KeyError, OSError):  # a container's uid without a passwd entry
        return f"uid:{os.getuid()}"


def format_answer(answer: Answer) -> str:
    """An answer for the terminal: text, warnings, numbered sources, confidence."""
    lines = [answer.answer, ""]
    for warning in answer.warnings:
        lines.append(f"! {warning}")
    if answer.warnings:
        lines.append("")
    if answer.citations:
        lines.append("Sources:")
        for number, c in enumerate(answer.citations, start=1):
            details = ", ".join(
                part
                for part in (
                    c.status and f"status: {c.status}",
                    c.owner and f"owner: {c.owner}",
                    c.source and f"source: {c.source}" + (" (untrusted)" if c.untrusted else ""),
                )
                if part
            )
            where = c.url or c.path
            lines.append(f"  [{number}] {c.title} — {where}")
            lines.append(f"      section: {c.section}" + (f" ({details})" if details else ""))
    label = "abstained" if answer.abstained else "answered"
    written = f"written by {answer.written_by}"
    if answer.fallback_reason:  # the extractive answer stands in for the LLM's: say why
        written += f" because {answer.fallback_reason}"
    lines.append(f"({label}; confidence {answer.confidence:.2f}; {written})")
    return "\n".join(lines)


def _policy(services: Services, args: argparse.Namespace) -> int:
    folder = services.settings.policies_dir
    if args.policy_command == "check":
        code, report = check_report(folder, allowed_programs=services.settings.allowed_programs)
        if code == 0 and args.tools:  # the servers are only asked about a catalog that loads
            code, tools = tool_report(load_policy(folder))
            report = f"{report}\n{tools}"
        print(report, file=sys.stdout if code == 0 else sys.stderr)
        return code
    policy = load_policy(folder)
    raw = parse_key_values(" ".join(shlex.quote(param) for param in args.params))
    request = build_request(policy, args.action, raw)
    moment = dt.datetime.fromtimestamp(args.at if args.at is not None else time.time(), tz=dt.UTC)
    resolver: SlackGroupResolver = no_slack_groups
    usergroups = any(USERGROUP_ID.fullmatch(member) for group in policy.groups.values() for member in group)
    if usergroups and services.settings.slack_bot_token is not None:
        resolver = services.slack_groups  # as `steward serve` resolves them
    actor = Actor(user_id=args.user, channel=args.channel)
    owner = _agent_owner(services, args.user, args.owner)
    print(explain(policy, request, actor, moment, resolver, owner=owner))
    if usergroups and resolver is no_slack_groups:
        print("(Slack user groups (S…) counted nobody: set SLACK_BOT_TOKEN to look up their members)")
    return 0


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [part.strip() for part in text.split(",") if part.strip()]


def _agents(services: Services, args: argparse.Namespace) -> int:
    registry = services.agent_registry
    who = f"cli:{getpass.getuser()}"
    if args.agents_command == "add":
        agent, token = registry.add(
            args.name,
            args.owner,
            scopes=_names(args.scope) or [],
            actions=_names(args.actions),
            known_actions=list(services.policy().policy.actions),
            max_pending=args.max_pending,
            per_minute=args.per_minute,
            created_by=who,
        )
        actions = ", ".join(agent.actions) if agent.actions is not None else "every catalog action"
        print(f"agent {agent.name} (token id {agent.token_id}, owner {agent.owner})")
        print(f"scopes: {', '.join(agent.scopes)}; actions: {actions}")
        print(f"limits: {agent.max_pending} pending, {agent.per_minute} requests per minute")
        print()
        print("Its token, shown this once (Steward keeps only its hash; give it to the agent as a secret):")
        print(token)
        return 0
    if args.agents_command == "revoke":
        registry.revoke(args.name, revoked_by=who)
        print(f"agent {args.name} revoked: its token is refused from now on")
        return 0
    records = registry.list()
    if not records:
        print("no agents yet: `steward agents add NAME --owner U…` creates one")
        return 0
    for record in records:
        agent = record.agent
        state = "revoked " + _when(record.revoked_at) if record.revoked_at is not None else "active"
        actions = ",".join(agent.actions) if agent.actions is not None else "*"
        print(
            f"{agent.name}\ttoken {agent.token_id}\towner {agent.owner}\tscopes {','.join(agent.scopes)}"
            f"\tactions {actions}\tcreated {_when(record.created_at)}\t{state}"
        )
    return 0


def _when(at: float) -> str:
    return dt.datetime.fromtimestamp(at, tz=dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _mcp(url: str | None) -> int:
    from bot.agents.client import StewardClient
    from bot.agents.mcp_server import checked, serve_stdio

    url = (url or os.environ.get("STEWARD_URL") or "").strip()
    token = (os.environ.get("STEWARD_AGENT_TOKEN") or "").strip()
    missing = [name for name, value in (("STEWARD_URL", url), ("STEWARD_AGENT_TOKEN", token)) if not value]
    if missing:
        raise ConfigurationError(
            f"steward mcp needs {' and '.join(missing)}: the Steward server's address (or --url) and the "
            "agent's token that `steward agents add` printed"
        )
    with StewardClient(url, token) as client:
        serve_stdio(checked(client, url))
    return 0


def _audit(services: Services, args: argparse.Namespace) -> int:
    # verify reads the log, its head and the requests as of one moment, while replicas append
    with actions_transaction(services.records, snapshot=args.audit_command == "verify") as connection:
        if args.audit_command == "verify":
            return _verify(verify_log(connection), services.audit_anchor.checkpoints)
        out = args.output.open("w", encoding="utf-8") if args.output else sys.stdout
        try:
            written = 0
            for entry in iter_audit(connection, since=args.since):
                out.write(json.dumps(entry, ensure_ascii=False) + "\n")
                written += 1
        finally:
            if args.output:
                out.close()
        if args.output:
            print(f"{written} entries written to {args.output}")
        return 0


def _verify(report: AuditReport, checkpoints: CheckpointFile | None) -> int:
    """`steward audit verify`'s report: OK with what was checked, or each problem (exit 1)."""
    where = f" in {checkpoints.path}" if checkpoints is not None else ""
    latest = report.checkpoints[-1].describe() if report.checkpoints else None
    lines = [
        f"every entry's MAC checked with the audit key from {report.key.source} (id {report.key.key_id})",
        f"latest checkpoint{where}: {latest} ({len(report.checkpoints)} checked)"
        if latest
        else f"no checkpoint yet{where}: entries deleted from the end cannot be told apart",
        f"{report.requests} approved or run request(s) checked against their approvals in the log",
    ]
    if report.unkeyed:
        lines.append(
            f"not anchored: entries 1-{report.unkeyed} were written before the log was keyed "
            "(plain SHA-256); "
            + (
                f"entry {report.anchored_at} fixed them, but they could have been changed before it"
                if report.anchored_at
                else "the next entry written fixes them"
            )
        )
    lines += [f"the run check refused a request: {refusal}" for refusal in report.refused]
    if report.key.created and report.entries:
        lines.append(f"the key {report.key.source} was generated just now: it cannot be the writers' key")
    if report.problems:
        print(
            f"audit log BROKEN: {len(report.problems)} problem(s) in {report.entries} entries",
            file=sys.stderr,
        )
        for line in [*map(str, report.problems), *lines]:
            print(f"  {line}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"audit log OK: {report.entries} entries")
    for line in lines:
        print(f"  {line}")
    return 0


def _eval(services: Services, args: argparse.Namespace) -> int:
    questions = read_questions(args.questions)
    result = evaluate(services.answers, questions)
    summary = result.summary()
    print(
        f"{summary['questions']} questions: recall@5 {summary['recall@5']:.3f}, "
        f"MRR@10 {summary['mrr@10']:.3f}, "
        f"hint@5 {summary['hint@5']:.3f}, hint@1 {summary['hint@1']:.3f}"
    )
    print(
        f"what the reader sees: answer-hint {summary['answer_hint']:.3f}, "
        f"answer length p50 {summary['answer_chars_p50']} / p95 {summary['answer_chars_p95']} characters, "
        f"{summary['fragment_lines']} fragment lines"
    )
    print(
        f"abstention: {summary['abstained_unanswerable']}/{summary['unanswerable']} unanswerable, "
        f"{summary['abstained_answerable']}/{summary['answerable']} answerable; "
        f"precision {summary['abstention_precision']:.3f}, recall {summary['abstention_recall']:.3f}"
    )
    print(f"latency p50 {summary['latency_p50_ms']:.1f} ms, p95 {summary['latency_p95_ms']:.1f} ms")
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        with args.report.open("w", encoding="utf-8") as out:
            for row in result.rows:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(f"report: {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
