"""Both weight transports carry a state dict bit-exactly between Ray actors."""
from __future__ import annotations

import pytest
import torch

from rollout.weights import BroadcastTransport, SafetensorsTransport, free_port, make_transport


def _state(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "model.embed_tokens.weight": torch.randn(64, 128, generator=g),
        "model.layers.0.self_attn.q_proj.weight": torch.randn(128, 128, generator=g).bfloat16(),
        "model.layers.0.self_attn.q_proj.bias": torch.randn(128, generator=g).half(),
        "model.norm.weight": torch.randn(7, generator=g, dtype=torch.float64),  # odd byte count
        "step": torch.tensor(12345678901, dtype=torch.int64),  # 0-dim
        "empty": torch.empty(0, 3),
        "mask": torch.rand(5, 3, generator=g) > 0.5,
        "nonfinite": torch.tensor([float("nan"), float("inf"), -0.0]),
    }


def _assert_bit_equal(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)  # safetensors stores keys in its own order
    for k, w in want.items():
        g = got[k]
        assert g.dtype == w.dtype and g.shape == w.shape, k
        assert torch.equal(g.contiguous().view(-1).view(torch.uint8),
                           w.contiguous().view(-1).view(torch.uint8)), k


@pytest.fixture(scope="module")
def actor_cls(ray_local):
    # Self-contained (Ray workers cannot import this test module by name).
    @ray_local.remote(num_cpus=0)
    class Peer:
        def __init__(self, transport: str, **kwargs):
            from rollout.weights import make_transport

            self.t = make_transport(transport, **kwargs)

        def send(self, state):
            return self.t.send(state)

        def recv(self, payload=None):
            return self.t.recv(payload)

        def close(self):
            self.t.close()

    return Peer


def test_safetensors_round_trip_across_actors(ray_local, actor_cls):
    sender, receiver = actor_cls.remote("safetensors"), actor_cls.remote("safetensors")
    payload_ref = sender.send.remote(_state(0))  # bytes stay in the object store
    got = ray_local.get(receiver.recv.remote(payload_ref))
    _assert_bit_equal(got, _state(0))
    with pytest.raises(ValueError):
        SafetensorsTransport().recv(None)


def test_broadcast_gloo_round_trip_across_actors(ray_local, actor_cls):
    port = free_port()
    world = 3  # the learner's rank 0 and two rollout workers
    # A small bucket forces several buckets and one tensor larger than a bucket.
    peers = [actor_cls.remote("broadcast", backend="gloo", host="127.0.0.1", port=port,
                              rank=r, world_size=world, bucket_bytes=20_000)
             for r in range(world)]
    for version in (0, 1):  # the group is reused for a second update
        sent = peers[0].send.remote(_state(version))
        got = ray_local.get([p.recv.remote() for p in peers[1:]])
        assert ray_local.get(sent) is None
        for g in got:
            _assert_bit_equal(g, _state(version))
    ray_local.get([p.close.remote() for p in peers])


def test_broadcast_table_of_contents_is_aligned():
    t = BroadcastTransport("gloo", "127.0.0.1", 0, rank=0, world_size=2, bucket_bytes=1000)
    toc = t._buckets(_state(0))
    assert sum(len(b) for b in toc) == len(_state(0))
    for bucket in toc:
        assert all(off % 64 == 0 for _, _, _, off, _ in bucket)
    with pytest.raises(ValueError):
        make_transport("shm")
