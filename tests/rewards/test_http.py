"""HTTP front: token required beyond loopback, 401 without it, a batch of
1,000 mixed items answered. Binds 0.0.0.0 but only ever talks to 127.0.0.1."""
from __future__ import annotations

import socket
import threading
import time

import pytest

from rl.errors import UserError

TOKEN = "test-token-" + "x" * 16


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(hub):
    import uvicorn

    from rewards.http import make_app

    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(make_app(hub, TOKEN), host="0.0.0.0", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


def test_non_loopback_bind_needs_a_token(monkeypatch):
    from rewards.http import resolve_token

    monkeypatch.delenv("ASYMPTOTE_HUB_TOKEN", raising=False)
    with pytest.raises(UserError, match="needs --token"):
        resolve_token("0.0.0.0", None)
    assert resolve_token("127.0.0.1", None) is None
    assert resolve_token("::1", None) is None
    monkeypatch.setenv("ASYMPTOTE_HUB_TOKEN", "from-env")
    assert resolve_token("0.0.0.0", None) == "from-env"


def test_requests_without_the_token_get_401(server):
    import httpx

    one = {"kind": "math", "response": r"\boxed{3}", "answer": "3"}
    assert httpx.get(server + "/healthz").status_code == 401
    assert httpx.post(server + "/v1/score", json=one).status_code == 401
    assert httpx.post(server + "/v1/score", json=one, headers={"Authorization": "Bearer wrong"}).status_code == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(server + "/healthz", headers=auth).json() == {"ok": True, "replicas": 2}
    r = httpx.post(server + "/v1/score", json=one, headers=auth)
    assert r.status_code == 200 and r.json()["reward"] == 1.0 and r.json()["details"]["correct"] is True
    assert httpx.post(server + "/v1/score", content=b"{nope", headers=auth).status_code == 400


def test_batch_of_1000_mixed_items(server):
    import httpx

    items, want = [], []
    for k in range(1000):
        if k % 100 == 7:
            prog = "```python\nprint(int(input()) + 1)\n```"
            items.append({"kind": "code", "response": prog, "tests": [{"input": str(k), "output": str(k + 1)}]})
            want.append(1.0)
        elif k % 10 == 3:
            items.append({"kind": "format", "response": f"<think>{k}</think> \\boxed{{{k}}}"})
            want.append(1.0)
        elif k % 10 == 5:
            items.append({"kind": "math", "response": f"\\boxed{{\\frac{{{k}}}{{2}}}}", "answer": str(k / 2)})
            want.append(1.0)
        elif k % 2 == 0:
            items.append({"kind": "math", "response": f"<think>...</think>\\boxed{{{k}}}", "answer": str(k)})
            want.append(1.0)
        else:
            items.append({"kind": "math", "response": f"\\boxed{{{k + 1}}}", "answer": str(k)})
            want.append(0.0)
    r = httpx.post(server + "/v1/score", json={"samples": items},
                   headers={"Authorization": f"Bearer {TOKEN}"}, timeout=300)
    assert r.status_code == 200
    results = r.json()["results"]
    assert len(results) == 1000
    assert [x["reward"] for x in results] == want
    groups = httpx.post(server + "/v1/score", json={"groups": [items[:4], items[4:6]]},
                        headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60).json()["results"]
    assert [len(g) for g in groups] == [4, 2]
