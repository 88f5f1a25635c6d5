"""Weight transports: how the learner's new weights reach the rollout engines.

One small interface, `WeightTransport`, with two implementations picked by a
config name (`transport: "broadcast" | "safetensors"`, see `make_transport`):

- `SafetensorsTransport`: `send(state)` packs a state dict into safetensors
  bytes, `recv(payload)` unpacks them. The caller moves the bytes (through
  Ray's object store). Simple, no rendezvous, one copy per receiver.
- `BroadcastTransport`: process groups of their own, built straight from a
  `TCPStore` and `ProcessGroupGloo` / `ProcessGroupNCCL`, never the default
  process group (the learner processes already own a default gloo group for
  FSDP). Ranks 0..S-1 are sources (the learner's ranks), ranks S..S+W-1 the
  rollout workers; each source has a group of its own with every worker.
  `send(state)` (one source) sends a pickled table of contents (names,
  dtypes, shapes, the bytes of each tensor this source holds), then each
  tensor's bytes; `recv()` returns the same dict. Both sides must call at
  the same time.

Streaming, sharded (the path the learner and the workers use): every learner
rank is a source and sends only its own FSDP2 shard of each parameter
(`send_stream(specs, pieces)`: a Shard(0) shard is a block of the tensor's
leading rows, so it is contiguous bytes of the whole). A worker posts one
receive per source straight into its slice of the full tensor, so the
sources' pieces arrive at once, over S connections, and no rank gathers,
packs or copies (verl and OpenRLHF gather each parameter on rank 0 first).
`recv_stream()` yields (name, tensor) as each tensor lands, so the engine
loads one tensor while no other exists. Each side's peak above its own model
copy is then about the largest tensor, not a second copy of the model.
(Posting the next tensor's receive before yielding one, to overlap the
transfer with vLLM's load, was measured at 0.5B: no gain on two cores, 0.2
GiB more at the worker's peak; not kept.) The CPU path (gloo) and the GPU
path (nccl) are the same code with a different backend name; only gloo is
tested here, nccl is untested (it also needs each process to have picked its
CUDA device).

Bit-exactness: tensors travel as raw bytes (viewed as uint8), so every dtype,
bfloat16 included, arrives unchanged.
"""
from __future__ import annotations

import pickle
import socket
from abc import ABC, abstractmethod
from collections.abc import Iterator
from datetime import timedelta
from typing import Literal, NamedTuple

import torch

State = dict[str, torch.Tensor]


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
    """Sources 0..S-1 stream their pieces of each tensor to receivers
    S..S+W-1 over process groups that are not the default one."""

    name = "broadcast"

    def __init__(self, backend: Literal["gloo", "nccl"], host: str, port: int, rank: int,
                 world_size: int, *, sources: int = 1, timeout_s: float = 300.0):
        if backend not in ("gloo", "nccl"):
            raise ValueError(f"backend must be 'gloo' or 'nccl', got {backend!r}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world of {world_size}")
        if not 1 <= sources <= world_size:
            raise ValueError(f"{sources} sources in a world of {world_size}")
        self.backend, self.host, self.port = backend, host, port
        self.rank, self.world_size, self.sources = rank, world_size, sources
        self.timeout = timedelta(seconds=timeout_s)
        self.device = torch.device("cuda" if backend == "nccl" else "cpu")
        self._store = None
        self._pgs: list = []  # a source: its own group; a receiver: one per source

    @property
    def is_source(self) -> bool:
        return self.rank < self.sources

    def connect(self) -> None:
        """Rendezvous (blocks until every rank has called it). Idempotent;
        `send`/`recv` call it on first use."""
        if self._pgs:
            return
        import torch.distributed as dist

        self._store = dist.TCPStore(self.host, self.port, self.world_size,
                                    is_master=self.rank == 0, timeout=self.timeout)
        size = 1 + self.world_size - self.sources  # one source and every receiver
        if self.is_source:
            self._pgs = [self._group(self.rank, 0, size)]
        else:
            self._pgs = [self._group(s, 1 + self.rank - self.sources, size) for s in range(self.sources)]

    def _group(self, source: int, rank: int, size: int):
        import torch.distributed as dist

        store = dist.PrefixStore(f"asymptote-weights/{source}", self._store)
        if self.backend == "gloo":
            return dist.ProcessGroupGloo(store, rank, size, self.timeout)
        from torch.distributed import ProcessGroupNCCL  # absent on CPU builds

        return ProcessGroupNCCL(store, rank, size, self.timeout)

    def close(self) -> None:
        for pg in self._pgs:
            if hasattr(pg, "shutdown"):
                try:
                    pg.shutdown()
                except Exception:  # shutting down is best effort
                    pass
        self._pgs, self._store = [], None

    def send(self, state: State) -> None:
        self.send_stream(specs_of(state), iter(state.values()))

    def send_stream(self, specs: list[TensorSpec], pieces: Iterator[torch.Tensor | None]) -> int:
        """Send this source's piece of each tensor in `specs`, taken from
        `pieces` (same order; None or an empty tensor for none). A piece is
        the whole tensor or a block of its leading rows; the receivers put
        the sources' pieces one after another, so together they must make
        the tensor (FSDP2's Shard(0) shards do). Every piece is drawn before
        the first byte is sent (the table of contents carries their sizes),
        so pieces should be views of memory held anyway, as a shard is; a
        piece made for the send (a gathered tensor) is held until it is
        sent. Returns the bytes sent."""
        if not self.is_source:
            raise RuntimeError(f"rank {self.rank} receives; ranks 0..{self.sources - 1} send")
        self.connect()
        pg = self._pgs[0]
        flat = [_flat_bytes(spec, piece, whole=self.sources == 1) for spec, piece in zip(specs, pieces)]
        if len(flat) != len(specs):
            raise ValueError(f"weight stream: {len(flat)} tensors for {len(specs)} specs")
        toc = ([(s.name, str(s.dtype).removeprefix("torch."), tuple(s.shape)) for s in specs],
               [0 if f is None else f.numel() for f in flat])
        meta = torch.frombuffer(bytearray(pickle.dumps(toc)), dtype=torch.uint8)
        _bcast(pg, torch.tensor([meta.numel()], dtype=torch.int64, device=self.device))
        _bcast(pg, meta.to(self.device))
        sent = 0
        for i, f in enumerate(flat):
            if f is not None and f.numel():
                _bcast(pg, f.to(self.device))
                sent += f.numel()
            flat[i] = None  # a gathered piece is dropped once sent
        return sent

    def recv(self, payload: bytes | None = None) -> State:
        return dict(self.recv_stream())

    def recv_stream(self) -> Iterator[tuple[str, torch.Tensor]]:
        """Receive one send from every source, yielding (name, tensor) as each
        tensor lands: its pieces arrive from all sources at once, straight
        into place. Consume it whole (the collectives go on until the last
        tensor)."""
        if self.is_source:
            raise RuntimeError(f"rank {self.rank} sends; ranks {self.sources}.. receive")
        self.connect()
        tocs = []
        for pg in self._pgs:
            length = torch.empty(1, dtype=torch.int64, device=self.device)
            _bcast(pg, length)
            meta = torch.empty(int(length.item()), dtype=torch.uint8, device=self.device)
            _bcast(pg, meta)
            tocs.append(pickle.loads(meta.cpu().numpy().tobytes()))
        specs = tocs[0][0]
        if any(toc[0] != specs for toc in tocs[1:]):
            raise ValueError("weight stream: the sources announced different tensors")
        specs = [TensorSpec(name, getattr(torch, dtype), shape) for name, dtype, shape in specs]
        for i, spec in enumerate(specs):  # all checked before a byte is received
            if sum(toc[1][i] for toc in tocs) != spec.nbytes:
                raise ValueError(f"weight stream: the sources' pieces of {spec.name} make "
                                 f"{sum(toc[1][i] for toc in tocs)} bytes, it has {spec.nbytes}")
        for i, spec in enumerate(specs):  # every source's piece lands straight in its place
            buf = torch.empty(spec.nbytes, dtype=torch.uint8, device=self.device)
            works, off = [], 0
            for pg, toc in zip(self._pgs, tocs):
                if n := toc[1][i]:
                    works.append(pg.broadcast(buf[off:off + n], 0))
                off += n
            for w in works:
                w.wait()
            yield spec.name, buf.view(spec.dtype).view(spec.shape)
            del buf


def _bcast(pg, tensor: torch.Tensor) -> None:
    pg.broadcast(tensor, 0).wait()


def _flat_bytes(spec: TensorSpec, piece: torch.Tensor | None, whole: bool) -> torch.Tensor | None:
    """`piece` as contiguous bytes, after checking it against its spec: the
    same dtype, and the spec's shape (`whole`) or its trailing dims."""
    if piece is None:
        return None
    dtype = str(piece.dtype).removeprefix("torch.")
    if (piece.dtype != spec.dtype or (tuple(piece.shape) != tuple(spec.shape) if whole
                                      else tuple(piece.shape[1:]) != tuple(spec.shape[1:]))):
        raise ValueError(f"weight stream: {spec.name} is {dtype}{tuple(piece.shape)}, "
                         f"its spec says {str(spec.dtype).removeprefix('torch.')}{tuple(spec.shape)}")
    return piece.detach().contiguous().reshape(-1).view(torch.uint8)


def make_transport(name: Literal["broadcast", "safetensors"], **kwargs) -> WeightTransport:
    """Build a transport by its config name (kwargs go to BroadcastTransport)."""
    if name == "safetensors":
        return SafetensorsTransport()
    if name == "broadcast":
        return BroadcastTransport(**kwargs)
    raise ValueError(f"unknown weight transport {name!r} (broadcast | safetensors)")
