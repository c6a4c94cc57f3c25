"""Build the Bolt app from settings: the Web API client, the listeners, HTTP mode or Socket Mode."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.error import URLError

from slack_bolt import App
from slack_bolt.error import BoltError
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from bot.actions.guarded import GuardedActions
from bot.actions.policy.gate import PolicyGate
from bot.actions.proposals import Proposer
from bot.answers.deliveries import Deliveries
from bot.answers.gaps import GapService
from bot.answers.knowledge import KnowledgeBase
from bot.answers.questions import QuestionService
from bot.answers.service import AnswerService
from bot.config import Settings, SettingsError
from bot.incidents.service import IncidentService
from bot.logs import ContextExecutor, correlate
from bot.metrics import CountingRetryHandler, count_api_error
from bot.slack.action_flows import ActionFlows
from bot.slack.assistant import AssistantPane
from bot.slack.experts import Expertise
from bot.slack.incidents import IncidentFlows
from bot.slack.listeners import register
from bot.slack.pacing import ChannelPacer
from bot.slack.posting import Poster
from bot.slack.proposals import PROPOSAL_SECONDS, ProposalFlows, Say, Submit
from bot.slack.questions import QuestionFlows
from bot.slack.recovery import EventRecovery
from bot.slack.workspace import Installation, other_teams_refused

log = logging.getLogger("steward.slack")


class _ClientGiven(logging.Filter):
    """Bolt warns that SLACK_BOT_TOKEN goes unused because Steward hands it a client built from it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != warning_client_prioritized_and_token_skipped()


bolt_log = logging.getLogger("steward.bolt")
bolt_log.addFilter(_ClientGiven())


class SlackSetupError(SettingsError):
    """Steward cannot start its Slack side; the message names the variable to fix."""


@dataclass
class SlackApp:
    """A built Bolt app and what it runs on."""

    bolt: App
    executor: ThreadPoolExecutor
    socket_mode: bool
    conversations: QuestionFlows
    expertise: Expertise
    actions: ActionFlows | None = None  # None when no guarded-actions service was given
    recovery: EventRecovery | None = None  # answers what a dead replica acknowledged (housekeeping)
    pane: AssistantPane | None = None  # Slack's assistant pane (the AI app split view)
    signing_secret: str | None = None  # HTTP mode: requests are checked before Bolt (bot/slack/intake.py)


def missing_credentials(settings: Settings) -> list[str]:
    """The Slack variables `steward serve` still needs (Socket Mode when SLACK_APP_TOKEN is set)."""
    missing = [] if settings.slack_bot_token else ["SLACK_BOT_TOKEN"]
    if not settings.slack_app_token and not settings.slack_signing_secret:
        missing.append("SLACK_SIGNING_SECRET")
    return missing


# The README heading that says where each credential comes from (tests/test_docs.py checks that it exists).
CREDENTIALS_SECTION = "Installing the Slack app"


def credentials_message(missing: list[str]) -> str:
    """Which variables to set, and what each mode needs."""
    return (
        "Slack credentials missing: set " + " and ".join(missing) + ". HTTP mode needs SLACK_BOT_TOKEN and "
        "SLACK_SIGNING_SECRET; Socket Mode needs SLACK_BOT_TOKEN and SLACK_APP_TOKEN "
        f'(see "{CREDENTIALS_SECTION}" in README.md).'
    )


class MeteredWebClient(WebClient):
    """The Web API client that counts failed calls for /metrics (Slack's error code, not the payload)."""

    def api_call(self, api_method: str, **kwargs: Any) -> Any:
        try:
            return super().api_call(api_method, **kwargs)
        except SlackApiError as exc:
            count_api_error(api_method, exc.response)
            raise


def web_client(settings: Settings) -> WebClient:
    """The Web API client: Slack's URL (or SLACK_API_URL), retries on 429 (after Retry-After) and 5xx."""
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    return MeteredWebClient(
        token=token,
        base_url=settings.slack_api_url or WebClient.BASE_URL,
        timeout=15,
        retry_handlers=[
            CountingRetryHandler(),  # counts 429s and server errors; never retries itself
            RateLimitErrorRetryHandler(max_retry_count=3),
            ServerErrorRetryHandler(max_retry_count=2),
            ConnectionErrorRetryHandler(max_retry_count=2),
        ],
    )


def check_token(client: WebClient) -> Installation:
    """auth.test: where Steward is installed; a rejected or missing token is a SlackSetupError."""
    try:
        reply = client.auth_test().data
        return Installation.from_auth_test(reply if isinstance(reply, dict) else {})
    except SlackApiError as exc:
        raise SlackSetupError(
            f"Slack rejected SLACK_BOT_TOKEN (auth.test: {exc.response.get('error')}); copy the Bot User "
            "OAuth Token (xoxb-…) from the app's OAuth & Permissions page"
        ) from None
    except (URLError, OSError) as exc:
        raise SlackSetupError(
            f"cannot reach the Slack Web API at {client.base_url} ({exc}); check the network or SLACK_API_URL"
        ) from None


def build_app(
    settings: Settings,
    answers: Callable[[], AnswerService],
    questions: QuestionService,
    gaps: GapService,
    knowledge: KnowledgeBase,
    deliveries: Deliveries,
    client: WebClient,
    executor: ThreadPoolExecutor | None = None,
    actions: GuardedActions | None = None,
    policy: Callable[[], PolicyGate] | None = None,
    proposer: Proposer | None = None,
    incidents: IncidentService | None = None,
) -> SlackApp:
    """The Bolt app with Steward's listeners; checks the bot token with Slack (auth.test).

    Guarded actions (`/steward run`, action mentions, approval cards) are on when `actions` and
    `policy` are given; with a `proposer` (an LLM), mentions in free words may become proposals too.
    `client` is the composition root's (`steward serve`'s: the one its policy folder resolves Slack user
    groups with). `/steward incident` and acknowledgements in incident threads are on with `incidents`.
    The services come from the composition root (bot/wiring.py); the app builds only Slack's side.
    """
    missing = missing_credentials(settings)
    if missing:
        raise SlackSetupError(credentials_message(missing))
    socket_mode = settings.slack_app_token is not None
    installation = check_token(client)
    if executor is None:
        executor = ContextExecutor(
            max_workers=settings.slack_workers,
            thread_name_prefix="steward-worker",
        )
    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
    try:
        bolt = App(
            name="steward.bolt",  # Bolt sets this logger's level: never the "steward" parent
            client=client,
            signing_secret=secret,
            request_verification_enabled=not socket_mode,
            listener_executor=executor,
            # Acknowledgements run on the request's own thread: otherwise Bolt queues them on the
            # listener executor behind slow lazy work, and a busy replica answers clicks with 404
            # after 3 s. Every ack function here is trivial; the work stays in lazy listeners.
            process_before_response=True,
            logger=bolt_log,
        )
    except (BoltError, SlackApiError, URLError, OSError) as exc:
        executor.shutdown(wait=False)
        raise SlackSetupError(f"the Slack app could not start: {exc}") from None
    poster = Poster(ChannelPacer(settings.channel_posts_per_second))
    proposals: Callable[[Submit, Say], ProposalFlows] | None = None
    if policy is not None and proposer is not None:
        kept = max(settings.event_retention_seconds, PROPOSAL_SECONDS)  # a proposal is confirmed once
        gate, llm = policy, proposer

        def proposals(submit: Submit, say: Say) -> ProposalFlows:
            return ProposalFlows(
                llm, gate, poster, submit, say, lambda key: deliveries.claim(key, retention_seconds=kept)
            )

    action_flows = (
        ActionFlows(settings, actions, policy, answers, poster, proposals=proposals)
        if actions is not None and policy is not None
        else None
    )
    conversations = QuestionFlows(
        settings,
        questions=questions,
        gaps=gaps,
        knowledge=knowledge,
        deliveries=deliveries,
        poster=poster,
        actions=action_flows,
        incidents=None if incidents is None else IncidentFlows(incidents, poster),
    )
    expertise = Expertise(gaps, poster)
    bolt.middleware(correlate)
    bolt.middleware(other_teams_refused(installation))  # after Bolt's signature check, before listeners
    pane = AssistantPane(conversations, knowledge, poster)
    register(bolt, conversations, expertise, action_flows, pane)
    recovery = EventRecovery(conversations, deliveries)
    return SlackApp(
        bolt, executor, socket_mode, conversations, expertise, action_flows, recovery, pane, secret
    )
