"""HTTP front: token required beyond loopback (decided by resolving the
name), 401 without it, bodies over the limit refused before they are read
whole (declared or chunked), a batch of 1,000 mixed items answered. Binds
0.0.0.0 but only ever talks to 127.0.0.1.

Hardening, probed over real sockets against uvicorn run with the options
`serve` uses: slow-loris connections closed at the header deadline while
the server keeps answering, a stalled or trickled body answered 408, a
refusal sent before the body ended closes the connection, every body that
does not parse gets 400 (100k-deep JSON included), the browser guards on
loopback (Host 421, Origin 403, Content-Type 415), and 503 past the
connection cap. Deadlines are 1 s here; the waits below are bounds against a
hang (deadline + MARGIN_S), never timings."""
from __future__ import annotations

import json
import re
import select
import socket
import threading
import time

import pytest

from core.errors import UserError

TOKEN = "test-token-" + "x" * 16
MARGIN_S = 10.0  # slack on every deadline for a loaded 2-core CI box
ONE = b'{"kind": "math", "response": "\\\\boxed{3}", "answer": "3"}'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(app, host: str, limits=None):
    import uvicorn

    from rewards.http import HttpLimits, uvicorn_options

    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host=host, port=port, **uvicorn_options(limits or HttpLimits())))
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
    from rewards.http import HttpLimits, make_app

    srv, thread, port = _serve(make_app(hub, None, HttpLimits(max_body=SMALL)), "127.0.0.1")
    yield port
    srv.should_exit = True
    thread.join(timeout=10)


def _raw_post(port: int, headers: str, parts=(), finish: bytes = b"") -> tuple[int, int]:
    """POST /v1/score over a raw socket: send `headers`, then each of `parts`
    while the server has not answered, then `finish`. Returns the status and
    how many of `parts` were sent before the answer came."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     f"{headers}\r\n".encode())
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
    json_type = {**auth, "Content-Type": "application/json"}
    assert httpx.post(server + "/v1/score", content=b"{nope", headers=json_type).status_code == 400


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


# -- hardening ----------------------------------------------------------------
@pytest.fixture(scope="module")
def guarded(hub):
    """A loopback server without a token, with 1 s header and body deadlines."""
    from rewards.http import HttpLimits, make_app

    limits = HttpLimits(header_timeout_s=1.0, body_timeout_s=1.0)
    srv, thread, port = _serve(make_app(hub, None, limits), "127.0.0.1", limits)
    yield port
    srv.should_exit = True
    thread.join(timeout=10)


CAP = 4  # open connections the `capped` server serves at once


@pytest.fixture(scope="module")
def capped(hub):
    """A loopback server serving CAP connections at once, keeping idle ones 30 s."""
    from rewards.http import HttpLimits, make_app

    limits = HttpLimits(max_connections=CAP, keep_alive_s=30.0)
    srv, thread, port = _serve(make_app(hub, None, limits), "127.0.0.1", limits)
    yield port
    srv.should_exit = True
    thread.join(timeout=10)


def _exchange(sock: socket.socket, request: bytes) -> tuple[int, bytes]:
    """Send one request on an open connection and read one whole response
    (status line, headers, Content-Length bytes of body), leaving it open."""
    sock.sendall(request)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {buf!r}")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?im)^content-length: *(\d+)", head).group(1))
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split(b" ", 2)[1]), body


def _until_closed(socks: list[socket.socket], limit_s: float, trickle=(), every_s: float = 0.2) -> list:
    """Read every socket until the server closes it, sending one more header
    line on each of `trickle` every `every_s`. Returns, per socket, the bytes
    it got before the close, or None if it was still open after `limit_s`
    (a bound against a hang, not a timing)."""
    got = {s: b"" for s in socks}
    still_open = set(socks)
    end = time.monotonic() + limit_s
    while still_open and time.monotonic() < end:
        for s in trickle:
            if s in still_open:
                try:
                    s.sendall(b"X-Slow: 1\r\n")
                except OSError:  # closed under us: the read below sees it
                    pass
        readable, _, _ = select.select(list(still_open), [], [], every_s)
        for s in readable:
            try:
                data = s.recv(65536)
            except ConnectionResetError:
                data = b""
            if data:
                got[s] += data
            else:
                still_open.discard(s)
    return [None if s in still_open else got[s] for s in socks]


def _status_and_error(answer: bytes) -> tuple[int, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)["error"]


def test_slow_loris_connections_are_closed_at_the_header_deadline(guarded):
    import httpx

    url = f"http://127.0.0.1:{guarded}"
    silent = [socket.create_connection(("127.0.0.1", guarded)) for _ in range(10)]
    partial = [socket.create_connection(("127.0.0.1", guarded)) for _ in range(10)]
    trickling = [socket.create_connection(("127.0.0.1", guarded)) for _ in range(10)]
    for s in partial:
        s.sendall(b"POST /v1/sco")
    for s in trickling:  # a complete request line, then one header line per 0.2 s, never the blank line
        s.sendall(b"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    # a kept-alive connection: one answered request, then half of the next one
    kept = socket.create_connection(("127.0.0.1", guarded))
    assert _exchange(kept, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")[0] == 200
    kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0")
    stalled = silent + partial + trickling + [kept]
    try:
        # meanwhile, fresh connections are served
        assert httpx.get(url + "/healthz").json() == {"ok": True, "replicas": 2}
        r = httpx.post(url + "/v1/score", content=ONE, headers={"Content-Type": "application/json"})
        assert r.status_code == 200 and r.json()["reward"] == 1.0
        got = _until_closed(stalled, 1.0 + MARGIN_S, trickle=trickling)
        # all 31 closed by the server, none answered (trickling did not extend the deadline)
        assert got == [b""] * len(stalled)
    finally:
        for s in stalled:
            s.close()
    assert httpx.get(url + "/healthz").status_code == 200


def test_stalled_or_trickled_body_gets_408(guarded):
    head = (b"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(ONE))
    stalled = socket.create_connection(("127.0.0.1", guarded))
    stalled.sendall(head + ONE[: len(ONE) // 2])
    trickled = socket.create_connection(("127.0.0.1", guarded))
    trickled.sendall(head)
    try:
        # one body byte per 0.2 s would take ~12 s in all: the 1 s deadline covers the whole body
        end, sent = time.monotonic() + 1.0 + MARGIN_S, 0
        while time.monotonic() < end and not select.select([trickled], [], [], 0.2)[0]:
            trickled.sendall(ONE[sent:sent + 1])
            sent += 1
        got = _until_closed([stalled, trickled], 1.0 + MARGIN_S)
    finally:
        stalled.close()
        trickled.close()
    # each answered 408 with a one-line reason, then closed by the server
    for answer in got:
        assert answer is not None
        assert _status_and_error(answer) == (408, "body not received whole within 1 s")
    assert sent < len(ONE)


def test_refusal_before_the_body_ended_closes_the_connection(server):
    port = int(server.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        # no token: 401 at once, while 990 bytes of the declared body are still to come
        sock.sendall(b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n" + b" " * 10)
        # the client keeps trickling the unwanted body; the server hangs up anyway
        [answer] = _until_closed([sock], MARGIN_S, trickle=[sock])
    assert answer is not None and _status_and_error(answer) == (401, "missing or wrong token")


def _nested(depth: int) -> bytes:
    """A sample whose 'extra' field makes the whole body `depth` levels deep."""
    inner = "[" * (depth - 2) + "]" * (depth - 2)  # the body object and the sample add 2
    return b'{"sample": {"kind": "math", "response": "\\\\boxed{3}", "answer": "3", "extra": %s}}' % inner.encode()


def test_every_body_that_does_not_parse_gets_400(guarded):
    import httpx

    url = f"http://127.0.0.1:{guarded}/v1/score"
    cases = {
        b"[" * 100_000 + b"]" * 100_000: "body nests deeper than 64 levels",  # RecursionError in the parser
        _nested(65): "body nests deeper than 64 levels",  # parses, but one level past the limit
        b'{"sample": {"kind": "math", "response": "\xff"}}': "body is not UTF-8 (byte 41)",
        b'{"sample": NaN}': "body is not JSON: NaN is not JSON",
        b'{"sample": {"answer": 1e400}}': "body is not JSON: number 1e400 overflows a double",
        b"\xef\xbb\xbf{}": "body is not JSON: Unexpected UTF-8 BOM (decode using utf-8-sig): line 1 column 1 (char 0)",
        b"{nope": "body is not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        b"": "body is not JSON: Expecting value: line 1 column 1 (char 0)",
        b"7": "body must be a JSON object or list",
        b"{}": "body needs 'sample', 'samples' or 'groups'",
        b'{"samples": {"kind": "math"}}': "'samples' must be a list",
        b'{"groups": [[], 5]}': "'groups' must be a list of lists of samples",
    }
    for body, error in cases.items():
        r = httpx.post(url, content=body, headers={"Content-Type": "application/json"})
        assert (r.status_code, r.json()) == (400, {"error": error}), body[:40]
    # 64 levels is within the limit: scored, and the server is none the worse
    r = httpx.post(url, content=_nested(64), headers={"Content-Type": "application/json"})
    assert r.status_code == 200 and r.json()["reward"] == 1.0


def test_browser_guards_on_loopback(guarded, server):
    import httpx

    port, base = guarded, f"http://127.0.0.1:{guarded}"
    client = httpx.Client()

    def post(headers, body=ONE, url=base):
        return client.post(url + "/v1/score", content=body, headers={"Content-Type": "application/json", **headers})

    # Host: loopback names with any port (a tunnel) pass; any other name is 421 (DNS rebinding)
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "LOCALHOST", "[::1]", "localhost:9000"):
        assert post({"Host": host}).status_code == 200, host
    for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1.nip.io:{port}", f"localhost.:{port}",
                 f"127.0.0.2:{port}", "localhost:http"):
        r = post({"Host": host})
        assert r.status_code == 421 and r.json()["error"].startswith(f"Host {host!r} is not this server"), host
    with socket.create_connection(("127.0.0.1", port)) as sock:  # HTTP/1.0 may omit Host: refused too
        assert _exchange(sock, b"GET /healthz HTTP/1.0\r\n\r\n")[0] == 421
    # Origin: only the server's own loopback origins
    for origin in (f"http://127.0.0.1:{port}", f"http://localhost:{port}", f"http://[::1]:{port}"):
        assert post({"Origin": origin}).status_code == 200, origin
    for origin in ("http://evil.example", "null", "http://localhost:3000", f"https://127.0.0.1:{port}",
                   f"http://127.0.0.1:{port}.evil.example"):
        r = post({"Origin": origin})
        assert (r.status_code, r.json()) == (403, {"error": f"Origin {origin!r} is not this server"}), origin
    assert client.get(base + "/healthz", headers={"Origin": "http://evil.example"}).status_code == 403
    # Content-Type: what a page may send cross-origin without a preflight is 415
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""):
        r = post({"Content-Type": ctype})
        assert (r.status_code, r.json()) == (415, {"error": f"Content-Type must be application/json, not {ctype!r}"})
    assert post({"Content-Type": "Application/JSON; charset=utf-8"}).status_code == 200
    # with a token the token is the guard: any Host and Origin, but still JSON only
    auth = {"Authorization": f"Bearer {TOKEN}", "Host": "hub.example", "Origin": "http://evil.example"}
    assert post(auth, url=server).status_code == 200
    assert post({**auth, "Content-Type": "text/plain"}, url=server).status_code == 415
    client.close()


def test_connection_cap_answers_503_past_it(capped):
    healthz = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    kept = [socket.create_connection(("127.0.0.1", capped)) for _ in range(CAP)]
    try:
        # CAP connections, each answered and kept alive: all served
        assert [_exchange(s, healthz)[0] for s in kept] == [200] * CAP
        # one more while those are open: 503, and the server hangs up on it
        with socket.create_connection(("127.0.0.1", capped)) as extra:
            assert _exchange(extra, healthz) == (503, b"Service Unavailable")
            assert _until_closed([extra], MARGIN_S) == [b""]
        # the cap counts connections, not requests: the kept ones still get answers
        assert _exchange(kept[0], healthz)[0] == 200
        one = (b"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n%s" % (len(ONE), ONE))
        status, body = _exchange(kept[1], one)
        assert status == 200 and json.loads(body)["reward"] == 1.0
    finally:
        for s in kept:
            s.close()
