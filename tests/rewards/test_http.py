"""HTTP front: token required beyond loopback (decided by resolving the
name), 401 without it, bodies over the limit refused before they are read
whole (declared or chunked), a batch of 1,000 mixed items answered. Binds
0.0.0.0 but only ever talks to 127.0.0.1."""
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


def _serve(app, host: str):
    import uvicorn

    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    return srv, thread, port


@pytest.fixture(scope="module")
def server(hub):
    from rewards.http import make_app

    srv, thread, port = _serve(make_app(hub, TOKEN), "0.0.0.0")
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


SMALL = 1024  # body limit of the `small` server


@pytest.fixture(scope="module")
def small(hub):
    """A loopback server without a token whose body limit is SMALL bytes."""
    from rewards.http import make_app

    srv, thread, port = _serve(make_app(hub, None, max_body=SMALL), "127.0.0.1")
    yield port
    srv.should_exit = True
    thread.join(timeout=10)


def _raw_post(port: int, headers: str, parts=(), finish: bytes = b"") -> tuple[int, int]:
    """POST /v1/score over a raw socket: send `headers`, then each of `parts`
    while the server has not answered, then `finish`. Returns the status and
    how many of `parts` were sent before the answer came."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"POST /v1/score HTTP/1.1\r\nHost: t\r\n{headers}\r\n".encode())
        sent = 0
        sock.setblocking(False)
        answer = b""
        for part in parts:
            try:
                answer += sock.recv(65536)
            except BlockingIOError:
                pass
            if answer:
                break
            time.sleep(0.02)  # let the server read what was sent so far
            try:
                sock.sendall(part)
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                break
            sent += 1
        sock.setblocking(True)
        if not answer:
            if finish:
                sock.sendall(finish)
            answer = sock.recv(65536)
        return int(answer.split(b" ", 2)[1]), sent


def test_non_loopback_bind_needs_a_token(monkeypatch):
    from rewards.http import resolve_token

    monkeypatch.delenv("ASYMPTOTE_HUB_TOKEN", raising=False)
    with pytest.raises(UserError, match="needs --token"):
        resolve_token("0.0.0.0", None)
    assert resolve_token("127.0.0.1", None) is None
    assert resolve_token("::1", None) is None
    monkeypatch.setenv("ASYMPTOTE_HUB_TOKEN", "from-env")
    assert resolve_token("0.0.0.0", None) == "from-env"


def test_loopback_is_decided_by_resolving_the_name(monkeypatch):
    from rewards.http import bind_address, is_loopback, resolve_token

    monkeypatch.delenv("ASYMPTOTE_HUB_TOKEN", raising=False)
    # real resolver answers: names and short forms that resolve to loopback ...
    local = {info[4][0] for info in socket.getaddrinfo("localhost", None, type=socket.SOCK_STREAM)}
    assert local <= {"127.0.0.1", "::1"} and is_loopback("localhost")
    assert is_loopback("127.1") and bind_address("127.1") == "127.0.0.1"
    # ... and ones that do not (all interfaces, unresolvable, empty)
    for host in ("0.0.0.0", "0", "::", "", "no-such-host.invalid"):
        assert not is_loopback(host), host
        with pytest.raises(UserError):
            resolve_token(host, None)
    # a resolver that maps "localhost" beyond loopback (an /etc/hosts we must
    # not edit here): the name is no longer trusted, and the bind follows it
    real = socket.getaddrinfo

    def remapped(host, *args, **kwargs):
        if host == "localhost":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.7", 0)),
                    (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", 0, 0, 0))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", remapped)
    assert not is_loopback("localhost") and bind_address("localhost") == "192.0.2.7"
    with pytest.raises(UserError, match="needs --token"):
        resolve_token("localhost", None)
    # an answer that changed after the token check is caught again at the bind
    from rewards.http import serve

    with pytest.raises(UserError, match="192.0.2.7, beyond loopback"):
        serve(None, "localhost", 0, None)


def test_declared_oversized_body_is_refused_unread(small, server):
    ok = b'{"kind": "math", "response": "\\\\boxed{3}", "answer": "3"}'
    assert _raw_post(small, f"Content-Length: {len(ok)}\r\n", finish=ok)[0] == 200
    # Content-Length over the limit: 413 although not one byte of body was sent
    assert _raw_post(small, f"Content-Length: {SMALL + 1}\r\n") == (413, 0)
    assert _raw_post(small, "Content-Length: 1e9\r\n")[0] in (400, 413)
    # the real 64 MiB limit on the token-protected server, again with no body sent
    from rewards.http import MAX_BODY

    auth = f"Authorization: Bearer {TOKEN}\r\n"
    assert _raw_post(int(server.rsplit(":", 1)[1]), f"{auth}Content-Length: {MAX_BODY + 1}\r\n") == (413, 0)


def test_chunked_body_is_cut_at_the_limit(small):
    chunk = b"200\r\n" + b" " * 512 + b"\r\n"  # 512 bytes of JSON whitespace per chunk
    body = b'{"kind": "math", "response": "\\\\boxed{3}", "answer": "3"}'
    done = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    # under the limit (one chunk + the sample): scored
    assert _raw_post(small, "Transfer-Encoding: chunked\r\n", [chunk], finish=done)[0] == 200
    # 40 chunks offered (20 KiB) and the body never ended: the answer is 413
    # anyway, and not before the third chunk (3 x 512 > 1024 bytes)
    status, sent = _raw_post(small, "Transfer-Encoding: chunked\r\n", [chunk] * 40)
    assert status == 413 and sent >= 3


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
