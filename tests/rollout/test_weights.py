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


def test_broadcast_streams_bucket_by_bucket(ray_local, actor_cls):
    """recv_stream yields a bucket's tensors before the next bucket is sent:
    the receiver never holds more than the bucket it is reading."""
    t = BroadcastTransport("gloo", "127.0.0.1", 0, rank=0, world_size=2, bucket_bytes=20_000)
    state = _state(3)
    toc = t._buckets(state)
    assert len(toc) >= 3  # the embedding (32 KB) is a bucket of its own
    port = free_port()
    sender = actor_cls.remote("broadcast", backend="gloo", host="127.0.0.1", port=port, rank=0,
                              world_size=2, bucket_bytes=20_000)

    @ray_local.remote(num_cpus=0)
    def receive(port):
        from rollout.weights import BroadcastTransport
        r = BroadcastTransport("gloo", "127.0.0.1", port, rank=1, world_size=2, bucket_bytes=20_000)
        got, buckets = {}, set()
        for name, tensor in r.recv_stream():
            got[name] = tensor.clone()
            buckets.add(tensor.untyped_storage().data_ptr())  # one storage per bucket
        r.close()
        return got, len(buckets)

    got_ref = receive.remote(port)
    assert ray_local.get(sender.send.remote(state)) is None
    got, n_storages = ray_local.get(got_ref)
    _assert_bit_equal(got, state)
    assert n_storages == len(toc)
    ray_local.get(sender.close.remote())


def test_send_stream_checks_each_tensor_against_its_spec():
    from rollout.weights import TensorSpec, specs_of

    specs = specs_of(_state(0))
    assert specs[0] == TensorSpec("model.embed_tokens.weight", torch.float32, (64, 128))
    assert specs[0].nbytes == 64 * 128 * 4 and specs[1].nbytes == 128 * 128 * 2
    t = BroadcastTransport("gloo", "127.0.0.1", free_port(), rank=0, world_size=1, bucket_bytes=1 << 20)
    try:
        with pytest.raises(ValueError, match="q_proj"):  # a float32 tensor where bfloat16 was announced
            t.send_stream(specs, iter([_state(0)[specs[0].name], torch.zeros(128, 128)]))
        sent = t.send_stream(specs, iter(_state(0).values()))
        assert sent >= sum(s.nbytes for s in specs)
    finally:
        t.close()


def test_learner_streams_exactly_its_full_state_dict(ray_local, tiny_random_model):
    """Two FSDP2 ranks gather one parameter at a time into 64 KB buckets; the
    receiver gets the weights the whole-dict gather returns, bit for bit
    (less the tied LM head, which the engine re-adds)."""
    from rl.algo.config import AlgoConfig
    from rl.learner.config import LearnerConfig
    from rl.learner.group import LearnerGroup
    from rollout.weights import SafetensorsTransport

    group = LearnerGroup(LearnerConfig(ranks=2, cpus_per_rank=0.5), AlgoConfig(), tiny_random_model,
                         temperature=1.0, seed=0)
    try:
        whole = SafetensorsTransport().unpack(group.wait(group.push_weights_refs("safetensors"))[0])
        host, port = ray_local.get(group.actors[0].master_address.remote())

        @ray_local.remote(num_cpus=0)
        def receive(host, port):
            from rollout.weights import BroadcastTransport
            r = BroadcastTransport("gloo", host, port, rank=1, world_size=2)
            r.connect()
            got = {k: v.clone() for k, v in r.recv_stream()}
            r.close()
            return got

        got_ref = receive.remote(host, port)
        group.wait([a.connect_weight_broadcast.remote("gloo", host, port, 2, 60.0, 64 << 10)
                    for a in group.actors])
        sent = group.wait(group.push_weights_refs("broadcast"))
        got = ray_local.get(got_ref)
    finally:
        group.shutdown()
    assert whole.get("lm_head.weight") is None or "lm_head.weight" not in got  # tied: sent once
    _assert_bit_equal(got, {k: v for k, v in whole.items() if k in got})
    assert set(whole) - set(got) <= {"lm_head.weight"}
    assert sent[0] >= sum(v.numel() * v.element_size() for v in got.values()) and sent[1] is None
