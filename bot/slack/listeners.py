"""Every Slack listener is registered here, in one place; the handler bodies are plain methods.

Each listener acknowledges first (no I/O on that path) and does its work lazily on the listener
executor: Slack wants the acknowledgement within 3 seconds, and retrieval or posting can take longer.
"""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, Assistant

from bot.slack.action_flows import ActionFlows
from bot.slack.assistant import AssistantPane
from bot.slack.experts import Expertise
from bot.slack.home import HELP
from bot.slack.payloads import (
    ACTION_APPROVE,
    ACTION_ASK_EXPERT,
    ACTION_CANCEL,
    ACTION_CONFIRM_PROPOSAL,
    ACTION_DIGEST_REQUEST,
    ACTION_DISMISS_PROPOSAL,
    ACTION_HELPFUL,
    ACTION_NOT_HELPFUL,
    ACTION_PICK_ACTION,
    ACTION_REJECT,
    ACTION_REVOKE,
    ACTION_SAVE_GUIDANCE,
    SHORTCUT_REQUEST_ACTION,
    SHORTCUT_SAVE_GUIDANCE,
    VIEW_FEEDBACK_REASON,
    VIEW_REJECT_REASON,
    VIEW_REQUEST_ACTION,
)
from bot.slack.questions import QuestionFlows

COMMAND = "/steward"


def _ack(ack: Ack) -> None:
    ack()


def _ack_command(ack: Ack, command: dict[str, Any]) -> None:
    # Help needs no I/O, so it is the acknowledgement itself; everything else is answered lazily.
    verb = str(command.get("text") or "").strip().split(" ", 1)[0].lower()
    if verb in ("", "help"):
        ack(text=HELP)
    else:
        ack()


def register(
    app: App,
    conversations: QuestionFlows,
    expertise: Expertise,
    actions: ActionFlows | None = None,
    pane: AssistantPane | None = None,
) -> None:
    """Attach Steward's listeners to a Bolt app (the approval card's only when actions are wired)."""
    if pane is not None:  # middleware: it takes the pane's messages before any listener below sees them
        app.assistant(assistant(conversations, pane))
    app.event("app_mention")(ack=conversations.ack_event, lazy=[conversations.on_mention])
    app.event("message")(ack=conversations.ack_event, lazy=[conversations.on_message])
    app.event("app_home_opened")(ack=_ack, lazy=[conversations.on_home_opened])
    app.command(COMMAND)(ack=_ack_command, lazy=[conversations.on_command])
    app.action(ACTION_HELPFUL)(ack=_ack, lazy=[expertise.on_feedback])
    app.action(ACTION_NOT_HELPFUL)(ack=_ack, lazy=[expertise.on_feedback])
    app.action(ACTION_ASK_EXPERT)(ack=_ack, lazy=[expertise.on_ask_expert])
    app.action(ACTION_SAVE_GUIDANCE)(ack=_ack, lazy=[expertise.on_save_button])
    app.shortcut(SHORTCUT_SAVE_GUIDANCE)(ack=_ack, lazy=[expertise.on_save_shortcut])
    app.view(VIEW_FEEDBACK_REASON)(ack=_ack, lazy=[expertise.on_reason])
    if actions is not None:
        app.action(ACTION_APPROVE)(ack=_ack, lazy=[actions.on_approve])
        app.action(ACTION_REJECT)(ack=_ack, lazy=[actions.on_reject])
        app.action(ACTION_CANCEL)(ack=_ack, lazy=[actions.on_cancel])
        app.action(ACTION_REVOKE)(ack=_ack, lazy=[actions.on_revoke])
        app.view(VIEW_REJECT_REASON)(ack=actions.ack_reject_reason, lazy=[actions.on_reject_reason])
        app.shortcut(SHORTCUT_REQUEST_ACTION)(ack=_ack, lazy=[actions.forms.on_request_shortcut])
        app.action(ACTION_PICK_ACTION)(ack=_ack, lazy=[actions.forms.on_pick_action])
        app.action(ACTION_DIGEST_REQUEST)(ack=_ack, lazy=[actions.forms.on_digest_request])
        if actions.proposals is not None:
            app.action(ACTION_CONFIRM_PROPOSAL)(ack=_ack, lazy=[actions.proposals.on_confirm])
            app.action(ACTION_DISMISS_PROPOSAL)(ack=_ack, lazy=[actions.proposals.on_dismiss])
        # The form is checked in its acknowledgement: Slack shows field errors only from there.
        app.view(VIEW_REQUEST_ACTION)(
            ack=actions.forms.ack_request_form, lazy=[actions.forms.on_request_form]
        )


def assistant(conversations: QuestionFlows, pane: AssistantPane) -> Assistant:
    """The assistant pane: a thread opened, the channel in view changed, a message in one of its threads."""
    listeners = Assistant()
    listeners.thread_started(lazy=[pane.on_thread_started])(_ack)
    # Steward answers from the knowledge base, not from the channel the person is looking at, so the
    # context is only acknowledged. (Bolt's default would store it with two Web API calls on the ack path.)
    listeners.thread_context_changed(_ack)
    # A direct message in a thread: claimed at acknowledgement and answered like any other.
    listeners.user_message(lazy=[conversations.on_assistant_message])(conversations.ack_event)
    return listeners
