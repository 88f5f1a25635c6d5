"""Weight sync per transport against a raw `torch.distributed` broadcast of
the same bytes, measured in the same invocation.

- ours, `broadcast`: `LearnerGroup` (FSDP2 ranks over gloo, `--ranks`) ->
  `--receivers` Ray actors, through the transport's sender and receiver
  (rollout.weights): every rank sends its own FSDP shard of each parameter
  over its own gloo group, each receiver consuming the stream, which takes
  every rank's rows at once straight into the full tensor (touching every
  tensor, as the engine's load would; vLLM's load itself is not in this
  number: bench_memory.py measures the whole path).
- ours, `safetensors`: rank 0 gathers the whole state dict and packs it; each
  receiver unpacks the bytes it gets through Ray's object store.
- baseline: a 1 + `--receivers` process gloo group broadcasting the same
  number of bytes in 256 MB buckets from one sender (no gather, no packing).
  Ours sends from `--ranks` processes, the learner ranks it has anyway.

Each is timed warm: the best of `--repeats` after one untimed pass (all of
one transport's passes, then the other's: the learner holds one sender at a
time). Target: broadcast >= 0.8 of the baseline's bandwidth.

    python bench/bench_sync.py [--model tiny|qwen05] [--ranks 2] [--receivers 1] [--repeats 3] [--json]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def _receiver_cls(ray):
    @ray.remote(num_cpus=0)
    class Receiver:
        def connect(self, transport, group, rank):
            from rollout.weights import make_transport
            self.r = make_transport(transport).receiver(group, rank)
            return True

        def receive(self, payload=None):
            got = self.r.receive(payload)
            n = 0
            for _, tensor in got.items() if isinstance(got, dict) else got:
                n += int(tensor.reshape(-1)[:1].numel())  # touch it
            return n

        def close(self):
            self.r.close()

    return Receiver


def _connect(group, recv: list, transport: str, ranks: int) -> None:
    """A sender on every learner rank and a receiver in every actor; for
    the broadcast, learner rank 0 hosts the group's store."""
    import ray

    from rollout.weights import make_transport
    weights = None
    if make_transport(transport).collective:
        weights = group.host_weight_group("gloo", ranks + len(recv), 600.0)
    refs = [r.connect.remote(transport, weights, ranks + i) for i, r in enumerate(recv)]
    group.wait(group.connect_weights_refs(transport, weights))
    ray.get(refs)


def _time_pushes(group, recv: list, transport: str, repeats: int) -> list[float]:
    import ray

    from rollout.weights import make_transport
    collective = make_transport(transport).collective
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        if collective:
            got = [r.receive.remote() for r in recv]
            group.wait(group.push_weights_refs())
            ray.get(got)
        else:
            payload = group.wait(group.push_weights_refs())[0]
            ray.get([r.receive.remote(payload) for r in recv])
            del payload
        times.append(time.perf_counter() - t0)
    return times


def run_ours(model: str, ranks: int, receivers: int, repeats: int) -> dict:
    import ray

    from rl.algo.config import AlgoConfig
    from rl.learner.config import LearnerConfig
    from rl.learner.group import LearnerGroup

    group = LearnerGroup(LearnerConfig(ranks=ranks, cpus_per_rank=0.5), AlgoConfig(), model,
                         temperature=1.0, seed=0)
    recv = [_receiver_cls(ray).remote() for _ in range(receivers)]
    try:
        nbytes = sum(s.nbytes for s in ray.get(group.actors[0].weight_specs.remote()))
        times = {}
        for transport in ("broadcast", "safetensors"):
            _connect(group, recv, transport, ranks)
            times[transport] = _time_pushes(group, recv, transport, repeats)
            ray.get([r.close.remote() for r in recv])
    finally:
        group.shutdown()
        for r in recv:
            ray.kill(r)
    return {"bytes": nbytes, **{k: {"warm_s": min(v[1:]), "cold_s": v[0], "gb_per_s": nbytes / 1e9 / min(v[1:])}
                                for k, v in times.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny", help="tiny (tiny-arith's shape, random) | qwen05 | a model folder")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--receivers", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    import tempfile

    import ray

    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_memory import build_qwen05_shape, raw_broadcast

    with tempfile.TemporaryDirectory(prefix="bench_sync_") as tmp:
        model = args.model
        if model == "tiny":
            from rl.base.config import ArchConfig
            from rl.base.model import build_model
            from rl.base.tokenizer import build_tokenizer
            tok = build_tokenizer()
            build_model(ArchConfig(), tok).save_pretrained(tmp)
            tok.save_pretrained(tmp)
            model = tmp
        elif model == "qwen05":
            model = str(build_qwen05_shape(Path(".cache/bench"), 151936)[0])
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
        try:
            ours = run_ours(model, args.ranks, args.receivers, args.repeats)
        finally:
            ray.shutdown()
    raw = raw_broadcast(ours["bytes"], receivers=args.receivers, repeats=args.repeats)
    out = {"ours": ours, "raw_broadcast": raw,
           "ratio": {k: ours[k]["gb_per_s"] / raw["gb_per_s"] for k in ("broadcast", "safetensors")},
           "settings": vars(args)}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{ours['bytes'] / 1e6:.1f} MB, {args.ranks} learner ranks -> {args.receivers} receivers")
    print(f"raw gloo broadcast: {raw['gb_per_s']:.3f} GB/s ({raw['warm_s']:.3f} s)")
    for k in ("broadcast", "safetensors"):
        print(f"{k}: {ours[k]['gb_per_s']:.3f} GB/s ({ours[k]['warm_s']:.3f} s), ratio {out['ratio'][k]:.2f}")


if __name__ == "__main__":
    main()
