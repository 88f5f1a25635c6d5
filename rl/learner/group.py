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
from core.gather import ActorDied, gather
from rl.learner.config import LearnerConfig
from rl.learner.rank import LearnerRank


class LearnerFailure(Exception):
    """A learner rank died: the FSDP shards it held are gone, so the run can
    only go on from the last checkpoint."""

    def __init__(self, rank: int, cause: BaseException):
        super().__init__(f"learner rank {rank} died ({str(cause).splitlines()[0][:160]})")
        self.rank = rank


class LearnerGroup:
    def __init__(self, cfg: LearnerConfig, algo: AlgoConfig, model_path: str, temperature: float,
                 seed: int, placement_group=None, first_bundle: int = 0, env: Optional[dict] = None,
                 deterministic: bool = False, fp32_lm_head: bool = False):
        """`fp32_lm_head` is the recipe's model.fp32_lm_head (the engines get
        it through Fleet): the LM head's matmul in float32 under bfloat16."""
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
                rank, cfg.ranks, cfg, algo, model_path, temperature, seed, deterministic,
                fp32_lm_head=fp32_lm_head))
        # no wait here: every rank joins as soon as rank 0's rendezvous is open (Ray passes the
        # address on), so a caller can start the engines while the ranks load; each rank runs the
        # calls made later in order, after its setup
        rendezvous = self.actors[0].open_rendezvous.remote()
        self._setup = [a.setup.remote(rendezvous) for a in self.actors]
        self._n_params: Optional[int] = None

    def ready(self) -> int:
        """Wait for every rank's setup; the model's parameter count."""
        if self._n_params is None:
            self._n_params = self.wait(self._setup)[0]
        return self._n_params

    @property
    def n_params(self) -> int:
        return self.ready()

    def _all(self, method: str, *args) -> list:
        return self.wait([getattr(a, method).remote(*args) for a in self.actors])

    def wait(self, refs: list) -> list:
        """Results of one call per rank; a dead rank raises LearnerFailure at
        once instead of leaving the caller waiting on its peers."""
        try:
            return gather(refs)
        except ActorDied as err:
            raise LearnerFailure(err.index, err.cause) from None

    def train_step(self, batch: Optional[TrainBatch]) -> dict[str, float]:
        ref = ray.put(batch)
        return self._all("train_step", ref)[0]

    def eval_loss(self, batch: TrainBatch) -> float:
        return self._all("eval_loss", ray.put(batch))[0]

    def score_tokens(self, input_ids_bt):
        return self.wait(self.score_tokens_refs(input_ids_bt))[0]

    def score_tokens_refs(self, input_ids_bt) -> list:
        """Start scoring on every rank (rank 0's ref holds the log-probs), so
        the caller can do something else meanwhile; `wait` them."""
        ref = ray.put(input_ids_bt)
        return [a.score_tokens.remote(ref) for a in self.actors]

    def host_weight_group(self, backend: str, world: int, timeout_s: float):
        """Rank 0 binds a new weight group's store; returns where it is."""
        return self.wait([self.actors[0].host_weight_group.remote(backend, world, timeout_s)])[0]

    def connect_weights_refs(self, transport: str, group=None) -> list:
        """Start (re)building every rank's sender, joining `group` (None for a
        transport without one); the receivers must join at the same time."""
        return [a.connect_weights.remote(transport, group) for a in self.actors]

    def push_weights_refs(self) -> list:
        """Start the weight push on every rank; each ref resolves to what
        that rank's sender returned (rollout.weights)."""
        return [a.push_weights.remote() for a in self.actors]

    def save_checkpoint(self, path: str, background: bool = False) -> None:
        self._all("save_checkpoint", path, background)

    def finish_checkpoint(self) -> None:
        """Wait for a checkpoint written in the background (rl.learner.rank)."""
        self._all("finish_checkpoint")

    def load_checkpoint(self, path: str) -> int:
        return self._all("load_checkpoint", path)[0]

    def greedy(self, prompt_ids: list[list[int]], max_new_tokens: int, eos_id: int) -> list[list[int]]:
        return self._all("greedy", prompt_ids, max_new_tokens, eos_id)[0]

    def cpu_seconds(self) -> float:
        return sum(self._all("cpu_seconds"))

    def shutdown(self) -> None:
        try:  # a rank stuck in a collective with a dead peer is not waited for
            gather([a.shutdown.remote() for a in self.actors], timeout=20)
        except Exception:  # noqa: BLE001 - the actors are killed below either way
            pass
        finally:
            for a in self.actors:
                ray.kill(a)
