"""Start N learner ranks as Ray actors and drive them in lock-step.

The group is the controller's only handle on the learner: it puts a batch in
the object store once, has every rank train on its share, and returns rank
0's (already all-reduced) metrics.
"""
from __future__ import annotations

from typing import Any, Optional

import ray
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from rl.algo.batch import TrainBatch
from rl.algo.config import AlgoConfig
from rl.learner.config import LearnerConfig
from rl.learner.rank import LearnerRank


class LearnerGroup:
    def __init__(self, cfg: LearnerConfig, algo: AlgoConfig, model_path: str, temperature: float,
                 seed: int, placement_group=None, first_bundle: int = 0, env: Optional[dict] = None):
        remote_cls = ray.remote(LearnerRank)
        self.cfg = cfg
        self.actors = []
        for rank in range(cfg.ranks):
            opts: dict[str, Any] = {"num_cpus": cfg.cpus_per_rank, "num_gpus": cfg.gpus_per_rank,
                                    "runtime_env": {"env_vars": dict(env or {})}}
            if placement_group is not None:
                opts["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                    placement_group, placement_group_bundle_index=first_bundle + rank)
            self.actors.append(remote_cls.options(**opts).remote(
                rank, cfg.ranks, cfg, algo, model_path, temperature, seed))
        addr, port = ray.get(self.actors[0].master_address.remote())
        self.n_params = ray.get([a.setup.remote(addr, port) for a in self.actors])[0]

    def _all(self, method: str, *args) -> list:
        return ray.get([getattr(a, method).remote(*args) for a in self.actors])

    def train_step(self, batch: Optional[TrainBatch]) -> dict[str, float]:
        ref = ray.put(batch)
        return self._all("train_step", ref)[0]

    def eval_loss(self, batch: TrainBatch) -> float:
        return self._all("eval_loss", ray.put(batch))[0]

    def score_tokens(self, input_ids_bt):
        return self._all("score_tokens", ray.put(input_ids_bt))[0]

    def push_weights_refs(self, transport: str) -> list:
        """Start the weight push on every rank; the first ref resolves to the
        payload ('safetensors') or None ('broadcast')."""
        return [a.push_weights.remote(transport) for a in self.actors]

    def connect_weight_broadcast_refs(self, backend: str, host: str, port: int, world: int) -> list:
        return [a.connect_weight_broadcast.remote(backend, host, port, world) for a in self.actors]

    def save_checkpoint(self, path: str) -> None:
        self._all("save_checkpoint", path)

    def load_checkpoint(self, path: str) -> int:
        return self._all("load_checkpoint", path)[0]

    def cpu_seconds(self) -> float:
        return sum(self._all("cpu_seconds"))

    def shutdown(self) -> None:
        try:
            self._all("shutdown")
        finally:
            for a in self.actors:
                ray.kill(a)
