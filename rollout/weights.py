"""Weight transports: how the learner's new weights reach the rollout engines.

A transport is a pair chosen once, by its config name (`make_transport`): a
`WeightSender` on every learner rank and a `WeightReceiver` in every rollout
worker. Nothing outside this module asks which transport it has; the caller
reads one property, `collective`, which says how a push flows:

- `safetensors` (not collective): rank 0 gathers the whole state dict and
  packs it into safetensors bytes; the caller hands the bytes (a Ray object)
  to each receiver, which unpacks them. Simple, no rendezvous, one copy per
  receiver.
- `broadcast` (collective): senders and receivers meet in a weight group
  (`WeightGroup`), process groups of their own built straight from a
  `TCPStore` and `ProcessGroupGloo` / `ProcessGroupNCCL`, never the default
  process group (the learner processes already own a default gloo group for
  FSDP). Ranks 0..S-1 are sources (the learner's ranks), ranks S..S+W-1 the
  rollout workers; each source has a group of its own with every worker
  (`BroadcastLink`). Every receiver takes part in every push, and a group
  cannot take a new member: a replaced worker means a new group. Learner
  rank 0 hosts the group's store on a port the OS picks (core.ports) and
  publishes it, so no port is picked free and bound later.

Streaming, sharded (the broadcast path): every learner rank is a source and
sends only its own FSDP2 shard of each parameter (`weight_pieces`: a Shard(0)
shard is a block of the tensor's leading rows, so it is contiguous bytes of
the whole), after a pickled table of contents (names, dtypes, shapes, the
bytes of each tensor this source holds). A worker posts one receive per
source straight into its slice of the full tensor, so the sources' pieces
arrive at once, over S connections, and no rank gathers, packs or copies
(verl and OpenRLHF gather each parameter on rank 0 first). The receiver
yields (name, tensor) as each tensor lands, so the engine loads one tensor
while no other exists. Each side's peak above its own model copy is then
about the largest tensor, not a second copy of the model. (Posting the next
tensor's receive before yielding one, to overlap the transfer with vLLM's
load, was measured at 0.5B: no gain on two cores, 0.2 GiB more at the
worker's peak; not kept.) The CPU path (gloo) and the GPU path (nccl) are the
same code with a different backend name; only gloo is tested here, nccl is
untested (it also needs each process to have picked its CUDA device).

Bit-exactness: tensors travel as raw bytes (viewed as uint8), so every dtype,
bfloat16 included, arrives unchanged.
"""
from __future__ import annotations

import pickle
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, NamedTuple, Optional, Union

import torch

State = dict[str, torch.Tensor]
Weights = Union[State, Iterator[tuple[str, torch.Tensor]]]  # what a receiver hands the engine


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


# ---- the learner's weights, as the senders read them ------------------------------
def weight_items(model: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    """The model's named tensors, each storage once (a tied LM head is the
    embedding; the engines re-add it)."""
    seen, out = set(), []
    for name, t in model.state_dict(keep_vars=True).items():
        if id(t) not in seen:  # the same Parameter object on every rank
            seen.add(id(t))
            out.append((name, t))
    return out


def weight_specs(model: torch.nn.Module) -> list[TensorSpec]:
    """Names, dtypes and full shapes of the weights, from metadata alone."""
    return specs_of(dict(weight_items(model)))


def weight_pieces(model: torch.nn.Module, rank: int) -> Iterator[Optional[torch.Tensor]]:
    """Collective generator, in `weight_specs()` order: this rank's piece of
    each weight, a block of its leading rows (its Shard(0) shard, as is: a
    view, no copy) or the whole tensor on rank 0 and None elsewhere
    (anything else, gathered: held until sent, see `send_stream`; the
    learner's fully_shard makes none); every rank must consume it whole."""
    from torch.distributed.tensor import DTensor, Shard
    for _, t in weight_items(model):
        t = t.detach()
        if isinstance(t, DTensor) and tuple(t.placements) == (Shard(0),):
            yield t.to_local()
            continue
        full = t.full_tensor() if isinstance(t, DTensor) else t
        yield full if rank == 0 else None


# ---- the two ends of a transport ------------------------------------------------------
class WeightSender(ABC):
    """A learner rank's end. Every rank calls `send(model)` at the same time
    (a send may gather over the learner's own process group)."""

    @abstractmethod
    def send(self, model: torch.nn.Module) -> Any:
        """Ship `model`'s weights; returns what the transport says it returns."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release connections (no-op where there are none)."""


class WeightReceiver(ABC):
    """A rollout worker's end."""

    @abstractmethod
    def receive(self, payload: Optional[bytes] = None) -> Weights:
        """The weights of one push, as a dict or a (name, tensor) stream that
        must be consumed whole; `payload` is what the sender returned
        (a transport that moves no bytes through the caller ignores it)."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release connections (no-op where there are none)."""


@dataclass(frozen=True)
class WeightGroup:
    """Where a collective transport's senders and receivers meet: ranks
    0..sources-1 send, sources..world-1 receive; rank 0 hosts the store."""

    backend: str  # "gloo" | "nccl"
    host: str
    port: int
    world: int
    sources: int
    timeout_s: float = 300.0


def host_weight_group(backend: str, host: str, world: int, sources: int, timeout_s: float):
    """Rank 0: bind a new weight group's store on a port the OS picks.
    Returns the group, to publish to the others, and the store, which rank 0
    holds and hands to its own end of the transport."""
    from core.ports import host_store

    store = host_store(host, world, timeout_s)
    return WeightGroup(backend, host, store.port, world, sources, timeout_s), store


# ---- safetensors: bytes through the caller ---------------------------------------------
def pack(state: State) -> bytes:
    from safetensors.torch import save

    return save({k: v.detach().contiguous().cpu() for k, v in state.items()})


def unpack(payload: bytes) -> State:
    from safetensors.torch import load

    return load(payload)


class SafetensorsSender(WeightSender):
    """Every rank joins the gather of the whole state dict; rank 0 returns
    its safetensors bytes (the others None)."""

    def __init__(self, rank: int):
        self.rank = rank

    def send(self, model: torch.nn.Module) -> Optional[bytes]:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if self.rank != 0:
            return None
        names = {name for name, _ in weight_items(model)}  # a tied head once (one rank's dict shares it)
        return pack({k: v for k, v in state.items() if k in names})


class SafetensorsReceiver(WeightReceiver):
    def receive(self, payload: Optional[bytes] = None) -> State:
        if payload is None:
            raise ValueError("the safetensors receiver needs the bytes its sender returned")
        return unpack(payload)


# ---- broadcast: a weight group of its own ---------------------------------------------
class BroadcastLink:
    """One member's connection to a weight group: a source streams its
    pieces of each tensor (`send_stream`) to the receivers, which assemble
    them (`recv_stream`), over process groups that are not the default one."""

    def __init__(self, group: WeightGroup, rank: int, store=None):
        """`store`: the group's store, on the rank that hosts it
        (`host_weight_group`); the others connect to `group.host:port`."""
        if group.backend not in ("gloo", "nccl"):
            raise ValueError(f"backend must be 'gloo' or 'nccl', got {group.backend!r}")
        if not 0 <= rank < group.world:
            raise ValueError(f"rank {rank} outside world of {group.world}")
        if not 1 <= group.sources <= group.world:
            raise ValueError(f"{group.sources} sources in a world of {group.world}")
        self.group, self.rank, self.sources = group, rank, group.sources
        self.timeout = timedelta(seconds=group.timeout_s)
        self.device = torch.device("cuda" if group.backend == "nccl" else "cpu")
        self._store = store
        self._pgs: list = []  # a source: its own group; a receiver: one per source

    @property
    def is_source(self) -> bool:
        return self.rank < self.sources

    def connect(self) -> None:
        """Rendezvous (blocks until every rank has called it). Idempotent;
        `send_stream`/`recv_stream` call it on first use."""
        if self._pgs:
            return
        import torch.distributed as dist

        g = self.group
        if self._store is None:
            self._store = dist.TCPStore(g.host, g.port, g.world, is_master=False, timeout=self.timeout)
        size = 1 + g.world - self.sources  # one source and every receiver
        if self.is_source:
            self._pgs = [self._group(self.rank, 0, size)]
        else:
            self._pgs = [self._group(s, 1 + self.rank - self.sources, size) for s in range(self.sources)]

    def _group(self, source: int, rank: int, size: int):
        import torch.distributed as dist

        store = dist.PrefixStore(f"asymptote-weights/{source}", self._store)
        if self.group.backend == "gloo":
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


class BroadcastSender(WeightSender):
    """Each learner rank streams its own shard of every weight to the group
    (no gather; a weight that is not a Shard(0) DTensor goes whole from
    rank 0); `send` returns the bytes this rank sent."""

    def __init__(self, group: WeightGroup, rank: int, store=None):
        self.rank = rank
        self.link = BroadcastLink(group, rank, store)
        self.link.connect()

    def send(self, model: torch.nn.Module) -> int:
        pieces = weight_pieces(model, self.rank)
        try:
            return self.link.send_stream(weight_specs(model), pieces)
        finally:  # a piece refused part-way through still lets this rank join any gather the others are in
            for _ in pieces:
                pass

    def close(self) -> None:
        self.link.close()


class BroadcastReceiver(WeightReceiver):
    """Yields each tensor as its pieces land (`BroadcastLink.recv_stream`)."""

    def __init__(self, group: WeightGroup, rank: int):
        self.link = BroadcastLink(group, rank)
        self.link.connect()

    def receive(self, payload: Optional[bytes] = None) -> Iterator[tuple[str, torch.Tensor]]:
        return self.link.recv_stream()

    def close(self) -> None:
        self.link.close()


# ---- the registry ----------------------------------------------------------------------
@dataclass(frozen=True)
class Transport:
    """A sender/receiver pair. `collective`: the two ends meet in a
    `WeightGroup`, built before the first push (rank 0 hosts it:
    `host_weight_group`) and rebuilt whenever a member changes, and every
    receiver takes part in every push; otherwise there is no group (None)
    and the caller hands rank 0's `send` result to each receiver."""

    name: str
    collective: bool
    sender: Callable[[Optional[WeightGroup], int, Any], WeightSender]  # (group, rank, hosted store)
    receiver: Callable[[Optional[WeightGroup], int], WeightReceiver]  # (group, rank)


TRANSPORTS = {t.name: t for t in (
    Transport("broadcast", True, BroadcastSender, BroadcastReceiver),
    Transport("safetensors", False, lambda group, rank, store: SafetensorsSender(rank),
              lambda group, rank: SafetensorsReceiver()),
)}


def make_transport(name: str) -> Transport:
    """The transport a config names (the recipe validates the name)."""
    if name not in TRANSPORTS:
        raise ValueError(f"unknown weight transport {name!r} ({' | '.join(TRANSPORTS)})")
    return TRANSPORTS[name]
