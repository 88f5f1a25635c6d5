"""The memory plan: what one learner rank and one rollout engine hold at
their peak, estimated from a model's config.json and the recipe alone.

`asymptote launch RECIPE --dry-run` prints it (rl/dry_run_memory.py) so a
recipe that cannot fit its GPUs is refused before a cluster is booked. It
reads no weights and imports only the standard library: the dry run stays
fast on a laptop. Its constants are first guesses, to be calibrated against
measured peaks; each is a module-level name below with where it comes from.

Notation: P parameters (P_root: embedding, final norm and an untied LM head;
P_layer: one decoder layer), N = learner.ranks, L layers, h hidden_size,
f intermediate_size, V vocab_size, T = learner.micro_batch_tokens (real
tokens with packing on, the same budget in padded tokens with it off; the
longest sequence, rollout.engine.max_model_len, when that is longer: it gets
a micro-batch of its own),
b = bytes of learner.dtype (float32 4, bfloat16 2). One learner rank, FSDP2
full sharding, at the peak of a micro-batch's backward pass:

    master parameters    4 P / N                     float32 shards
    gradients            4 P / N                     float32 shards
    AdamW state          8 P / N                     exp_avg, exp_avg_sq
        (these three on the host instead with learner.offload, reported apart)
    unsharded parameters b (P_root + 2 P_layer)      root gathered for the step,
                                                     current + prefetched layer
                                                     (counted at N = 1 too:
                                                     FSDP2 still gathers into a
                                                     buffer of its own)
    layer gradient       4 P_layer                   one layer's float32 gradient
                                                     before its reduce-scatter
    root gradient        2 V h 4                     the LM head's (or tied
                                                     embedding's) unsharded
                                                     gradient, accumulating, and
                                                     one more of its size (a
                                                     head chunk's, the embedding's)
    activations          T L a_layer                 without checkpointing
                         T L h b + T a_layer         with activation_checkpointing
    LM head              K_FULL T V 4                logprob_head 'full'
                         K_CHUNK C V 4               'chunked', C = head_chunk_tokens
                       + 2 V h 4                     fp32 head under bfloat16: a
                                                     float32 copy of the head
                                                     weight and its gradient

    a_layer = b (C_H h + C_F f + C_Q heads head_dim + C_KV kv_heads head_dim)

The parts after the three sharded ones are the backward pass's transients.
The optimizer step has its own: foreach AdamW on a GPU makes one float32
temporary per parameter shard (sqrt of exp_avg_sq), 4 P / N; the CPU's
per-parameter AdamW two of the largest shard's size, 2 x 4 V h / N. Where
the step's exceed the backward's, the plan adds the difference as a part
(never with offload: the step then runs on the host).

One rollout engine (vLLM on a GPU): weights P x bytes(rollout.engine.dtype),
a fixed ENGINE_RESERVE_GIB for activations and workspace, and the KV cache in
what is left of device x gpu_memory_utilization, at 2 L kv_heads head_dim x
bytes per token. vLLM needs one max_model_len sequence to fit and otherwise
runs fewer sequences at once than max_num_seqs: the plan refuses the first and
warns about the second. On a CPU engine the cache is rollout.engine.kv_cache_gib.

Verdicts: a learner rank over its device's memory is refused, over
WARN_FRACTION of it warned about; plans against the host's memory (roles
without GPUs) only warn.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

GIB = 2**30
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}

# Elements one decoder layer saves per token for backward (Llama/Qwen2 layer,
# PyTorch SDPA, HF modeling code), by the width they scale with:
C_H = 5  # hidden: each RMSNorm's input and its output (2 norms x 2), and the residual stream
C_F = 4  # intermediate: gate_proj and up_proj outputs, the SiLU output, the product into down_proj
C_Q = 4  # heads x head_dim: q_proj output, q after rotary (SDPA's saved query), SDPA's output,
#          o_proj's input (the output made contiguous)
C_KV = 3  # kv_heads x head_dim: k_proj and v_proj outputs (v is SDPA's saved value), k after rotary
# Left out (small beside the parts counted, or not on the learner's paths): SDPA's logsumexp
# (heads float32 per token), the rotary cos/sin, RMSNorm's float32 upcast of a bfloat16 input
# (counted at b bytes above), Qwen3's q_norm/k_norm saves, key/value repeated to all heads when a
# mask sends SDPA through repeat_kv, and the runtime's own few hundred MB. Measured against one
# learner step at the Qwen2.5-0.5B shape in bench/bench_memory.py --learner (bench/RESULTS.md).

K_FULL = 4  # 'full' head: float32 logits, the temperature-scaled copy, log-softmax output, its gradient
K_CHUNK = 3  # 'chunked' head: one chunk's float32 logits, the scaled copy, log-softmax backward's temporary
ENGINE_RESERVE_GIB = 2.0  # a guess: vLLM's activations, sampler and CUDA graphs besides weights and KV
WARN_FRACTION = 0.9  # warn when a plan takes more than this share of the memory it is checked against

# Device sizes the verdict names (GiB as the plan counts them); others are "<n> GB device".
KNOWN_DEVICES = {40.0: "A100 40 GB", 80.0: "H100 80 GB", 141.0: "H200 141 GB"}


@dataclass(frozen=True)
class ModelShape:
    """What the plan reads from a dense decoder-only model's config.json."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool = False
    qkv_bias: bool = False  # Qwen2: q/k/v projections carry biases
    o_bias: bool = False  # Llama/Qwen3 with attention_bias: o_proj too
    mlp_bias: bool = False
    qk_norm: bool = False  # Qwen3: RMSNorm over each head's query and key

    @classmethod
    def from_config(cls, config: dict) -> "ModelShape":
        """The shape of an HF config.json dict. ValueError names what is
        missing, or a mixture-of-experts model the plan does not cover."""
        if any(k in config for k in ("num_experts", "n_routed_experts", "num_local_experts")):
            raise ValueError("a mixture-of-experts model (the plan covers dense models)")
        need = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
        missing = [k for k in need if config.get(k) is None]
        if missing:
            raise ValueError(f"config.json has no {', '.join(missing)}")
        hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
        kind = config.get("model_type", "")
        attention_bias = config.get("attention_bias")
        return cls(
            hidden=hidden, intermediate=int(config["intermediate_size"]),
            layers=int(config["num_hidden_layers"]), heads=heads,
            kv_heads=int(config.get("num_key_value_heads") or heads),
            head_dim=int(config.get("head_dim") or hidden // heads), vocab=int(config["vocab_size"]),
            tied=bool(config.get("tie_word_embeddings", False)),
            qkv_bias=bool(attention_bias) if attention_bias is not None else kind == "qwen2",
            o_bias=bool(attention_bias), mlp_bias=bool(config.get("mlp_bias", False)),
            qk_norm=kind == "qwen3")

    @property
    def q_width(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_width(self) -> int:
        return self.kv_heads * self.head_dim

    def layer_params(self) -> dict[str, int]:
        """One decoder layer's parameters by component."""
        h, q, kv, f = self.hidden, self.q_width, self.kv_width, self.intermediate
        return {
            "q/k/v/o projections": 2 * h * q + 2 * h * kv,
            "attention biases": (q + 2 * kv if self.qkv_bias else 0) + (h if self.o_bias else 0),
            "q_norm/k_norm": 2 * self.head_dim if self.qk_norm else 0,
            "MLP gate/up/down": 3 * h * f + ((2 * f + h) if self.mlp_bias else 0),
            "RMSNorms": 2 * h,
        }

    def params(self) -> dict[str, int]:
        """The whole model's parameters by component."""
        return {
            "embedding": self.vocab * self.hidden,
            "decoder layers": self.layers * sum(self.layer_params().values()),
            "final norm": self.hidden,
            "LM head": 0 if self.tied else self.vocab * self.hidden,
        }

    @property
    def total_params(self) -> int:
        return sum(self.params().values())

    @property
    def layer_total(self) -> int:
        return sum(self.layer_params().values())

    @property
    def root_params(self) -> int:
        """The root FSDP module's own parameters: embedding, final norm, LM head."""
        return self.total_params - self.layers * self.layer_total

    def layer_activation_bytes(self, dtype_bytes: int) -> int:
        """a_layer: bytes one decoder layer saves per token for its backward pass."""
        return dtype_bytes * (C_H * self.hidden + C_F * self.intermediate
                              + C_Q * self.q_width + C_KV * self.kv_width)

    def kv_bytes_per_token(self, dtype_bytes: int) -> int:
        return 2 * self.layers * self.kv_width * dtype_bytes


@dataclass
class MemoryPlan:
    """One role's memory at its peak: named parts in bytes, the memory it is
    checked against, and the verdict."""

    title: str
    parts: list[tuple[str, float]]
    capacity: Optional[float] = None  # bytes; None: unknown, no verdict
    capacity_name: str = ""  # "H100 80 GB", "this machine's MemTotal"
    level: Literal["fits", "warn", "refuse", "unknown"] = "unknown"
    verdict: str = ""
    host_parts: list[tuple[str, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    refusal: Optional[str] = None  # the one-line error when level is 'refuse'

    @property
    def total(self) -> float:
        return sum(b for _, b in self.parts)

    def describe(self) -> str:
        width = max(len(n) for n, _ in self.parts + self.host_parts + [("total", 0)])
        lines = [self.title + ":"]
        lines += [f"  {n:<{width}}  {gib(b):>8} GiB" for n, b in self.parts]
        lines.append(f"  {'total':<{width}}  {gib(self.total):>8} GiB  {self.verdict}")
        lines += [f"  {n:<{width}}  {gib(b):>8} GiB  (host)" for n, b in self.host_parts]
        lines += [f"  {note}" for note in self.notes]
        return "\n".join(lines)


def gib(b: float) -> str:
    """Bytes in GiB: two decimals, four below 0.01 (tiny models)."""
    v = b / GIB
    return f"{v:.2f}" if v >= 0.01 or v == 0 else f"{v:.4f}"


def device_name(device_gib: float) -> str:
    return KNOWN_DEVICES.get(float(device_gib), f"{device_gib:g} GB device")


def judge(plan: MemoryPlan, refuse: bool = True) -> MemoryPlan:
    """Set the verdict of `plan` from its total against its capacity: over it
    'refuse' (or only 'warn' when not `refuse`), over WARN_FRACTION 'warn'."""
    if plan.capacity is None:
        plan.level, plan.verdict = "unknown", plan.verdict or "(GPU memory unknown: not checked)"
        return plan
    used, cap = plan.total / GIB, plan.capacity / GIB
    if plan.total > plan.capacity:
        plan.level = "refuse" if refuse else "warn"
        plan.verdict = f"does not fit {plan.capacity_name}: {used:.1f} of {cap:.1f} GiB"
    elif plan.total > WARN_FRACTION * plan.capacity:
        plan.level = "warn"
        plan.verdict = f"tight on {plan.capacity_name}: {used:.1f} of {cap:.1f} GiB (over {WARN_FRACTION:.0%})"
    else:
        plan.level = "fits"
        plan.verdict = f"fits {plan.capacity_name}: {used:.1f} of {cap:.1f} GiB"
    return plan


def micro_batch_tokens(learner, longest_sequence: int = 0) -> int:
    """T: the token budget, or the longest sequence when that is longer."""
    return max(learner.micro_batch_tokens, longest_sequence)


def learner_parts(shape: ModelShape, learner, fp32_lm_head: bool, on_gpu: bool = True,
                  longest_sequence: int = 0) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """(device parts, host parts) of one learner rank, in bytes. `learner` is
    an rl.learner.config.LearnerConfig; offload moves the sharded state to
    the host only on a GPU (a no-op on CPU)."""
    p, n, b = shape.total_params, learner.ranks, DTYPE_BYTES[learner.dtype]
    t, v, h = micro_batch_tokens(learner, longest_sequence), shape.vocab, shape.hidden
    a_layer = shape.layer_activation_bytes(b)
    sharded = [("master parameters (float32 shard)", 4 * p / n), ("gradients (float32 shard)", 4 * p / n),
               ("AdamW state (float32 shard)", 8 * p / n)]
    unsharded = b * (shape.root_params + 2 * shape.layer_total)
    device = [(f"unsharded parameters ({learner.dtype}: root + 2 layers)", unsharded),
              ("one layer's float32 gradient", 4 * shape.layer_total)]
    if learner.activation_checkpointing:
        device += [("activations (layer inputs)", t * shape.layers * h * b),
                   ("activations (layer recomputed)", t * a_layer)]
    else:
        device.append((f"activations ({shape.layers} layers)", t * shape.layers * a_layer))
    if learner.logprob_head == "full":
        device.append(("LM head (full logits)", K_FULL * t * v * 4))
    else:
        chunk = learner.head_chunk_tokens
        device.append((f"LM head ({chunk}-token chunk)", K_CHUNK * chunk * v * 4))
    if fp32_lm_head and learner.dtype != "float32":
        device.append(("float32 head copy + gradient", 2 * v * h * 4))
    device.append(("root gradient, unsharded, + one of its size (float32)", 2 * v * h * 4))
    if learner.offload and on_gpu:
        return device, sharded
    step = 4 * p / n if on_gpu else 2 * 4 * v * h / n
    backward = sum(size for _, size in device)
    if step > backward:
        device.append(("optimizer step's temporaries beyond the backward's", step - backward))
    return sharded + device, []


def learner_plan(shape: ModelShape, learner, fp32_lm_head: bool, device_gib: Optional[float],
                 on_gpu: bool = True, longest_sequence: int = 0) -> MemoryPlan:
    """One learner rank against one device of `device_gib` GiB (None: not checked)."""
    device, host = learner_parts(shape, learner, fp32_lm_head, on_gpu, longest_sequence)
    t = micro_batch_tokens(learner, longest_sequence)
    tokens = f"{t}-token" if t == learner.micro_batch_tokens else f"{t}-token (the longest sequence)"
    ckpt = "on" if learner.activation_checkpointing else "off"
    head = f"{learner.logprob_head} head"
    packed = "packed" if learner.packing else "padded"
    where = "one GPU" if on_gpu else "CPU"
    plan = MemoryPlan(
        f"learner rank (1 of {learner.ranks}, {where}, FSDP2 full shard, {learner.dtype}, "
        f"{tokens} {packed} micro-batches, activation checkpointing {ckpt}, {head})",
        device, host_parts=host)
    if device_gib is not None:
        share = min(1.0, learner.gpus_per_rank)  # ranks sharing a GPU share its memory
        plan.capacity = device_gib * share * GIB
        plan.capacity_name = device_name(device_gib) + (f" x {share:g}" if share < 1 else "")
    if not on_gpu:
        plan.verdict = "(checked with this machine's other roles below)"
    judge(plan, refuse=on_gpu)
    if plan.level == "refuse":
        plan.refusal = (f"memory: a learner rank needs {plan.total / GIB:.1f} GiB and the device has "
                        f"{plan.capacity / GIB:.1f} GiB ({_learner_hint(plan, learner)})")
    return plan


def _learner_hint(plan: MemoryPlan, learner) -> str:
    """The largest group of parts (sharded state, activations, LM head) and
    the switch that shrinks it."""
    groups: dict[str, float] = {}
    for name, size in plan.parts:
        group = ("sharded state" if "shard)" in name else "activations" if name.startswith("activations")
                 else "LM head" if "head" in name else "unsharded parameters and gradient")
        groups[group] = groups.get(group, 0.0) + size
    group, size = max(groups.items(), key=lambda gs: gs[1])
    fix = {"sharded state": "more learner.ranks or learner.offload=true",
           "activations": ("learner.activation_checkpointing=true or fewer learner.micro_batch_tokens"
                           if not learner.activation_checkpointing else "fewer learner.micro_batch_tokens"),
           "LM head": ("learner.logprob_head=chunked" if learner.logprob_head == "full"
                       else "a smaller learner.head_chunk_tokens")}.get(group, "more learner.ranks")
    return f"largest: {group} {size / GIB:.1f} GiB; try {fix}"


@dataclass(frozen=True)
class KvFit:
    """What a rollout engine's KV cache holds."""

    bytes_per_token: int
    tokens: int  # KV tokens that fit
    full_sequences: int  # sequences of max_model_len that fit at once
    concurrency: int  # min(full_sequences, max_num_seqs)


def kv_fit(shape: ModelShape, engine, device_gib: float) -> tuple[float, float, KvFit]:
    """(weights bytes, KV bytes, the fit) of one vLLM engine on a device of
    `device_gib` GiB: the cache takes what gpu_memory_utilization leaves
    after the weights and ENGINE_RESERVE_GIB. rollout/config.py has no
    tensor-parallel size (an engine holds all its weights on one GPU)."""
    b = DTYPE_BYTES[engine.dtype]
    weights = shape.total_params * b
    budget = device_gib * engine.gpu_memory_utilization * GIB
    kv = max(0.0, budget - weights - ENGINE_RESERVE_GIB * GIB)
    per_token = shape.kv_bytes_per_token(b)
    tokens = int(kv // per_token)
    full = tokens // engine.max_model_len
    return weights, kv, KvFit(per_token, tokens, full, min(full, engine.max_num_seqs))


def engine_plan(shape: ModelShape, engine, device_gib: Optional[float]) -> MemoryPlan:
    """One GPU rollout engine (`engine`: rollout.config.EngineConfig)."""
    util = engine.gpu_memory_utilization
    weights = shape.total_params * DTYPE_BYTES[engine.dtype]
    reserve = ENGINE_RESERVE_GIB * GIB
    title = f"rollout engine (one GPU, vLLM, {engine.dtype}, gpu_memory_utilization {util:g})"
    head = [(f"weights ({engine.dtype})", weights), ("activations/workspace reserve (a guess)", reserve)]
    if device_gib is None:
        per_token = shape.kv_bytes_per_token(DTYPE_BYTES[engine.dtype]) / 1024
        return judge(MemoryPlan(title, head, notes=[f"KV cache: {per_token:g} KiB per token; "
                                                    f"its size needs the GPU memory"]))
    _, kv, fit = kv_fit(shape, engine, device_gib)
    budget = device_gib * util * GIB
    plan = MemoryPlan(title, head + [("KV cache", kv)], capacity=budget, capacity_name=device_name(device_gib))
    plan.notes.append(f"KV cache: {fit.tokens:,} tokens at {fit.bytes_per_token / 1024:g} KiB each = "
                      f"{fit.full_sequences} sequences of max_model_len {engine.max_model_len} at once "
                      f"(max_num_seqs {engine.max_num_seqs})")
    used = (weights + reserve) / GIB
    if weights + reserve > budget:
        plan.level, plan.verdict = "refuse", f"does not fit: weights + reserve {used:.1f} of {budget / GIB:.1f} GiB"
        plan.refusal = (f"memory: a rollout engine's weights + reserve take {used:.1f} GiB of its "
                        f"{budget / GIB:.1f} GiB budget ({device_gib:g} GiB x gpu_memory_utilization {util:g})")
    elif fit.full_sequences < 1:
        plan.level, plan.verdict = "refuse", f"does not fit one sequence of max_model_len {engine.max_model_len}"
        plan.refusal = (f"memory: a rollout engine's KV cache holds {fit.tokens:,} tokens, less than one "
                        f"sequence of rollout.engine.max_model_len {engine.max_model_len} "
                        f"(raise gpu_memory_utilization or lower max_model_len)")
    else:
        plan.level = "fits"
        plan.verdict = (f"fits {plan.capacity_name}: {plan.total / GIB:.1f} of {device_gib:.1f} GiB "
                        f"(gpu_memory_utilization {util:g})")
        if fit.full_sequences < engine.max_num_seqs:
            plan.level = "warn"
            plan.notes.append(f"warning: {fit.concurrency} sequences of max_model_len fit at once, fewer than "
                              f"max_num_seqs {engine.max_num_seqs} (vLLM runs fewer at once when they are that long)")
    return plan


def cpu_engine_plan(shape: ModelShape, engine) -> MemoryPlan:
    """One CPU rollout engine: weights and its kv_cache_gib (checked with the host)."""
    weights = shape.total_params * DTYPE_BYTES[engine.dtype]
    parts = [(f"weights ({engine.dtype})", weights), ("KV cache (kv_cache_gib)", engine.kv_cache_gib * GIB)]
    return MemoryPlan(f"rollout engine (CPU, vLLM, {engine.dtype})", parts,
                      verdict="(checked with this machine's other roles below)")
