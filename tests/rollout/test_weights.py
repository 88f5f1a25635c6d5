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

        def send_pieces(self, specs, pieces):
            return self.t.send_stream(specs, iter(pieces))

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
    peers = [actor_cls.remote("broadcast", backend="gloo", host="127.0.0.1", port=port,
                              rank=r, world_size=world) for r in range(world)]
    for version in (0, 1):  # the group is reused for a second update
        sent = peers[0].send.remote(_state(version))
        got = ray_local.get([p.recv.remote() for p in peers[1:]])
        assert ray_local.get(sent) is None
        for g in got:
            _assert_bit_equal(g, _state(version))
    ray_local.get([p.close.remote() for p in peers])
    with pytest.raises(ValueError):
        make_transport("shm")


def _pieces(state: dict, sources: int) -> list[list]:
    """Each source's piece of each tensor, as FSDP2's Shard(0) cuts it
    (blocks of ceil(rows / sources) leading rows; the last ones may be empty);
    a 0-dim tensor goes whole from source 0."""
    out = [[] for _ in range(sources)]
    for t in state.values():
        if t.dim() == 0:
            for s in range(sources):
                out[s].append(t if s == 0 else None)
            continue
        rows = -(-t.shape[0] // sources)
        for s in range(sources):
            out[s].append(t[s * rows:(s + 1) * rows])
    return out


def test_broadcast_assembles_every_sources_rows(ray_local, actor_cls):
    """Two sources each send their block of rows; two receivers get the whole
    tensors bit for bit (ragged, empty and 0-dim pieces included). Pieces
    that do not add up to a tensor are refused by name."""
    from rollout.weights import specs_of

    state = {**_state(5), "one_row": torch.arange(6.0).reshape(1, 6)}  # source 1 holds no row of it
    specs = specs_of(state)
    port, world = free_port(), 4
    peers = [actor_cls.remote("broadcast", backend="gloo", host="127.0.0.1", port=port, rank=r,
                              world_size=world, sources=2, timeout_s=60) for r in range(world)]
    pieces = _pieces(state, 2)
    sent = [p.send_pieces.remote(specs, pieces[s]) for s, p in enumerate(peers[:2])]
    got = ray_local.get([p.recv.remote() for p in peers[2:]])
    assert sum(ray_local.get(sent)) == sum(s.nbytes for s in specs)
    for g in got:
        _assert_bit_equal(g, state)
    short = [pieces[0], [None] * len(specs)]  # source 1 sends nothing: the rows it holds are missing
    sent = [p.send_pieces.remote(specs, short[s]) for s, p in enumerate(peers[:2])]
    refused = [p.recv.remote() for p in peers[2:]]
    for ref in refused:
        with pytest.raises(Exception, match="pieces of model.embed_tokens.weight make 16384 bytes"):
            ray_local.get(ref)
    for p in peers:  # the sources are left waiting on receivers that gave up
        ray_local.kill(p)


def test_send_stream_checks_each_tensor_against_its_spec():
    from rollout.weights import TensorSpec, specs_of

    specs = specs_of(_state(0))
    assert specs[0] == TensorSpec("model.embed_tokens.weight", torch.float32, (64, 128))
    assert specs[0].nbytes == 64 * 128 * 4 and specs[1].nbytes == 128 * 128 * 2
    t = BroadcastTransport("gloo", "127.0.0.1", free_port(), rank=0, world_size=1)
    try:
        with pytest.raises(ValueError, match="q_proj"):  # a float32 tensor where bfloat16 was announced
            t.send_stream(specs, iter([_state(0)[specs[0].name], torch.zeros(128, 128)]))
        sent = t.send_stream(specs, iter(_state(0).values()))
        assert sent == sum(s.nbytes for s in specs)
    finally:
        t.close()


@pytest.mark.parametrize("ranks", [1, 2])
def test_learner_streams_exactly_its_full_state_dict(ray_local, tiny_random_model, ranks):
    """Each FSDP2 rank sends its shard of every parameter; the receiver gets
    the weights the whole-dict gather ('safetensors') returns, bit for bit,
    and the tied LM head from neither (the engine re-adds it); with two ranks
    each sent about half."""
    from rl.algo.config import AlgoConfig
    from rl.learner.config import LearnerConfig
    from rl.learner.group import LearnerGroup
    from rollout.weights import SafetensorsTransport

    group = LearnerGroup(LearnerConfig(ranks=ranks, cpus_per_rank=0.5), AlgoConfig(), tiny_random_model,
                         temperature=1.0, seed=0)
    try:
        whole = SafetensorsTransport().unpack(group.wait(group.push_weights_refs("safetensors"))[0])
        host, port = ray_local.get(group.actors[0].master_address.remote())

        @ray_local.remote(num_cpus=0)
        def receive(host, port, ranks):
            from rollout.weights import BroadcastTransport
            r = BroadcastTransport("gloo", host, port, rank=ranks, world_size=ranks + 1, sources=ranks)
            r.connect()
            got = {k: v.clone() for k, v in r.recv_stream()}
            r.close()
            return got

        got_ref = receive.remote(host, port, ranks)
        group.wait([a.connect_weight_broadcast.remote("gloo", host, port, ranks + 1, 60.0)
                    for a in group.actors])
        sent = group.wait(group.push_weights_refs("broadcast"))
        got = ray_local.get(got_ref)
    finally:
        group.shutdown()
    assert "lm_head.weight" not in got and "lm_head.weight" not in whole  # tied: sent once
    _assert_bit_equal(got, whole)
    total = sum(v.numel() * v.element_size() for v in got.values())
    assert sum(sent) == total and max(sent) < (0.6 if ranks == 2 else 1.01) * total  # no rank sends the whole
