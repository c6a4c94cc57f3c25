"""Planted secrets and personal data, of the common formats, counted wherever Steward writes text: the
index (catalog, vectors, lexicon), the logs, the audit log and the prompts sent to an LLM. Target: zero
leaks. Text that only looks technical (dates, versions, addresses, Slack ids) stays as it is."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from langchain_core.messages import AIMessage

from bot.logs import CORRELATION, JsonFormatter, RedactingFilter
from bot.redaction import Masked, findings, mask_secrets, masked_notice, redact, redact_data, without_secrets
from bot.store.action_requests import append_audit, audit_log, verify_chain
from bot.store.engine import create_engine
from bot.store.schema import upgrade
from bot.wiring import Services
from tests.conftest import ROOT, write_tree
from tests.fakes.llm import ToolCallingFake

# Fake values in the real formats (none of them is a live credential).
PLANTED: dict[str, str] = {
    "slack-token": "xoxb-2048675309-4096123456789-Qw3rTy7UiOp9AsDfGhJkLzXc",
    "slack-app-token": "xapp-1-A0123456789-4096123456789-0f1e2d3c4b5a69788796a5b4c3d2e1f0",
    "slack-webhook": "https://hooks.slack.com/services/T0ABCDEF1/B0ABCDEF2/Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2",
    "aws-access-key": "AKIAZ7Q4XJ2LMNB5RT3W",
    "aws-secret-key": "aws_secret_access_key = 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",
    "gcp-api-key": "AIzaSyC9x7Lq2Vb8Nm4Kp6Rt1Wd3Hf5Gj0Ts8Ua",
    "github-token": "ghp_7Rt2vYx9Lm4Nb7Kc1Zp5Wd3Hf6Gj0Ts8Ua2Ve",
    "openai-key": "sk-proj-Q8rT2vYx9Lm4Nb7Kc1Zp5Wd3Hf6Gj0Ts8Ua2Ve4XyZ",
    "anthropic-key": "sk-ant-api03-Q8rT2vYx9Lm4Nb7Kc1Zp5Wd3Hf6Gj0Ts8Ua2Ve4X",
    "stripe-key": "sk_live_51Hq8rT2vYx9Lm4Nb7Kc1Zp5W",
    "jwt": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c2VyLTQyIiwicm9sZSI6ImFkbWluIn0."
    "Xq2vYx9Lm4Nb7Kc1Zp5Wd3Hf6Gj0Ts8Ua2Ve4XyZ0",
    "pem": "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
    "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n-----END RSA PRIVATE KEY-----",
    "url-password": "postgresql://steward:Wq7!pL2zR9vK@db.internal:5432/steward",
    "password": "password=Hx7pQ2mZ9wLk",
    "email": "jane.doe@example.com",
    "phone-international": "+49 30 1234 5678",
    "phone-us": "(415) 555-0134",
}
# The part of each planted value that must never appear anywhere.
SECRET_PART = {
    **PLANTED,
    "aws-secret-key": "q8Rt2vYx9Lm4Nb7Kc1Zp5Wd3Hf6Gj0Ts8Ua2Ve4X",
    "pem": "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun",
    "url-password": "Wq7!pL2zR9vK",
    "password": "Hx7pQ2mZ9wLk",
}
BENIGN = (
    "On 2026-11-24 at 09:30 the p95 was 28.5 s (300-500 ms before) on 10.0.0.12:8080, model v1.2.3, "
    "ts 1732456789.123456, <@U0123ABCD> in <#C0MLOPS>, owner @tomas.herrera, request "
    "123e4567-e89b-12d3-a456-426614174000, "
    "sha 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08, "
    "14,000 rows, rotate the secret monthly, password: see the vault."
)


def leaks(text: str) -> list[str]:
    """The planted values (their secret parts) that appear in `text`."""
    return [kind for kind, value in SECRET_PART.items() if value in text]


def planted_text() -> str:
    return "\n".join(f"- {kind}: {value}" for kind, value in PLANTED.items())


@pytest.mark.parametrize("kind", sorted(PLANTED))
def test_each_planted_value_is_found_and_masked(kind: str) -> None:
    text = f"before {PLANTED[kind]} after"
    assert findings(text), kind
    masked = redact(text)
    assert leaks(masked) == [] and "[redacted:" in masked
    assert masked.startswith("before ") and masked.endswith(" after")


def test_technical_text_that_is_not_secret_is_left_alone() -> None:
    assert findings(BENIGN) == []
    assert redact(BENIGN) == BENIGN


def test_nested_data_is_masked_and_keys_kept() -> None:
    data = {"reason": f"token {PLANTED['slack-token']}", "params": {"to": [PLANTED["email"]]}, "n": 3}
    assert redact_data(data) == {
        "reason": "token [redacted:slack-token]",
        "params": {"to": ["[redacted:email]"]},
        "n": 3,
    }


def test_nothing_planted_reaches_the_index(make_services: Callable[..., Services], tmp_path: Path) -> None:
    """Catalog text, lexicon terms and the vector store's documents: zero leaks; the ingest report says
    what was masked."""
    kb = write_tree(
        tmp_path / "kb",
        {
            "runbooks/credentials.md": "---\ntitle: Credentials in the payments service\n---\n"
            "# Credentials\n\nThe payments service reads these (do not paste them anywhere):\n\n"
            f"{planted_text()}\n\nAsk the on-call engineer to rotate them after an incident.\n",
        },
    )
    services = make_services()
    report = services.ingestor.run([kb])
    assert any("masked before indexing" in warning for warning in report.warnings)
    with services.catalog.engine.connect() as connection:
        stored = " ".join(
            f"{row.text} {row.terms}"
            for row in connection.execute(sa.text("SELECT text, terms FROM kb_chunks"))
        )
    vectors = json.dumps(services.vectors.collection().get(include=["documents", "metadatas"]), default=str)
    assert "rotate them after an incident" in stored  # the rest of the document is indexed
    assert leaks(stored) == [] and leaks(vectors) == [] and leaks(" ".join(report.warnings)) == []


def test_nothing_planted_reaches_the_logs() -> None:
    """Steward's log handler masks messages, their arguments and exceptions."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("steward.test-redaction")
    logger.addHandler(handler)
    try:
        CORRELATION.set("Ev-redaction")
        logger.warning("slack said %s for %s", PLANTED["slack-token"], PLANTED["email"])
        try:
            raise RuntimeError(f"cannot connect to {PLANTED['url-password']} with {PLANTED['jwt']}")
        except RuntimeError:
            logger.exception("connection failed")
    finally:
        logger.removeHandler(handler)
    written = stream.getvalue()
    lines = [json.loads(line) for line in written.splitlines()]
    assert len(lines) == 2 and all(line["correlation_id"] == "Ev-redaction" for line in lines)
    assert "[redacted:slack-token]" in lines[0]["message"] and "RuntimeError" in lines[1]["exception"]
    assert leaks(written) == []


def test_nothing_planted_reaches_the_audit_log(tmp_path: Path) -> None:
    """Free text in an audit entry (a rejection reason, an executor's output) is masked; the chain holds."""
    engine = create_engine(f"sqlite:///{tmp_path}/state.db")
    upgrade(engine)
    with engine.begin() as connection:
        append_audit(
            connection,
            at=1.0,
            kind="rejected",
            request_id="r-1",
            actor="U1",
            data={"reason": f"this leaks {planted_text()}", "output": [PLANTED["pem"]]},
        )
    with engine.connect() as connection:
        stored = " ".join(row.data for row in connection.execute(sa.select(audit_log.c.data)))
        entries, problems = verify_chain(connection)
    engine.dispose()
    assert entries == 1 and problems == []
    assert leaks(stored) == [] and "[redacted:jwt]" in stored


def test_nothing_planted_reaches_an_llm(make_services: Callable[..., Services], small_kb: Path) -> None:
    """The question and the passages sent to the model: zero leaks."""
    rollback = small_kb / "runbooks" / "model-rollback.md"
    rollback.write_text(rollback.read_text() + f"\n## Registry credentials\n\n{planted_text()}\n")
    model = ToolCallingFake(responses=[AIMessage(content="Move the production alias back [1].")])
    services = make_services(chat_model=model)
    services.ingestor.run([small_kb])
    answer = services.answers.ask(
        f"How do I roll back the fraud-scorer model in production? Token {PLANTED['slack-token']}, "
        f"write to {PLANTED['email']}"
    )
    assert model.prompts, (answer.abstained, answer.fallback_reason)
    sent = " ".join(str(message.content) for prompt in model.prompts for message in prompt)
    assert "production" in sent and "[redacted:" in sent
    assert leaks(sent) == []


def test_a_question_is_searched_without_its_secrets() -> None:
    """Markers would be searched for (and lower the confidence), so search gets the text without them."""
    assert (
        without_secrets(f"roll back fraud-scorer, token {PLANTED['slack-token']}")
        == "roll back fraud-scorer, token  "
    )


def test_nothing_planted_reaches_the_llm_that_proposes_actions(
    make_services: Callable[..., Services],
) -> None:
    """The person's words offered to the tool-calling model are masked too."""
    model = ToolCallingFake(responses=[AIMessage(content="not a request")])
    services = make_services(chat_model=model, policies_dir=ROOT / "policies")
    assert services.proposer is not None
    services.proposer.propose(
        f"please rotate {PLANTED['github-token']} and tell {PLANTED['email']}", services.policy().policy
    )
    sent = " ".join(str(message.content) for prompt in model.prompts for message in prompt)
    assert "[redacted:github-token]" in sent and leaks(sent) == []


@pytest.mark.parametrize("kind", sorted(PLANTED))
def test_what_people_type_is_stored_with_credentials_masked_and_personal_data_kept(kind: str) -> None:
    """`mask_secrets` (questions, replies, parameters): credentials masked and named, personal data kept."""
    text = f"before {PLANTED[kind]} after"
    masked = mask_secrets(text)
    if kind.startswith(("email", "phone")):
        assert masked == Masked(text)
    else:
        assert leaks(masked.text) == [] and masked.kinds
        assert all(f"[redacted:{found}]" in masked.text for found in masked.kinds)


@pytest.mark.parametrize("wrapping", ["_{}_", "*{}*", "~{}~", "`{}`", "({})", '"{}"', "<{}>"])
@pytest.mark.parametrize(
    "kind",
    ["aws-access-key", "github-token", "gcp-api-key", "stripe-key", "slack-token", "openai-key", "jwt"],
)
def test_a_credential_in_slack_formatting_is_found(wrapping: str, kind: str) -> None:
    """Italics, bold, strike-through, code and brackets around a token do not hide it."""
    masked = mask_secrets(wrapping.format(PLANTED[kind]))
    assert masked.kinds and leaks(masked.text) == []


def test_a_token_inside_a_longer_word_is_not_a_credential() -> None:
    """Letters or digits glued on both sides: an identifier or a hash, not an AWS key."""
    assert mask_secrets(f"x{PLANTED['aws-access-key']}9").kinds == ()


def test_the_notice_names_the_kinds_and_says_to_rotate() -> None:
    """What the person is told: what was masked, and that it is leaked all the same."""
    notice = masked_notice(["aws-access-key", "slack-token"], "the parameter `reason`")
    assert "(aws-access-key, slack-token) in the parameter `reason`" in notice
    assert "treat it as leaked: rotate it" in notice
