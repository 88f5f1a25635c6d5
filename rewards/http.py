"""HTTP front of the reward hub: `POST /v1/score` and `GET /healthz`.

Binds to 127.0.0.1 by default. Any other bind address needs a token
(`--token` or $ASYMPTOTE_HUB_TOKEN); when a token is set every request must
carry `Authorization: Bearer <token>` or gets 401 (compared in constant time).

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
from typing import Any, Optional

from rl.errors import UserError

TOKEN_ENV = "ASYMPTOTE_HUB_TOKEN"
MAX_BODY = 64 << 20


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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


def make_app(hub, token: Optional[str]):
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
        raw = await request.body()
        if len(raw) > MAX_BODY:
            return JSONResponse({"error": f"body over {MAX_BODY} bytes"}, status_code=413)
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

    uvicorn.run(make_app(hub, token), host=host, port=port, log_level="warning")
