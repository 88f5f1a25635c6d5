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
  at the same time.

Streaming (the path the learner and the workers use): `send_stream(specs,
tensors)` takes the table of contents from metadata alone (`TensorSpec`:
name, dtype, shape) and pulls the tensors one at a time from an iterator, so
the learner can gather one FSDP parameter, copy it into the bucket and drop
it; `recv_stream()` yields (name, tensor) as each bucket lands, so the engine
loads one bucket while no other exists. Each side's peak above its own model
copy is then about one bucket (plus the largest single tensor), not a second
copy of the model, as in verl's and OpenRLHF's bucketed weight sync. The CPU path (gloo) and the GPU path (nccl) are the same
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
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Literal, NamedTuple

import torch

State = dict[str, torch.Tensor]
_ALIGN = 64  # byte alignment of each tensor inside a bucket


class TensorSpec(NamedTuple):
    """What the receiver needs to know of a tensor before its bytes arrive."""

    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        n = 1
        for d in self.shape:
            n *= int(d)
        return n * torch.empty((), dtype=self.dtype).element_size()


def specs_of(state: State) -> list[TensorSpec]:
    return [TensorSpec(k, v.dtype, tuple(v.shape)) for k, v in state.items()]


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

    def _buckets(self, specs: Iterable[TensorSpec] | State) -> list[list[tuple[str, str, tuple, int, int]]]:
        """Table of contents: buckets of (name, dtype, shape, offset, nbytes)."""
        if isinstance(specs, dict):
            specs = specs_of(specs)
        buckets, cur, size = [], [], 0
        for spec in specs:
            nbytes = spec.nbytes
            if cur and size + nbytes > self.bucket_bytes:
                buckets.append(cur)
                cur, size = [], 0
            cur.append((spec.name, str(spec.dtype).removeprefix("torch."), tuple(spec.shape), size, nbytes))
            size += -(-nbytes // _ALIGN) * _ALIGN
        if cur:
            buckets.append(cur)
        return buckets

    @staticmethod
    def _bucket_size(bucket) -> int:
        _, _, _, off, nbytes = bucket[-1]
        return -(-(off + nbytes) // _ALIGN) * _ALIGN

    def send(self, state: State) -> None:
        self.send_stream(specs_of(state), iter(state.values()))

    def send_stream(self, specs: list[TensorSpec], tensors: Iterator[torch.Tensor]) -> int:
        """Broadcast tensors described by `specs`, drawn one at a time from
        `tensors` (same order); only one bucket is held at a time. Returns the
        bytes sent."""
        if self.rank != 0:
            raise RuntimeError("only rank 0 sends")
        self.connect()
        toc = self._buckets(specs)
        meta = torch.frombuffer(bytearray(pickle.dumps(toc)), dtype=torch.uint8)
        self._bcast(torch.tensor([meta.numel()], dtype=torch.int64, device=self.device))
        self._bcast(meta.to(self.device))
        sent = 0
        for bucket in toc:
            buf = torch.empty(self._bucket_size(bucket), dtype=torch.uint8, device=self.device)
            for name, dtype, shape, off, nbytes in bucket:
                t = next(tensors)
                if tuple(t.shape) != tuple(shape) or str(t.dtype).removeprefix("torch.") != dtype:
                    raise ValueError(f"weight stream: {name} is {t.dtype}{tuple(t.shape)}, "
                                     f"its spec says {dtype}{tuple(shape)}")
                buf[off:off + nbytes].copy_(t.detach().contiguous().reshape(-1).view(torch.uint8))
                del t
            self._bcast(buf)
            sent += buf.numel()
            del buf
        return sent

    def recv(self, payload: bytes | None = None) -> State:
        return dict(self.recv_stream())

    def recv_stream(self) -> Iterator[tuple[str, torch.Tensor]]:
        """Receive one broadcast, yielding (name, tensor) bucket by bucket.
        Tensors are views into their bucket: a bucket lives as long as the
        consumer holds one of its tensors. Consume it whole (the collective
        goes on until the last bucket)."""
        if self.rank == 0:
            raise RuntimeError("rank 0 sends; ranks 1.. receive")
        self.connect()
        length = torch.empty(1, dtype=torch.int64, device=self.device)
        self._bcast(length)
        meta = torch.empty(int(length.item()), dtype=torch.uint8, device=self.device)
        self._bcast(meta)
        toc = pickle.loads(meta.cpu().numpy().tobytes())
        for bucket in toc:
            buf = torch.empty(self._bucket_size(bucket), dtype=torch.uint8, device=self.device)
            self._bcast(buf)
            for name, dtype, shape, off, nbytes in bucket:
                yield name, buf[off:off + nbytes].view(getattr(torch, dtype)).view(shape)
            del buf


def make_transport(name: Literal["broadcast", "safetensors"], **kwargs) -> WeightTransport:
    """Build a transport by its config name (kwargs go to BroadcastTransport)."""
    if name == "safetensors":
        return SafetensorsTransport()
    if name == "broadcast":
        return BroadcastTransport(**kwargs)
    raise ValueError(f"unknown weight transport {name!r} (broadcast | safetensors)")
