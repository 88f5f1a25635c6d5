"""HTTP front of the reward hub: `POST /v1/score` and `GET /healthz`.

Binds to 127.0.0.1 by default. Any other bind address needs a token
(`--token` or $ASYMPTOTE_HUB_TOKEN); when a token is set every request must
carry `Authorization: Bearer <token>` or gets 401 (compared in constant time).
A host name counts as loopback only when every address it resolves to is a
loopback address ("localhost" is resolved like any other name, since
/etc/hosts may map it elsewhere), and the server binds a literal address,
checked again at the bind, not the name.

Without a token the server is on loopback, where the danger is a web page in
the user's own browser, so it answers only what a browser page cannot send:
- a `Host` other than 127.0.0.1, localhost or [::1] (any port) gets 421: a
  page on a name the attacker rebound to 127.0.0.1 (DNS rebinding) sends its
  own name. Any port is accepted so that a tunnel (`ssh -L 9000:...:8711`)
  still works; the name alone is what rebinding cannot forge.
- an `Origin` other than the server's own (`http://127.0.0.1:<port>`,
  `http://localhost:<port>`, `http://[::1]:<port>`) gets 403: a page on
  another loopback port, or any site, that posts here.
With or without a token, a POST whose Content-Type is not application/json
gets 415: text/plain and form types are what a page may send cross-origin
without a preflight, and no preflight is ever answered here.

Slow or idle clients cannot hold the server (uvicorn has no header timeout
of its own, see `header_deadline_protocol`): a connection that has not sent
a request's complete line and headers within `header_timeout_s` of
connecting (on a kept-alive connection: of the next request's first byte)
is closed; a body not received whole within `body_timeout_s` of
the app starting to read it gets 408 and the connection is closed; a
response sent before its request's body ended (a refusal) closes the
connection; an idle keep-alive connection is closed after `keep_alive_s`; a
request arriving while more than `max_connections` connections are open gets
503.

Request bodies are limited to `max_body` bytes (64 MiB) while they are read:
a Content-Length over the limit is answered 413 before any of the body is
read, and a body without one (chunked) is counted as it arrives and answered
413 as soon as the count passes the limit (uvicorn stops reading the socket
while the app does not consume it, so the rest is never buffered). A body
that is not UTF-8 JSON (RFC 8259: no NaN/Infinity, no number overflowing to
infinity) nested at most `MAX_DEPTH` levels, or not one of the shapes below,
gets 400 with a one-line error.

`POST /v1/score` body, one of:
  {"sample": {...}}            -> {"reward": r, "details": {...}}
  {"samples": [{...}, ...]}    -> {"results": [{"reward", "details"}, ...]}
  {"groups": [[{...}, ...]]}   -> {"results": [[...], ...]} (group terms apply)
A bare sample object or a bare list is read as "sample" / "samples". A
sample that is not an object is scored as an error in its own details, so
one bad item does not sink a batch.
"""
# No `from __future__ import annotations`: FastAPI must see the real Request
# class in the endpoint signatures, which are defined inside make_app.
import asyncio
import hmac
import ipaddress
import json
import math
import os
import re
import socket
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field

from core.errors import UserError

TOKEN_ENV = "ASYMPTOTE_HUB_TOKEN"
MAX_BODY = 64 << 20
MAX_DEPTH = 64  # a request is at most ~6 deep ({"groups": [[{"tests": [{...}]}]]})
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
_HOST = re.compile(r"(\[[^\]]*\]|[^:\[\]]*)(?::\d*)?\Z")


class HttpLimits(BaseModel):
    """What one client may cost the HTTP front (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    header_timeout_s: float = Field(
        10.0, gt=0, allow_inf_nan=False,
        description="Seconds a connection gets to send a request's line and headers, counted from its "
        "connecting (or from the first byte of a later request on a kept-alive connection); then it is closed.")
    body_timeout_s: float = Field(
        30.0, gt=0, allow_inf_nan=False,
        description="Seconds a request body gets to arrive whole once the app starts reading it; "
        "then 408 and the connection is closed.")
    max_connections: int = Field(
        64, ge=1, description="Open connections served at once; a request arriving while more are open gets 503.")
    keep_alive_s: float = Field(
        5.0, gt=0, allow_inf_nan=False, description="Seconds an idle kept-alive connection stays open.")
    max_body: int = Field(MAX_BODY, ge=1, description="Largest request body in bytes; larger gets 413.")


def _addresses(host: str) -> list[str]:
    """Every address `host` resolves to, in resolver order ([] if it does not)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError):
        return []
    return [info[4][0] for info in infos]


def is_loopback(host: str) -> bool:
    """True when `host` resolves, and every address it resolves to is loopback."""
    addresses = _addresses(host) if host else []
    return bool(addresses) and all(ipaddress.ip_address(a.split("%", 1)[0]).is_loopback for a in addresses)


def bind_address(host: str) -> str:
    """The address the server binds: the first that `host` resolves to. The
    server binds this literal address, and `serve` checks it again without a
    token, so a resolver whose answer changed since `resolve_token` cannot
    widen the bind."""
    addresses = _addresses(host) if host else []
    if not addresses:
        raise UserError(f"--host {host!r}: does not resolve to an address")
    return addresses[0]


def resolve_token(host: str, token: Optional[str]) -> Optional[str]:
    token = token or os.environ.get(TOKEN_ENV) or None
    if token is None and not is_loopback(host):
        raise UserError(f"--host {host}: binding beyond loopback needs --token or ${TOKEN_ENV}")
    return token


def header_deadline_protocol(header_timeout_s: float):
    """uvicorn's h11 protocol class with a deadline on request headers.

    uvicorn closes a connection only when it idles between requests
    (`timeout_keep_alive`); a connection that sends part of a request line or
    header and stalls, or trickles one header byte at a time, is held for
    ever (slow-loris). This subclass arms a timer when the connection is made,
    and again at the first byte of each later request on a kept-alive
    connection, and cancels it once h11 has the request's headers complete
    (its peer state leaves IDLE); when it fires the connection is closed. The
    deadline counts from the first byte, not the last, so trickling does not
    extend it.

    It also closes a connection whose response was sent before the request
    body ended (a 401/403/415 or 413 sent unread): uvicorn would otherwise
    keep it alive, and every byte of the unwanted body the client trickles
    afterwards cancels its keep-alive timer again.
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderDeadlineH11Protocol(H11Protocol):
        _header_timer: Optional[asyncio.TimerHandle] = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._header_timer = self.loop.call_later(header_timeout_s, self._headers_timed_out)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:  # headers complete (or the connection failed)
                self._cancel_header_timer()
            elif self._header_timer is None:  # the first byte of a request on a kept-alive connection
                self._header_timer = self.loop.call_later(header_timeout_s, self._headers_timed_out)

        def connection_lost(self, exc: Optional[Exception]) -> None:
            self._cancel_header_timer()
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            if self.conn.their_state is h11.SEND_BODY and not self.transport.is_closing():
                self.transport.close()
            super().on_response_complete()

        def _cancel_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_timed_out(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.close()

    return HeaderDeadlineH11Protocol


def uvicorn_options(limits: HttpLimits) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.run` / `uvicorn.Config` that apply `limits`.
    uvicorn answers 503 once the open connections reach `limit_concurrency`,
    this one included, hence the + 1. `ws="none"`: an Upgrade to a WebSocket
    would leave this protocol and its deadlines, and no route needs one."""
    return dict(http=header_deadline_protocol(limits.header_timeout_s), ws="none",
                limit_concurrency=limits.max_connections + 1, timeout_keep_alive=limits.keep_alive_s,
                log_level="warning")


def _not_json_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} overflows a double")
    return value


def _depth(value: Any) -> int:
    """How deep lists and objects nest in a parsed JSON value, counted without
    recursion; stops counting once past MAX_DEPTH."""
    deepest, stack = 0, [(value, 1)]
    while stack and deepest <= MAX_DEPTH:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is not None:
            deepest = max(deepest, depth)
            stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return deepest


def parse_body(raw: bytes) -> Any:
    """The request body as JSON, or ValueError with a one-line reason."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"body is not UTF-8 (byte {err.start})") from None
    try:
        value = json.loads(text, parse_constant=_not_json_constant, parse_float=_finite_float)
    except RecursionError:  # the C scanner recurses per level: 100k '[' end here
        raise ValueError(f"body nests deeper than {MAX_DEPTH} levels") from None
    except ValueError as err:  # JSONDecodeError, a hook's error, an over-long integer
        raise ValueError(f"body is not JSON: {err}") from None
    if _depth(value) > MAX_DEPTH:  # parsed, but deep enough to break a replica's json/pickle
        raise ValueError(f"body nests deeper than {MAX_DEPTH} levels")
    return value


def _groups_of(body: Any) -> tuple[str, list[list[Any]]]:
    if isinstance(body, list):
        return "samples", [[s] for s in body]
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object or list")
    if "groups" in body:
        groups = body["groups"]
        if not isinstance(groups, list) or not all(isinstance(g, list) for g in groups):
            raise ValueError("'groups' must be a list of lists of samples")
        return "groups", groups
    if "samples" in body:
        if not isinstance(body["samples"], list):
            raise ValueError("'samples' must be a list")
        return "samples", [[s] for s in body["samples"]]
    if "sample" in body:
        return "sample", [[body["sample"]]]
    if "kind" in body:
        return "sample", [[body]]
    raise ValueError("body needs 'sample', 'samples' or 'groups'")


class Refused(Exception):
    """A request answered with `status` and a one-line `message`."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


async def read_limited(request, limit: int, timeout_s: float) -> bytes:
    """The request body, or Refused: 413 as soon as it is known to exceed
    `limit` bytes (from Content-Length before reading, else by counting), 408
    when it has not arrived whole `timeout_s` after this call. The deadline
    covers the whole body, so trickling a byte at a time does not extend it."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.strip().isdigit() or int(declared) > limit):
        raise Refused(413, f"body over {limit} bytes")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    body = bytearray()
    while True:
        try:
            message = await asyncio.wait_for(request.receive(), max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:
            raise Refused(408, f"body not received whole within {timeout_s:g} s") from None
        if message["type"] == "http.disconnect":  # nobody to answer; ends the request quietly
            raise Refused(400, "client disconnected")
        body += message.get("body", b"")
        if len(body) > limit:
            raise Refused(413, f"body over {limit} bytes")
        if not message.get("more_body", False):
            return bytes(body)


def _own_origins(scope) -> set[str]:
    port = (scope.get("server") or (None, None))[1]
    if port is None:
        return set()
    origins = {f"http://{name}:{port}" for name in LOOPBACK_NAMES}
    return origins | ({f"http://{name}" for name in LOOPBACK_NAMES} if port == 80 else set())


def _refusal(scope, expected_token: Optional[bytes]) -> Optional[Refused]:
    """Why a request is refused before it reaches a route, or None."""
    headers: dict[bytes, list[bytes]] = {}
    for name, value in scope["headers"]:
        headers.setdefault(name, []).append(value)
    if expected_token is not None:
        if not hmac.compare_digest(b"".join(headers.get(b"authorization", [])), expected_token):
            return Refused(401, "missing or wrong token")
    else:
        host = b"".join(headers.get(b"host", [])).decode("latin-1")
        name = _HOST.match(host)
        if name is None or name.group(1).lower() not in LOOPBACK_NAMES:
            return Refused(421, f"Host {host[:100]!r} is not this server (loopback: {', '.join(LOOPBACK_NAMES)})")
        own = _own_origins(scope)
        for origin in headers.get(b"origin", []):
            if origin.decode("latin-1").lower() not in own:
                return Refused(403, f"Origin {origin.decode('latin-1')[:100]!r} is not this server")
    if scope["method"] == "POST":
        ctype = b"".join(headers.get(b"content-type", [])).decode("latin-1")
        if ctype.split(";", 1)[0].strip().lower() != "application/json":
            return Refused(415, f"Content-Type must be application/json, not {ctype[:100]!r}")
    return None


def make_app(hub, token: Optional[str], limits: Optional[HttpLimits] = None):
    """The ASGI app: the checks of the module docstring in front of FastAPI's
    routes. Header timeouts and the connection cap belong to the server
    (`uvicorn_options`); the body limits and deadline are kept here."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    limits = limits or HttpLimits()
    routes = FastAPI(title="asymptote reward hub", docs_url=None, redoc_url=None, openapi_url=None)
    expected = f"Bearer {token}".encode() if token else None

    async def app(scope, receive, send):
        if scope["type"] == "http":
            refused = _refusal(scope, expected)
            if refused is not None:
                # sent before the body is read, and the connection then closed (on_response_complete):
                # said in the response, so that a client does not send its next request on it (a reset)
                response = JSONResponse({"error": str(refused)}, status_code=refused.status,
                                        headers={"Connection": "close"})
                return await response(scope, receive, send)
        return await routes(scope, receive, send)

    @routes.get("/healthz")
    async def healthz():
        return {"ok": True, "replicas": len(hub.replicas)}

    @routes.post("/v1/score")
    async def score(request: Request):
        try:
            raw = await read_limited(request, limits.max_body, limits.body_timeout_s)
        except Refused as refused:  # the body may still be arriving: do not keep the connection
            return JSONResponse({"error": str(refused)}, status_code=refused.status, headers={"Connection": "close"})
        try:
            shape, groups = _groups_of(parse_body(raw))
        except ValueError as err:
            return JSONResponse({"error": str(err)}, status_code=400)
        results = await hub.score_groups_async(groups) if groups else []
        if shape == "sample":
            return results[0][0].to_json()
        if shape == "samples":
            return {"results": [g[0].to_json() for g in results]}
        return {"results": [[r.to_json() for r in g] for g in results]}

    return app


def serve(hub, host: str, port: int, token: Optional[str], limits: Optional[HttpLimits] = None) -> None:
    import uvicorn

    limits = limits or HttpLimits()
    address = bind_address(host)
    if token is None and not is_loopback(address):
        raise UserError(f"--host {host}: resolves to {address}, beyond loopback; that needs --token or ${TOKEN_ENV}")
    uvicorn.run(make_app(hub, token, limits), host=address, port=port, **uvicorn_options(limits))
