"""Typed values carried by Steward's buttons, shortcuts and modals (never ad-hoc dicts or strings).

A button's `value` is the JSON of one of these models; Slack hands it back verbatim on a click.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

# action_id of each button, callback_id of each shortcut and modal
ACTION_HELPFUL = "steward_feedback_helpful"
ACTION_NOT_HELPFUL = "steward_feedback_not_helpful"
ACTION_ASK_EXPERT = "steward_ask_expert"
ACTION_SAVE_GUIDANCE = "steward_save_guidance"
SHORTCUT_SAVE_GUIDANCE = "steward_save_guidance_shortcut"
VIEW_FEEDBACK_REASON = "steward_feedback_reason"
BLOCK_FEEDBACK = "steward_feedback"
BLOCK_REASON = "steward_reason"
INPUT_REASON = "reason"
# guarded actions: the approval card's buttons and the rejection modal
ACTION_APPROVE = "steward_action_approve"
ACTION_REJECT = "steward_action_reject"
ACTION_CANCEL = "steward_action_cancel"
ACTION_REVOKE = "steward_action_revoke"
VIEW_REJECT_REASON = "steward_action_reject_reason"
BLOCK_REJECT_REASON = "steward_reject_reason"
BLOCK_APPROVAL = "steward_approval"  # the approval card's buttons
INPUT_REJECT_REASON = "reason"
# the "Request an action" shortcut: pick an action, then a form generated from its parameters
SHORTCUT_REQUEST_ACTION = "steward_request_action"
VIEW_REQUEST_ACTION = "steward_request_action_form"
ACTION_PICK_ACTION = "steward_pick_action"
BLOCK_PICK_ACTION = "steward_pick_action"
BLOCK_CHANNEL = "steward_request_channel"
INPUT_CHANNEL = "channel"
BLOCK_PARAM_PREFIX = "steward_param_"  # + the parameter's name
INPUT_PARAM = "value"
# a digest's "Retrain…" / "Roll back…": opens the request form with the model filled in
ACTION_DIGEST_REQUEST = "steward_digest_request"
# a request an LLM proposed: the person who asked confirms or dismisses it
ACTION_CONFIRM_PROPOSAL = "steward_proposal_confirm"
ACTION_DISMISS_PROPOSAL = "steward_proposal_dismiss"


class _Value(BaseModel):
    # allow_inf_nan: a proposal's `at` of NaN would never expire, and would not encode again (null)
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    def encode(self) -> str:
        """The button value (Slack allows 2,000 characters; ours are a few dozen)."""
        return self.model_dump_json()


class FeedbackValue(_Value):
    """Helpful / not helpful on one posted answer."""

    answer_id: int
    helpful: bool


class ExpertValue(_Value):
    """ "Ask an expert" on an abstention: the knowledge gap it opened."""

    gap_id: int


class SaveGuidanceValue(_Value):
    """ "Save as guidance" offered to the person who replied in a gap's thread."""

    gap_id: int
    channel: str
    ts: str


class FeedbackReasonMetadata(_Value):
    """`private_metadata` of the optional-reason modal opened by "Not helpful"."""

    feedback_id: int
    channel: str
    user: str


class RequestValue(_Value):
    """Approve, Reject, Cancel or Revoke on an approval card: the action request it is about."""

    request_id: str


class RejectMetadata(_Value):
    """`private_metadata` of the rejection modal: the request, and the card to update afterwards."""

    request_id: str
    channel: str
    ts: str


class RequestFormMetadata(_Value):
    """`private_metadata` of the request form: the action picked so far (None before the first pick)."""

    action: str | None = None


class ProposalValue(_Value):
    """Confirm / Dismiss on a request an LLM proposed: the request, who may confirm it, and when."""

    action: str
    params: dict[str, str]
    user: str
    thread_ts: str
    at: float


class DigestActionValue(_Value):
    """A digest's action button: the action and the parameters it fills in (the person submits)."""

    action: str
    params: dict[str, str]
