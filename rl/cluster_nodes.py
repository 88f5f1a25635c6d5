"""`python -m rl.cluster_nodes ADDRESS`: how many nodes of the Ray cluster at
ADDRESS are alive (0 when it cannot be reached). The launch scripts in
cluster/ wait on it until every node has joined."""
from __future__ import annotations

import sys


def alive_nodes(address: str) -> int:
    import ray

    from core.errors import UserError
    from rl.ray_address import check_reachable, use_token_if_available

    try:  # a closed GCS port answers at once; ray.init would retry for a minute
        check_reachable(address, 6379, "the Ray cluster")
    except UserError:
        return 0
    use_token_if_available()
    try:
        ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        return sum(1 for n in ray.nodes() if n.get("Alive"))
    except Exception:  # noqa: BLE001 - not up yet
        return 0
    finally:
        ray.shutdown()


if __name__ == "__main__":
    print(alive_nodes(sys.argv[1]))
