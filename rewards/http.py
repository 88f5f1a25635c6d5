"""HTTP front of the reward hub: `POST /v1/score` and `GET /healthz`.

Binds to 127.0.0.1 by default. Any other bind address needs a token
(`--token` or $ASYMPTOTE_HUB_TOKEN); when a token is set every request must
carry `Authorization: Bearer <token>` or gets 401 (compared in constant time).
A host name counts as loopback only when every address it resolves to is a
loopback address ("localhost" is resolved like any other name, since
/etc/hosts may map it elsewhere), and the server binds a literal address,
checked again at the bind, not the name.

Request bodies are limited to `max_body` bytes (64 MiB) while they are read:
a Content-Length over the limit is answered 413 before any of the body is
read, and a body without one (chunked) is counted as it arrives and answered
413 as soon as the count passes the limit (uvicorn stops reading the socket
while the app does not consume it, so the rest is never buffered).

`POST /v1/score` body, one of:
  {"sample": {...}}            -> {"reward": r, "details": {...}}
  {"samples": [{...}, ...]}    -> {"results": [{"reward", "details"}, ...]}
  {"groups": [[{...}, ...]]}   -> {"results": [[...], ...]} (group terms apply)
A bare sample object or a bare list is read as "sample" / "samples".
"""
# No `from __future__ import annotations`: FastAPI must see the real Request
# class in the endpoint signatures, which are defined inside make_app.
import hmac
import ipaddress
import os
import socket
from typing import Any, Optional

from rl.errors import UserError

TOKEN_ENV = "ASYMPTOTE_HUB_TOKEN"
MAX_BODY = 64 << 20


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


async def read_limited(request, limit: int) -> Optional[bytes]:
    """The request body, or None as soon as it is known to exceed `limit`
    bytes (from Content-Length before reading, else by counting)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.strip().isdigit() or int(declared) > limit):
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def make_app(hub, token: Optional[str], max_body: int = MAX_BODY):
    import json

    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    app = FastAPI(title="asymptote reward hub", docs_url=None, redoc_url=None, openapi_url=None)
    expected = f"Bearer {token}".encode() if token else None

    @app.middleware("http")
    async def require_token(request: Request, call_next):
        if expected is not None:
            got = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(got, expected):
                return JSONResponse({"error": "missing or wrong token"}, status_code=401)
        return await call_next(request)

    @app.get("/healthz")
    async def healthz():
        return {"ok": True, "replicas": len(hub.replicas)}

    @app.post("/v1/score")
    async def score(request: Request):
        raw = await read_limited(request, max_body)
        if raw is None:
            return JSONResponse({"error": f"body over {max_body} bytes"}, status_code=413,
                                headers={"Connection": "close"})
        try:
            shape, groups = _groups_of(json.loads(raw))
        except ValueError as err:  # JSONDecodeError is a ValueError
            return JSONResponse({"error": str(err)}, status_code=400)
        results = await hub.score_groups_async(groups) if groups else []
        if shape == "sample":
            return results[0][0].to_json()
        if shape == "samples":
            return {"results": [g[0].to_json() for g in results]}
        return {"results": [[r.to_json() for r in g] for g in results]}

    return app


def serve(hub, host: str, port: int, token: Optional[str]) -> None:
    import uvicorn

    address = bind_address(host)
    if token is None and not is_loopback(address):
        raise UserError(f"--host {host}: resolves to {address}, beyond loopback; that needs --token or ${TOKEN_ENV}")
    uvicorn.run(make_app(hub, token), host=address, port=port, log_level="warning")
