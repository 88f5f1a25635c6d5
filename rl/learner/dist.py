"""The one owner of the learner's process group and device mesh.

Every learner rank calls `init_parallel` once; nothing else in the project
calls `init_process_group`. The mesh has one named axis, `dp_shard` (FSDP2's
shard axis); tensor or pipeline axes would be added here, by name.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh


@dataclass(frozen=True)
class ParallelDims:
    rank: int
    world: int
    backend: str  # "gloo" | "nccl"

    @property
    def device_type(self) -> str:
        return "cuda" if self.backend == "nccl" else "cpu"


def resolve_backend(name: str) -> str:
    if name != "auto":
        return name
    return "nccl" if torch.cuda.is_available() else "gloo"


def init_parallel(dims: ParallelDims, master_addr: str, master_port: int,
                  store: dist.TCPStore | None = None) -> DeviceMesh:
    """Join the process group at rank 0's store (`store` on rank 0 itself)."""
    if dims.device_type == "cuda":
        torch.cuda.set_device(0)  # Ray sets CUDA_VISIBLE_DEVICES to this rank's GPU
    if store is None:
        store = dist.TCPStore(master_addr, master_port, dims.world, is_master=False)
    dist.init_process_group(dims.backend, store=store, rank=dims.rank, world_size=dims.world)
    return init_device_mesh(dims.device_type, (dims.world,), mesh_dim_names=("dp_shard",))
