"""Joining a Ray cluster by address, with one-line errors.

`ray.init(address=...)` on a wrong address waits tens of seconds and ends in
a traceback; `asymptote launch --address` and `asymptote submit` check the
address first (its form, then a TCP connect with a short timeout) and turn
what Ray raises into one `UserError` line that names the address.

Three kinds of address, as Ray has them:
- `auto`: the cluster this machine belongs to (`ray start` ran here);
- `HOST:PORT` (GCS, 6379 by default) or `ray://HOST:PORT` (Ray Client, 10001):
  what `launch --address` joins;
- `http://HOST:PORT` (the dashboard, 8265): what Ray Jobs (`submit`, `jobs`,
  `stop`) talk to.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from core.errors import UserError

CONNECT_TIMEOUT_S = 5.0


def use_token_if_available() -> None:
    """Ray 2.60 turns token authentication on for a new head, but a process
    joining one stays in 'disabled' mode unless told, and is refused. With
    RAY_AUTH_MODE unset and a token at hand (RAY_AUTH_TOKEN,
    RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token), join in token mode."""
    if "RAY_AUTH_MODE" in os.environ:
        return
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    if os.environ.get("RAY_AUTH_TOKEN") or path.is_file():
        os.environ["RAY_AUTH_MODE"] = "token"  # for this process's children (the job's driver, ...)
        try:  # and for this one, whose Ray config was read at import (as Ray's own _enable_token_auth does)
            from ray._raylet import Config

            Config.initialize("")
        except Exception:  # noqa: BLE001 - a Ray without token auth: nothing to switch on
            pass


def auth_hint(text: str) -> str:
    """A hint to add when Ray's error is about the token."""
    if "auth" not in text.lower():
        return ""
    return ("; the cluster wants its auth token: copy the head's ~/.ray/auth_token here "
            "(or set RAY_AUTH_TOKEN) and RAY_AUTH_MODE=token")


def host_port(address: str, default_port: int) -> tuple[str, int]:
    """(host, port) of 'HOST:PORT', 'ray://HOST:PORT' or 'http://HOST:PORT'."""
    url = urlparse(address if "://" in address else f"tcp://{address}")
    try:
        port = url.port or default_port
    except ValueError:
        raise UserError(f"--address {address}: the port is not a number") from None
    if not url.hostname:
        raise UserError(f"--address {address}: expected HOST:PORT, ray://HOST:PORT or http://HOST:PORT")
    return url.hostname, port


def check_reachable(address: str, default_port: int, what: str) -> None:
    """A TCP connect to the address, so that a wrong host or port is one line
    after a few seconds rather than a long hang."""
    host, port = host_port(address, default_port)
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            return
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise UserError(f"cannot reach {what} at {address} ({host}:{port}: {reason}); "
                        f"is the head started and the address right?") from None


def connect(address: str, namespace: str) -> None:
    """ray.init on an existing cluster; every failure is one UserError line."""
    import ray

    if ray.is_initialized():
        return
    if address != "auto":
        if address.startswith(("http://", "https://")):
            raise UserError(f"--address {address} is a dashboard (Ray Jobs) address: `asymptote submit` uses it; "
                            "`launch` joins the cluster itself (HOST:6379, ray://HOST:10001 or auto)")
        check_reachable(address, 10001 if address.startswith("ray://") else 6379, "the Ray cluster")
    use_token_if_available()
    try:
        ray.init(address=address, namespace=namespace, log_to_driver=False, configure_logging=False)
    except Exception as err:  # noqa: BLE001 - ConnectionError, AuthenticationError, RuntimeError, ...
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise UserError(f"could not join the Ray cluster at {address}: {first}{auth_hint(str(err))}") from None
