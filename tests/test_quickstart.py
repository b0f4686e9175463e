"""docs/quickstart.md runs: every Python block of it, in order, against the suite's server, so the
app developers' first page cannot rot. Its errcode table is checked against errors.py, and its
`call()` helper against a real 429."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from harness import Api, SynapseServer
from medchat import errors

QUICKSTART = Path(__file__).resolve().parents[1] / "docs" / "quickstart.md"
_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)


def _blocks() -> list[tuple[int, str]]:
    """The Python blocks of the page with the line each starts on."""
    text = QUICKSTART.read_text()
    return [(text[: m.start(1)].count("\n") + 1, m.group(1)) for m in _BLOCK.finditer(text)]


def _run(server: SynapseServer, user: dict[str, Any], colleague: dict[str, Any], blocks: int = 0) -> dict[str, Any]:
    """Executes the page (its first `blocks` blocks, if given) in one namespace, as a reader pasting
    it into one script would; a failure's traceback names the page's own line."""
    env = {
        "MEDCHAT_URL": server.base_url,
        "MEDCHAT_USERNAME": user["username"],
        "MEDCHAT_PASSWORD": user["password"],
        "MEDCHAT_COLLEAGUE": colleague["user_id"],
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    namespace: dict[str, Any] = {"__name__": "quickstart"}
    try:
        for line, source in _blocks()[: blocks or None]:
            exec(compile("\n" * (line - 1) + source, str(QUICKSTART), "exec"), namespace)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return namespace


def test_every_snippet_runs_against_the_server(
    api: Api, server: SynapseServer, capsys: pytest.CaptureFixture[str]
) -> None:
    user, colleague = api.register(), api.register()
    assert len(_blocks()) >= 8
    namespace = _run(server, user, colleague)
    out = capsys.readouterr().out
    assert f"logged in as {user['user']['user']['full_name']} {user['user_id']}" in out, out
    assert "a refresh token works once: M_FORBIDDEN" in out, out
    assert "direct " in out and "unread: 0" in out, out  # the DM made in section 3 was listed
    assert "resumed with: Sent while you were offline" in out, out
    assert "sent handover.txt 38 bytes" in out, out
    assert "400 M_" in out, out  # the refused empty message
    # The page's last step logged out: the session's token is gone on the Matrix API as well.
    whoami = api.call("GET", "/_matrix/client/v3/account/whoami", token=namespace["session"].access_token)
    assert whoami.status_code == 401, whoami.text
    # Its room is an ordinary Matrix DM: the colleague joins it and reads what the page sent.
    dm = quote(namespace["dm"]["id"])
    token = colleague["access_token"]
    assert api.call("POST", f"/_matrix/client/v3/join/{dm}", token=token, json={}).status_code == 200
    history = api.call("GET", f"/_matrix/client/v3/rooms/{dm}/messages?dir=b&limit=20", token=token).json()
    bodies = [e["content"].get("body") for e in history["chunk"] if e["type"] == "m.room.message"]
    assert bodies[:3] == ["handover.txt", "Sent while you were offline", "Hello! Ward round at 9?"], bodies


def test_call_waits_out_a_429(api: Api, server: SynapseServer, capsys: pytest.CaptureFixture[str]) -> None:
    """Wrong passwords hit Synapse's failed-login limiter (synapse.yaml's rc_login.failed_attempts):
    `call` waits as long as the 429 says and then gets the real answer, a 403, every time."""
    user, colleague = api.register(), api.register()
    namespace = _run(server, user, colleague, blocks=2)  # the settings and call()
    api_error = namespace["ApiError"]
    for _ in range(5):
        with pytest.raises(api_error) as refused:
            namespace["call"]("POST", "/api/auth/login", json={"username": user["username"], "password": "wrong"})
        assert refused.value.status == 403 and refused.value.errcode == "M_FORBIDDEN"
    assert "rate limited, retrying in" in capsys.readouterr().out


def test_the_errcode_table_names_every_module_errcode() -> None:
    text = QUICKSTART.read_text()
    own = {value for name, value in vars(errors).items() if name.isupper() and str(value).startswith("ORG_MEDCHAT_")}
    assert own, "errors.py defines the module's errcodes"
    missing = sorted(code for code in own if f"`{code}`" not in text)
    assert not missing, f"docs/quickstart.md's errcode table lacks {missing}"
