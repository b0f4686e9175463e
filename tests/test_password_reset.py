"""Forgot/reset password: a single-use link through Synapse's mailer to a real SMTP sink."""

from __future__ import annotations

import re
import time
from email.message import Message
from urllib.parse import parse_qs, urlparse

import pytest

from harness import PASSWORD, Api, expect_error
from mailsink import MailSink

NEW_PASSWORD = "a brand new passphrase"


def reset_params(message: Message) -> dict[str, str]:
    """sid, client_secret and token from the link in the mail's text part."""
    text = next(part for part in message.walk() if part.get_content_type() == "text/plain")
    payload = text.get_payload(decode=True)
    assert isinstance(payload, bytes)
    body = payload.decode()
    link = re.search(r"https?://\S+submit_token\?\S+", body)
    assert link, body
    query = parse_qs(urlparse(link.group(0)).query)
    return {key: query[key][0] for key in ("sid", "client_secret", "token")}


def login(api: Api, username: str, password: str) -> int:
    return api.call("POST", "/api/auth/login", json={"username": username, "password": password}).status_code


def test_reset_flow_changes_password_and_logs_everyone_out(api: Api, mail: MailSink) -> None:
    reg = api.register()
    response = api.call("POST", "/api/auth/forgot-password", json={"email": reg["email"]})
    assert response.status_code == 202
    params = reset_params(mail.wait_for(reg["email"]))

    reset = api.call("POST", "/api/auth/reset-password", json={**params, "new_password": NEW_PASSWORD})
    assert reset.status_code == 200, reset.text
    assert api.call("GET", "/_matrix/client/v3/account/whoami", token=reg["access_token"]).status_code == 401
    assert login(api, reg["username"], PASSWORD) == 403
    assert login(api, reg["username"], NEW_PASSWORD) == 200

    # The link is single-use.
    again = api.call("POST", "/api/auth/reset-password", json={**params, "new_password": "yet another passphrase"})
    expect_error(again, 400, "M_FORBIDDEN")
    assert login(api, reg["username"], NEW_PASSWORD) == 200


def test_forgot_password_answers_the_same_for_unknown_addresses(api: Api, mail: MailSink) -> None:
    reg = api.register()
    known = api.call("POST", "/api/auth/forgot-password", json={"email": reg["email"]})
    unknown = api.call("POST", "/api/auth/forgot-password", json={"email": "nobody-at-all@example.org"})
    assert (known.status_code, known.json()) == (unknown.status_code, unknown.json())
    mail.wait_for(reg["email"])
    time.sleep(1)
    assert mail.sent_to("nobody-at-all@example.org") == []


def test_wrong_token_or_secret_is_refused_and_keeps_the_link_usable(api: Api, mail: MailSink) -> None:
    reg = api.register()
    api.call("POST", "/api/auth/forgot-password", json={"email": reg["email"]})
    params = reset_params(mail.wait_for(reg["email"]))
    for bad in ({"token": "wrong"}, {"client_secret": "wrong"}, {"sid": "wrong"}):
        response = api.call("POST", "/api/auth/reset-password", json={**params, **bad, "new_password": NEW_PASSWORD})
        expect_error(response, 400, "M_FORBIDDEN")
    assert login(api, reg["username"], PASSWORD) == 200
    weak = api.call("POST", "/api/auth/reset-password", json={**params, "new_password": "short"})
    expect_error(weak, 400, "M_PASSWORD_TOO_SHORT")
    ok = api.call("POST", "/api/auth/reset-password", json={**params, "new_password": NEW_PASSWORD})
    assert ok.status_code == 200, ok.text


def test_reset_bad_input(api: Api) -> None:
    expect_error(api.call("POST", "/api/auth/forgot-password", json={}), 400, "M_MISSING_PARAM")
    expect_error(api.call("POST", "/api/auth/forgot-password", json={"email": "nope"}), 400, "M_INVALID_PARAM")
    expect_error(
        api.call("POST", "/api/auth/reset-password", json={"sid": "x", "client_secret": "y", "token": "z"}),
        400,
        "M_MISSING_PARAM",
    )


@pytest.mark.parametrize("field", ["sid", "client_secret", "token"])
def test_reset_parameters_are_at_most_255_characters(api: Api, field: str) -> None:
    """One definition of the reset body: the link's parameters are 1 to 255 characters (the
    spec's limit for `sid` and `client_secret`), refused before any look-up."""
    params = {"sid": "s", "client_secret": "c", "token": "t", "new_password": NEW_PASSWORD}
    at_limit = api.call("POST", "/api/auth/reset-password", json={**params, field: "x" * 255})
    expect_error(at_limit, 400, "M_FORBIDDEN")  # well-formed, only unknown
    over = api.call("POST", "/api/auth/reset-password", json={**params, field: "x" * 256})
    assert field in expect_error(over, 400, "M_INVALID_PARAM")["error"]
