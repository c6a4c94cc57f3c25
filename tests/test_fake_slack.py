"""The fake Slack Web API behaves like Slack towards the real slack_sdk client, over real loopback HTTP."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import urllib.request

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier

from tests.support.slack import FakeSlack, command_body, event_body, form_body, sign

TOKEN = "xoxb-test"
SECRET = "test-signing-secret"


def post(url: str, data: bytes, content_type: str) -> tuple[int, bytes]:
    """POST raw bytes with urllib; return status and body."""
    # Loopback http URLs the fake built itself.
    headers = {"Content-Type": content_type}
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status, response.read()


def test_urls_point_at_loopback_and_api_url_ends_with_api(slack: FakeSlack) -> None:
    """url is http://127.0.0.1:PORT and api_url adds /api/."""
    assert slack.url.startswith("http://127.0.0.1:")
    assert slack.api_url == slack.url + "/api/"


def test_auth_test_reports_the_bot_identity(client: WebClient) -> None:
    """auth.test returns the configured team, bot user and bot ids."""
    reply = client.auth_test()
    assert (reply["team_id"], reply["user_id"], reply["bot_id"]) == ("T0FAKE", "UBOT", "BBOT")


def test_bot_ids_are_constructor_parameters() -> None:
    """Custom bot ids show up in auth.test and as attributes."""
    with FakeSlack(bot_user_id="UOTHER", bot_id="BOTHER", team_id="TOTHER") as fake:
        reply = WebClient(token=TOKEN, base_url=fake.api_url).auth_test()
        assert (reply["user_id"], reply["bot_id"], reply["team_id"]) == ("UOTHER", "BOTHER", "TOTHER")
        assert (fake.bot_user_id, fake.bot_id, fake.team_id) == ("UOTHER", "BOTHER", "TOTHER")


def test_post_then_read_the_thread_through_conversations_replies(slack: FakeSlack, client: WebClient) -> None:
    """A seeded root and the bot's threaded reply come back from conversations.replies, oldest first."""
    root = slack.add_message("C1", "how do I roll back?", "UASKER")
    posted = client.chat_postMessage(channel="C1", thread_ts=root, text="Move the alias back.")
    replies = client.conversations_replies(channel="C1", ts=root)
    assert [m["ts"] for m in replies["messages"]] == [root, posted["ts"]]
    assert [m["text"] for m in replies["messages"]] == ["how do I roll back?", "Move the alias back."]
    assert replies["messages"][1]["user"] == "UBOT"
    assert replies["messages"][0]["reply_count"] == 1
    assert replies["has_more"] is False


def test_timestamps_are_unique_and_increasing(slack: FakeSlack, client: WebClient) -> None:
    """Seeded and posted messages share one increasing ts sequence."""
    first = slack.add_message("C1", "one", "UASKER")
    second = client.chat_postMessage(channel="C1", text="two")["ts"]
    third = slack.add_message("C1", "three", "UASKER")
    assert first == "1700000000.000100"
    assert float(first) < float(second) < float(third)


def test_the_bearer_token_is_recorded(slack: FakeSlack, client: WebClient) -> None:
    """Every call carries the token from the Authorization header."""
    client.chat_postMessage(channel="C1", text="hi")
    assert [call.token for call in slack.calls("chat.postMessage")] == [TOKEN]


def test_chat_update_changes_the_stored_message(slack: FakeSlack, client: WebClient) -> None:
    """chat.update replaces the text and blocks of the stored message."""
    ts = client.chat_postMessage(channel="C1", text="Thinking…")["ts"]
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "Done"}}]
    client.chat_update(channel="C1", ts=ts, text="Done", blocks=blocks)
    [message] = slack.messages("C1")
    assert (message["text"], message["blocks"]) == ("Done", blocks)


def test_chat_update_of_an_unknown_message_fails(client: WebClient) -> None:
    """chat.update answers message_not_found for an unknown ts."""
    with pytest.raises(SlackApiError) as raised:
        client.chat_update(channel="C1", ts="1.000000", text="x")
    assert raised.value.response["error"] == "message_not_found"


def test_post_without_channel_is_channel_not_found(slack: FakeSlack) -> None:
    """chat.postMessage without a channel answers channel_not_found."""
    status, body = post(slack.api_url + "chat.postMessage", b"text=hi", "application/x-www-form-urlencoded")
    assert (status, json.loads(body)) == (200, {"ok": False, "error": "channel_not_found"})


def test_form_bodies_and_query_strings_become_one_flat_dict(slack: FakeSlack) -> None:
    """Form fields, query parameters and JSON-string blocks all land in args, decoded."""
    blocks = [{"type": "divider"}]
    data = urllib.parse.urlencode({"channel": "C1", "text": "hi", "blocks": json.dumps(blocks)}).encode()
    post(slack.api_url + "chat.postMessage?unfurl_links=false", data, "application/x-www-form-urlencoded")
    [call] = slack.calls("chat.postMessage")
    assert call.args == {"channel": "C1", "text": "hi", "blocks": blocks, "unfurl_links": "false"}


def test_chat_delete_removes_the_message(slack: FakeSlack, client: WebClient) -> None:
    """chat.delete takes the message out of the channel."""
    ts = client.chat_postMessage(channel="C1", text="oops")["ts"]
    client.chat_delete(channel="C1", ts=ts)
    assert slack.messages("C1") == []


def test_ephemeral_messages_are_not_stored(slack: FakeSlack, client: WebClient) -> None:
    """chat.postEphemeral returns a message_ts but leaves the channel empty."""
    reply = client.chat_postEphemeral(channel="C1", user="UASKER", text="only you")
    assert reply["message_ts"]
    assert slack.messages("C1") == []


def test_permalink_is_built_from_channel_and_ts(client: WebClient) -> None:
    """chat.getPermalink returns an archive link with the dot removed from the ts."""
    reply = client.chat_getPermalink(channel="C1", message_ts="1700000000.000100")
    assert reply["permalink"] == "https://fake.slack.com/archives/C1/p1700000000000100"


def test_history_lists_top_level_messages_newest_first(slack: FakeSlack, client: WebClient) -> None:
    """conversations.history leaves out thread replies and puts the newest message first."""
    first = slack.add_message("C1", "first", "UASKER")
    slack.add_message("C1", "a reply", "UEXPERT", thread_ts=first)
    second = slack.add_message("C1", "second", "UASKER")
    history = client.conversations_history(channel="C1")
    assert [m["ts"] for m in history["messages"]] == [second, first]


def test_replies_of_an_unknown_thread_fail(client: WebClient) -> None:
    """conversations.replies answers thread_not_found without a root message."""
    with pytest.raises(SlackApiError) as raised:
        client.conversations_replies(channel="C1", ts="1700000000.000100")
    assert raised.value.response["error"] == "thread_not_found"


def test_reactions_show_on_known_messages(slack: FakeSlack, client: WebClient) -> None:
    """reactions.add and reactions.remove are ok and change a known message's reactions."""
    ts = slack.add_message("C1", "question", "UASKER")
    client.reactions_add(channel="C1", timestamp=ts, name="eyes")
    assert slack.messages("C1")[0]["reactions"] == [{"name": "eyes", "users": ["UBOT"], "count": 1}]
    client.reactions_remove(channel="C1", timestamp=ts, name="eyes")
    assert "reactions" not in slack.messages("C1")[0]


def test_views_get_an_id(client: WebClient) -> None:
    """views.publish echoes the view with an id."""
    home = {"type": "home", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}]}
    reply = client.views_publish(user_id="UASKER", view=home)
    assert reply["view"]["id"].startswith("V")
    assert reply["view"]["type"] == "home"


def test_users_come_from_the_registry(slack: FakeSlack, client: WebClient) -> None:
    """users.info and users.list return registered users; others are user_not_found."""
    slack.add_user("UDANA", "dana")
    assert client.users_info(user="UDANA")["user"]["name"] == "dana"
    assert [u["id"] for u in client.users_list()["members"]] == ["UDANA"]
    with pytest.raises(SlackApiError) as raised:
        client.users_info(user="UNOBODY")
    assert raised.value.response["error"] == "user_not_found"


def test_conversations_open_returns_a_dm_channel(client: WebClient) -> None:
    """conversations.open gives "D" + the user id."""
    assert client.conversations_open(users="UDANA")["channel"]["id"] == "DUDANA"


def test_unknown_methods_fail_but_are_recorded(slack: FakeSlack, client: WebClient) -> None:
    """An unsupported method answers unknown_method and still shows up in calls()."""
    with pytest.raises(SlackApiError) as raised:
        client.api_call("bookmarks.add", json={"channel_id": "C1"})
    assert raised.value.response["error"] == "unknown_method"
    assert [c.method for c in slack.calls()] == ["bookmarks.add"]


def test_rate_limit_then_success_with_a_retry_handler(slack: FakeSlack) -> None:
    """A 429 with Retry-After 1 is retried by slack_sdk after about a second, then succeeds."""
    client = WebClient(
        token=TOKEN, base_url=slack.api_url, retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)]
    )
    slack.fail("chat.postMessage", status=429, retry_after=1)
    reply = client.chat_postMessage(channel="C1", text="hi")
    assert reply["ok"] is True
    first, second = slack.calls("chat.postMessage")
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 0.95
    assert len(slack.messages("C1")) == 1


def test_server_error_raises_without_a_retry_handler(slack: FakeSlack, client: WebClient) -> None:
    """A 500 surfaces as SlackApiError and is not retried."""
    slack.fail("chat.postMessage", status=500)
    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel="C1", text="hi")
    assert raised.value.response.status_code == 500
    assert raised.value.response["error"] == "internal_error"
    assert [c.status for c in slack.calls("chat.postMessage")] == [500]


def test_failure_with_status_200_returns_the_given_error(slack: FakeSlack, client: WebClient) -> None:
    """fail(status=200) answers ok=false with the error, once; the next call succeeds."""
    slack.fail("chat.postMessage", status=200, error="not_in_channel")
    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel="C1", text="hi")
    assert raised.value.response["error"] == "not_in_channel"
    assert client.chat_postMessage(channel="C1", text="hi")["ok"] is True


def test_wait_for_returns_calls_made_from_another_thread(slack: FakeSlack, client: WebClient) -> None:
    """wait_for blocks until a matching call arrives."""
    thread = threading.Timer(0.1, lambda: client.chat_postMessage(channel="C2", text="late"))
    thread.start()
    calls = slack.wait_for("chat.postMessage", where=lambda c: c.args["channel"] == "C2", timeout=5)
    thread.join()
    assert calls[0].args["text"] == "late"


def test_wait_for_times_out_with_assertion_error(slack: FakeSlack, client: WebClient) -> None:
    """wait_for raises AssertionError naming the methods seen so far."""
    client.auth_test()
    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"auth\.test"):
        slack.wait_for("chat.postMessage", timeout=0.2)
    assert time.monotonic() - started < 2


def test_reset_calls_forgets_calls_but_keeps_messages(slack: FakeSlack, client: WebClient) -> None:
    """reset_calls empties calls() and leaves stored messages alone."""
    client.chat_postMessage(channel="C1", text="hi")
    slack.reset_calls()
    assert slack.calls() == []
    assert len(slack.messages("C1")) == 1


def test_response_urls_are_recorded(slack: FakeSlack) -> None:
    """A JSON post to a response_url is recorded with its path and answered ok."""
    url = slack.response_url("cmd")
    status, body = post(
        url, json.dumps({"text": "done", "replace_original": True}).encode(), "application/json"
    )
    assert (status, body) == (200, b"ok")
    [call] = slack.calls("response_url")
    assert call.args == {"text": "done", "replace_original": True, "path": "/response/cmd"}


def test_sign_matches_slack_sdk_signature_verifier() -> None:
    """sign() produces headers that slack_sdk's SignatureVerifier accepts."""
    body = event_body({"type": "app_mention", "text": "hi"}, "Ev1")
    headers = sign(SECRET, body)
    verifier = SignatureVerifier(SECRET)
    assert verifier.is_valid(body, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"])
    assert not SignatureVerifier("other-secret").is_valid_request(body, headers)


def test_event_body_is_an_event_callback_envelope() -> None:
    """event_body wraps the event with the envelope fields Bolt reads."""
    envelope = json.loads(event_body({"type": "app_mention"}, "Ev2", event_time=123))
    assert envelope["type"] == "event_callback"
    assert (envelope["event_id"], envelope["event_time"], envelope["team_id"]) == ("Ev2", 123, "T0FAKE")
    assert envelope["authorizations"][0]["user_id"] == "UBOT"


def test_form_and_command_bodies_are_urlencoded() -> None:
    """form_body carries a JSON payload; command_body carries the slash-command fields."""
    payload = json.loads(urllib.parse.parse_qs(form_body({"type": "block_actions"}).decode())["payload"][0])
    assert payload == {"type": "block_actions"}
    fields = dict(urllib.parse.parse_qsl(command_body(text="rollback", user_id="UDANA").decode()))
    assert (fields["command"], fields["text"], fields["user_id"]) == ("/steward", "rollback", "UDANA")
    assert {"trigger_id", "response_url", "channel_id", "team_id", "api_app_id"} <= fields.keys()
