"""Rendezvous stores bound on a port the OS picks, never one picked beforehand.

Asking the OS for a free port, closing the socket and binding the port later
leaves a window in which another process can take it (it happened under
load: EADDRINUSE). Binding port 0 closes the window: the process that hosts
the store binds it, reads the port it got, and tells the others where it is;
they connect as clients. The learner's process group and the weight group
both rendezvous this way.
"""
from __future__ import annotations

from datetime import timedelta


def host_store(host: str, world: int, timeout_s: float = 300.0):
    """A `torch.distributed.TCPStore` hosted here for `world` members (this
    process included), bound on `host` at a port the OS picks: read it from
    the store's `.port` and hand it to the others. Returns at once, without
    waiting for them."""
    import torch.distributed as dist

    return dist.TCPStore(host, 0, world, is_master=True, wait_for_workers=False,
                         timeout=timedelta(seconds=timeout_s))
