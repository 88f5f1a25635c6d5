"""Weight transports: how the learner's new weights reach the rollout engines.

One small interface, `WeightTransport`, with two implementations picked by a
config name (`transport: "broadcast" | "safetensors"`, see `make_transport`):

- `SafetensorsTransport`: `send(state)` packs a state dict into safetensors
  bytes, `recv(payload)` unpacks them. The caller moves the bytes (through
  Ray's object store). Simple, no rendezvous, one copy per receiver.
- `BroadcastTransport`: a process group of its own, built straight from a
  `TCPStore` and `ProcessGroupGloo` / `ProcessGroupNCCL`, never the default
  process group (the learner processes already own a default gloo group for
  FSDP). Rank 0 is the learner's rank-0 process, ranks 1..W the rollout
  workers. `send(state)` broadcasts a pickled table of contents (names,
  dtypes, shapes, byte offsets; its length first), then the tensors packed
  into flat byte buckets; `recv()` returns the same dict. Both sides must call
  at the same time. The CPU path (gloo) and the GPU path (nccl) are the same
  code with a different backend name; only gloo is tested here, nccl is
  untested (it also needs each process to have picked its CUDA device).

Bit-exactness: tensors travel as raw bytes (viewed as uint8), so every dtype,
bfloat16 included, arrives unchanged; received tensors are views into the
bucket they came in.
"""
from __future__ import annotations

import pickle
import socket
from abc import ABC, abstractmethod
from datetime import timedelta
from typing import Literal

import torch

State = dict[str, torch.Tensor]
_ALIGN = 64  # byte alignment of each tensor inside a bucket


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (pick it on rank 0's host)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class WeightTransport(ABC):
    """Sender calls `send(state)`, receivers call `recv(payload)`.

    A transport that needs the caller to carry bytes (safetensors) returns
    them from `send` and takes them in `recv`; a collective transport
    (broadcast) returns None from `send` and ignores `payload`.
    """

    name: str

    @abstractmethod
    def send(self, state: State) -> bytes | None: ...

    @abstractmethod
    def recv(self, payload: bytes | None = None) -> State: ...

    def close(self) -> None:  # noqa: B027 - optional
        """Release connections (no-op where there are none)."""


class SafetensorsTransport(WeightTransport):
    """State dict <-> safetensors bytes; the caller ships the bytes."""

    name = "safetensors"

    def pack(self, state: State) -> bytes:
        from safetensors.torch import save

        return save({k: v.detach().contiguous().cpu() for k, v in state.items()})

    def unpack(self, payload: bytes) -> State:
        from safetensors.torch import load

        return load(payload)

    def send(self, state: State) -> bytes:
        return self.pack(state)

    def recv(self, payload: bytes | None = None) -> State:
        if payload is None:
            raise ValueError("SafetensorsTransport.recv needs the bytes that send() returned")
        return self.unpack(payload)


class BroadcastTransport(WeightTransport):
    """Rank 0 broadcasts a state dict to ranks 1..world_size-1 over a
    process group that is not the default one."""

    name = "broadcast"

    def __init__(self, backend: Literal["gloo", "nccl"], host: str, port: int, rank: int,
                 world_size: int, *, bucket_bytes: int = 256 << 20, timeout_s: float = 300.0):
        if backend not in ("gloo", "nccl"):
            raise ValueError(f"backend must be 'gloo' or 'nccl', got {backend!r}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world of {world_size}")
        self.backend, self.host, self.port = backend, host, port
        self.rank, self.world_size = rank, world_size
        self.bucket_bytes = bucket_bytes
        self.timeout = timedelta(seconds=timeout_s)
        self.device = torch.device("cuda" if backend == "nccl" else "cpu")
        self._store = None
        self._pg = None

    def connect(self) -> None:
        """Rendezvous (blocks until every rank has called it). Idempotent;
        `send`/`recv` call it on first use."""
        if self._pg is not None:
            return
        import torch.distributed as dist

        self._store = dist.TCPStore(self.host, self.port, self.world_size,
                                    is_master=self.rank == 0, timeout=self.timeout)
        store = dist.PrefixStore("asymptote-weights", self._store)
        if self.backend == "gloo":
            self._pg = dist.ProcessGroupGloo(store, self.rank, self.world_size, self.timeout)
        else:
            from torch.distributed import ProcessGroupNCCL  # absent on CPU builds

            self._pg = ProcessGroupNCCL(store, self.rank, self.world_size, self.timeout)

    def close(self) -> None:
        if self._pg is not None and hasattr(self._pg, "shutdown"):
            try:
                self._pg.shutdown()
            except Exception:  # shutting down is best effort
                pass
        self._pg = self._store = None

    def _bcast(self, tensor: torch.Tensor) -> None:
        self._pg.broadcast(tensor, 0).wait()

    def _buckets(self, state: State) -> list[list[tuple[str, str, tuple, int, int]]]:
        """Table of contents: buckets of (name, dtype, shape, offset, nbytes)."""
        buckets, cur, size = [], [], 0
        for name, t in state.items():
            nbytes = t.numel() * t.element_size()
            if cur and size + nbytes > self.bucket_bytes:
                buckets.append(cur)
                cur, size = [], 0
            cur.append((name, str(t.dtype).removeprefix("torch."), tuple(t.shape), size, nbytes))
            size += -(-nbytes // _ALIGN) * _ALIGN
        if cur:
            buckets.append(cur)
        return buckets

    @staticmethod
    def _bucket_size(bucket) -> int:
        _, _, _, off, nbytes = bucket[-1]
        return -(-(off + nbytes) // _ALIGN) * _ALIGN

    def send(self, state: State) -> None:
        if self.rank != 0:
            raise RuntimeError("only rank 0 sends")
        self.connect()
        toc = self._buckets(state)
        meta = torch.frombuffer(bytearray(pickle.dumps(toc)), dtype=torch.uint8)
        self._bcast(torch.tensor([meta.numel()], dtype=torch.int64, device=self.device))
        self._bcast(meta.to(self.device))
        for bucket in toc:
            buf = torch.empty(self._bucket_size(bucket), dtype=torch.uint8, device=self.device)
            for name, _, _, off, nbytes in bucket:
                src = state[name].detach().contiguous().reshape(-1).view(torch.uint8)
                buf[off:off + nbytes].copy_(src)
            self._bcast(buf)
        return None

    def recv(self, payload: bytes | None = None) -> State:
        if self.rank == 0:
            raise RuntimeError("rank 0 sends; ranks 1.. receive")
        self.connect()
        length = torch.empty(1, dtype=torch.int64, device=self.device)
        self._bcast(length)
        meta = torch.empty(int(length.item()), dtype=torch.uint8, device=self.device)
        self._bcast(meta)
        toc = pickle.loads(meta.cpu().numpy().tobytes())
        out: State = {}
        for bucket in toc:
            buf = torch.empty(self._bucket_size(bucket), dtype=torch.uint8, device=self.device)
            self._bcast(buf)
            for name, dtype, shape, off, nbytes in bucket:
                out[name] = buf[off:off + nbytes].view(getattr(torch, dtype)).view(shape)
        return out


def make_transport(name: Literal["broadcast", "safetensors"], **kwargs) -> WeightTransport:
    """Build a transport by its config name (kwargs go to BroadcastTransport)."""
    if name == "safetensors":
        return SafetensorsTransport()
    if name == "broadcast":
        return BroadcastTransport(**kwargs)
    raise ValueError(f"unknown weight transport {name!r} (broadcast | safetensors)")
