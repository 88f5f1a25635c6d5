"""One learner rank: an FSDP2-sharded model, its optimizer, and the train step.

A `LearnerRank` lives in its own Ray actor; `LearnerGroup` starts N of them
and drives them in lock-step. The train step reads top to bottom: plan
micro-batches, forward/backward each, clip, step, reduce metrics.

Precision (`learner.dtype`, `model.fp32_lm_head`; docs/precision.md): the
model is loaded in float32, which stays the dtype of the master weights, the
gradients FSDP hands the optimizer and the AdamW state. With bfloat16, FSDP2's
`MixedPrecisionPolicy` gathers parameters in bfloat16 for forward and backward
and reduce-scatters gradients in float32. With the fp32 head on, the LM head's
matmul runs in float32 on upcast operands (bfloat16 hidden states and head
weight, float32 products and logits), tied or untied alike. This departs on
purpose from giving an untied head a float32 FSDP group of its own: vLLM's
`head_dtype=float32` computes exactly this (its weights are held in the model
dtype and upcast), while a float32-weight head here would use weights the
engines never see (theirs are rounded to bfloat16); it also needs no second
path for tied heads. Log-probs are computed in float32 whatever the dtype.

Tested on CPU over gloo (tests/rl/test_precision.py): bfloat16 all-gathers and
float32 reduce-scatters work on gloo as they are; observed dtypes inside the
running model, gradients reaching a tied head's shared weight, and the
log-prob error against a float32 reference with the head in float32 and in
bfloat16. Not run: nccl/CUDA (the same code with a different backend name;
its speed and memory, including the transient float32 copy of the head weight
per forward, are unmeasured).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard

from rl.algo.batch import TrainBatch, padded_fraction, plan_microbatches
from rl.algo.config import AlgoConfig
from rl.algo.losses import LossInputs, clipped_mask, policy_loss
from rl.checkpoint_read import read_dcp, read_rng_state, set_rng_state, write_rng_state
from rl.learner.config import LearnerConfig
from rl.learner.dist import ParallelDims, init_parallel


class LearnerRank:
    def __init__(self, rank: int, world: int, cfg: LearnerConfig, algo: AlgoConfig,
                 model_path: str, temperature: float, seed: int = 0, deterministic: bool = False,
                 fp32_lm_head: bool = False):
        self.dims = ParallelDims(rank, world, _backend(cfg))
        self.cfg, self.algo, self.fp32_lm_head = cfg, algo, fp32_lm_head
        self.model_path, self.temperature, self.seed = model_path, temperature, seed
        self.version = 0  # optimizer steps taken = policy version of the weights
        self.weight_sender = None  # this rank's end of the weight transport (connect_weights)
        self._store = None  # rank 0's rendezvous store (open_rendezvous)
        self._weight_store = None  # rank 0: the weight group's store, until connect_weights takes it
        self.busy_s = 0.0  # seconds spent training and pushing weights
        self._saving = None  # (path, future, error) of a checkpoint written in the background
        self._ckpt_group = None  # the gloo group DCP's background writes coordinate over
        if self.dims.device_type == "cpu":
            torch.set_num_threads(cfg.threads_per_rank)
        if deterministic:
            torch.use_deterministic_algorithms(True)

    # ---- set-up -----------------------------------------------------------
    def open_rendezvous(self) -> tuple[str, int]:
        """Rank 0: bind the learner group's store (core.ports) and say where it is."""
        import ray

        from core.ports import host_store
        host = ray.util.get_node_ip_address()
        self._store = host_store(host, self.dims.world)
        return host, self._store.port

    def setup(self, rendezvous: tuple[str, int]) -> int:
        """Join the group at rank 0's `rendezvous` (host, port), load and shard the model."""
        from transformers import AutoModelForCausalLM

        from rl.learner import packing
        from rl.learner.scoring import TokenScorer

        master_addr, master_port = rendezvous
        self.mesh = init_parallel(self.dims, master_addr, master_port, store=self._store)
        torch.manual_seed(self.seed)
        attn = {"attn_implementation": packing.register()} if self.cfg.packing else {}
        model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=torch.float32, **attn)
        model.to(self.dims.device_type)
        if self.cfg.activation_checkpointing:  # each decoder layer recomputed in backward (non-reentrant)
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        _shard(model, self.mesh, self.cfg, self.fp32_lm_head)
        self.model = model
        fp32_head = self.fp32_lm_head and self.cfg.dtype != "float32"
        self.scorer = TokenScorer(model, self.cfg, self.temperature, self.dims.device_type, fp32_head)
        self.pad_id = model.config.pad_token_id or 0
        self.optim = torch.optim.AdamW(
            model.parameters(), lr=self.cfg.lr, betas=self.cfg.betas,
            eps=self.cfg.adam_eps, weight_decay=self.cfg.weight_decay,
        )
        warm = self.cfg.warmup_steps
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.optim, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0)
        return sum(p.numel() for p in model.parameters())

    # ---- training ---------------------------------------------------------
    def train_step(self, batch: Optional[TrainBatch]) -> dict[str, float]:
        """One optimizer step on this rank's share of `batch` (None: no update,
        only the version advances so the pipeline's staleness clock moves)."""
        t0 = time.perf_counter()
        try:
            return self._train_step(batch, t0)
        finally:
            self.busy_s += time.perf_counter() - t0

    def _train_step(self, batch: Optional[TrainBatch], t0: float) -> dict[str, float]:
        self.version += 1
        if batch is None:
            return {"train/skipped": 1.0, "learner/version": float(self.version)}
        sums = torch.zeros(_N_SUMS, dtype=torch.float64)
        self.model.train()
        self.optim.zero_grad(set_to_none=True)
        plan = self._plan(batch)
        for sub, inp, loss in self._micro_losses(batch, plan):
            (loss * self.dims.world).backward()  # FSDP averages gradients over ranks
            sums += _step_sums(inp, sub, loss, self.version - 1, self.algo)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        if hasattr(grad_norm, "full_tensor"):
            grad_norm = grad_norm.full_tensor()
        self.optim.step()
        self.sched.step()
        self.optim.zero_grad(set_to_none=True)  # free the gradients until the next backward (weight sync, probes)
        sums = self._all_reduce(sums)
        out = _metrics(sums, float(grad_norm), self.optim.param_groups[0]["lr"],
                       self.version, time.perf_counter() - t0)
        return {**out, **self._padding(batch, plan)}

    # ---- weights out (rollout.weights: what each transport sends) -------------
    def host_weight_group(self, backend: str, world: int, timeout_s: float):
        """Rank 0, before `connect_weights` of a collective transport: bind a
        new weight group's store and say where it is (a `WeightGroup`).
        `world` counts the learner's ranks, every one a source, and the workers."""
        import ray

        from rollout.weights import host_weight_group
        group, self._weight_store = host_weight_group(backend, ray.util.get_node_ip_address(), world,
                                                      self.dims.world, timeout_s)
        return group

    def connect_weights(self, transport: str, group) -> bool:
        """(Re)build this rank's sender, joining `group` (None for a transport
        without one); a replaced worker means a new group."""
        from rollout.weights import make_transport
        if self.weight_sender is not None:
            self.weight_sender.close()
        store, self._weight_store = self._weight_store, None
        self.weight_sender = make_transport(transport).sender(group, self.dims.rank, store)
        return True

    def push_weights(self) -> Any:
        """Collective: ship the weights through this rank's sender."""
        t0 = time.perf_counter()
        try:
            return self.weight_sender.send(self.model)
        finally:
            self.busy_s += time.perf_counter() - t0

    def weight_specs(self) -> list:
        """Names, dtypes and full shapes of the weights a push sends."""
        from rollout.weights import weight_specs
        return weight_specs(self.model)

    # ---- checkpoints ------------------------------------------------------
    def save_checkpoint(self, path: str, background: bool = False) -> None:
        """Collective. Model + optimizer as DCP shards, this rank's RNG states
        (JSON, rl.checkpoint_read), and (rank 0) the version and LR schedule.
        A failed write (disk full) raises on every rank, so no rank is left
        waiting for another.

        `background`: the shards are copied to memory now and written by a
        thread while training goes on (DCP `async_save`, coordinating over a
        gloo group of its own so that its collectives never meet training's,
        as torchtitan does); `finish_checkpoint` waits for them and raises
        what failed. Run on CPU over gloo; on GPU the copy is to (pageable)
        CPU memory, not run here."""
        self.finish_checkpoint()  # one write at a time
        Path(path).mkdir(parents=True, exist_ok=True)  # DCP makes it only once its writer thread plans
        model_sd, optim_sd = get_state_dict(self.model, self.optim)
        state = {"model": model_sd, "optim": optim_sd}
        if background:
            if self._ckpt_group is None:
                self._ckpt_group = dist.new_group(backend="gloo")
            future = dcp.async_save(state, checkpoint_id=path, process_group=self._ckpt_group)
        else:
            dcp.save(state, checkpoint_id=path)  # raises on all ranks alike
        error = None
        try:
            write_rng_state(path, self.dims.rank)
            if self.dims.rank == 0:
                extra = {"version": self.version, "sched": self.sched.state_dict(), "world": self.dims.world}
                Path(path, "learner.json").write_text(json.dumps(extra))
        except OSError as err:
            error = err
        if background:
            self._saving = (path, future, error)
            return
        self._agree(path, error)

    def finish_checkpoint(self) -> None:
        """Collective: wait for the checkpoint being written in the background,
        if any; raises on every rank if any rank's part failed."""
        if self._saving is None:
            return
        (path, future, error), self._saving = self._saving, None
        try:
            future.result()
        except BaseException as err:  # noqa: BLE001 - DCP's CheckpointException is a BaseException
            error = error or err
        self._agree(path, error)

    def _agree(self, path: str, error: Optional[BaseException]) -> None:
        failed = self._all_reduce(torch.tensor([0.0 if error is None else 1.0]))
        if error is not None:
            raise error
        if float(failed) > 0:
            raise OSError(f"another learner rank failed to write its part of {path}")

    def load_checkpoint(self, path: str) -> int:
        """Collective. Reads nothing that can name code (rl.checkpoint_read:
        the DCP metadata and non-tensor entries through an allowlist, RNG
        states from JSON or, in an older checkpoint, a weights-only load)."""
        model_sd, optim_sd = get_state_dict(self.model, self.optim)
        state = {"model": model_sd, "optim": optim_sd}
        read_dcp(state, path)
        set_state_dict(self.model, self.optim, model_state_dict=state["model"], optim_state_dict=state["optim"])
        extra = json.loads(Path(path, "learner.json").read_text())
        self.version = extra["version"]
        self.sched.load_state_dict(extra["sched"])
        rng = read_rng_state(path, self.dims.rank)
        if rng is not None:
            set_rng_state(rng)
        return self.version

    def greedy(self, prompt_ids: list[list[int]], max_new_tokens: int, eos_id: int) -> list[list[int]]:
        """Greedy completions of `prompt_ids` under the current weights (no KV
        cache: a check, not a generator). Collective: all ranks call."""
        out = []
        with torch.no_grad():
            for ids in prompt_ids:
                seq = list(ids)
                for _ in range(max_new_tokens):
                    x = torch.tensor([seq], device=self.dims.device_type)
                    nxt = int(self.model(input_ids=x).logits[0, -1].argmax())
                    seq.append(nxt)
                    if nxt == eos_id:
                        break
                out.append(seq[len(ids):])
        return out

    def eval_loss(self, batch: TrainBatch) -> float:
        """The loss of `batch` under the current weights, no update (tests,
        resume checks). Collective: all ranks call with the same batch."""
        total = torch.zeros(1, dtype=torch.float64)
        with torch.no_grad():
            for _, _, loss in self._micro_losses(batch, self._plan(batch)):
                total += loss.double().cpu()
        return float(self._all_reduce(total))

    def _plan(self, batch: TrainBatch) -> list[list[list[int]]]:
        return plan_microbatches(batch.lengths_b.tolist(), self.dims.world, self.cfg.micro_batch_tokens,
                                 packed=self.cfg.packing)

    def _padding(self, batch: TrainBatch, plan: list[list[list[int]]]) -> dict[str, float]:
        """`train/pad_frac`: padding's share of the token slots this step
        computed; `train/pad_frac_padded`: the same had the batch been padded."""
        lengths = batch.lengths_b.tolist()
        padded = plan_microbatches(lengths, self.dims.world, self.cfg.micro_batch_tokens) if self.cfg.packing else plan
        return {"train/pad_frac": padded_fraction(plan, lengths, self.cfg.packing),
                "train/pad_frac_padded": padded_fraction(padded, lengths, False)}

    def _micro_losses(self, batch: TrainBatch, plan: list[list[list[int]]]):
        """This rank's micro-batches of `batch` with their loss inputs and
        weighted loss (empty ones as zero-weight dummies, so every rank runs
        the same number of FSDP passes)."""
        for rows in plan[self.dims.rank]:
            sub = batch.select(rows) if rows else _dummy(batch, self.pad_id)
            lp = self.scorer(sub.input_ids_bt, sub.lengths_b)
            dev = lp.device
            inp = LossInputs(lp, sub.gen_logprobs_bt.to(dev), sub.advantages_b.to(dev), sub.mask_bt.to(dev))
            yield sub, inp, policy_loss(self.algo.loss, inp, self.algo, sub.token_weights_bt.to(dev))

    def _all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        t = t.to(self.dims.device_type)
        dist.all_reduce(t)
        return t.cpu()

    def score_tokens(self, input_ids_bt: torch.Tensor) -> torch.Tensor:
        """log pi(token) for fixed sequences under the current weights, no grad.
        Collective: every rank runs the same forward."""
        with torch.no_grad():
            return self.scorer(input_ids_bt).cpu()

    def cpu_seconds(self) -> float:
        from core.clocks import process_tree_core_seconds
        return process_tree_core_seconds()

    def busy_seconds(self) -> float:
        """Seconds this rank has spent training and pushing weights so far."""
        return self.busy_s

    def peak_rss_gb(self) -> float:
        """This process's peak resident memory since the last call (GiB)."""
        from core.clocks import peak_rss_bytes
        return peak_rss_bytes(reset=True) / 2**30

    def shutdown(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


def _shard(model: torch.nn.Module, mesh, cfg: LearnerConfig, fp32_lm_head: bool) -> None:
    """FSDP2-wrap each decoder layer, then the root (embedding, final norm,
    LM head). bfloat16: parameters gathered in bfloat16, gradients reduced in
    float32 onto the float32 shards; with `fp32_lm_head` the head's matmul
    is then moved to float32 (`_fp32_head`). `learner.offload`: FSDP2's CPU
    offload policy (sharded parameters, gradients and so the optimizer state
    on the host; pinned memory where there is a GPU)."""
    mp = MixedPrecisionPolicy()  # float32 throughout
    if cfg.dtype == "bfloat16":
        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    extra = {}
    if cfg.offload:
        extra["offload_policy"] = CPUOffloadPolicy(pin_memory=torch.cuda.is_available())
    for layer in model.model.layers:
        fully_shard(layer, mesh=mesh, mp_policy=mp, **extra)
    fully_shard(model, mesh=mesh, mp_policy=mp, **extra)
    if fp32_lm_head and cfg.dtype != "float32":
        _fp32_head(model.get_output_embeddings())


def _fp32_head(head: torch.nn.Linear) -> None:
    """Make `head` compute float32 logits from upcast operands, as vLLM's
    LogitsProcessor does with head_dtype=float32. The head keeps its
    parameter (for a tied model the embedding's), so gradients reach it
    through the upcast and FSDP reduces them as before."""
    def forward(hidden: torch.Tensor) -> torch.Tensor:
        bias = None if head.bias is None else head.bias.float()
        return torch.nn.functional.linear(hidden.float(), head.weight.float(), bias)
    head.forward = forward


def _backend(cfg: LearnerConfig) -> str:
    from rl.learner.dist import resolve_backend
    return resolve_backend(cfg.backend)


def _dummy(batch: TrainBatch, pad_id: int) -> TrainBatch:
    """A 2-token, zero-weight pass so this rank joins FSDP's collectives."""
    z = torch.zeros(1, 2)
    return TrainBatch(torch.full((1, 2), pad_id, dtype=torch.long), z, z.clone(), z.clone(),
                      torch.zeros(1), torch.zeros(1, dtype=torch.long), torch.tensor([2]))


# index of each running sum in the metrics vector
_LOSS, _TOK, _ABS, _KL, _ONTOK, _ONABS, _CLIP, _RATIO = range(8)
_N_SUMS = 8


def _step_sums(inp: LossInputs, sub: TrainBatch, loss: torch.Tensor, version: int, algo: AlgoConfig) -> torch.Tensor:
    """This micro-batch's running sums; ranks and micro-batches add them up
    and `_metrics` divides by the token count."""
    with torch.no_grad():
        m = inp.mask_bt
        log_r = (inp.logprobs_bt.detach() - inp.gen_logprobs_bt) * m  # log r, r = pi_train / pi_gen
        ratio = torch.exp(log_r) * m
        # KL(pi_gen || pi_train) from tokens sampled by pi_gen: k3 = r - 1 - log r
        # (Schulman 2020, "Approximating KL divergence"): unbiased, >= 0 per token
        k3 = (torch.exp(log_r) - 1 - log_r) * m
        onpol = (sub.min_version_b == version).float()[:, None].to(m.device) * m
        clipped = clipped_mask(algo.loss, inp, algo).float() * m
        out = torch.zeros(_N_SUMS, dtype=torch.float64)
        out[_LOSS] = loss.detach().double().cpu()
        out[_TOK] = m.sum().double().cpu()
        out[_ABS] = log_r.abs().sum().double().cpu()
        out[_KL] = k3.sum().double().cpu()
        out[_ONTOK] = onpol.sum().double().cpu()
        out[_ONABS] = (log_r.abs() * onpol).sum().double().cpu()
        out[_CLIP] = clipped.sum().double().cpu()
        out[_RATIO] = ratio.sum().double().cpu()
        return out


def _metrics(s: torch.Tensor, grad_norm: float, lr: float, version: int, seconds: float) -> dict[str, float]:
    """Per-token means of the summed step metrics. `train/clip_frac`: the
    fraction of response tokens whose ratio the configured loss clipped or
    truncated, as the loss defines it (rl/algo/losses.py: PPO's clipped
    branch for grpo/dapo/dr_grpo, every token of a clipped sequence for gspo,
    rho > is_cap for cispo and under tis). `mismatch/kl_gen_train`:
    KL(pi_gen || pi_train) per token."""
    tok = max(float(s[_TOK]), 1.0)
    out = {
        "train/loss": float(s[_LOSS]),
        "train/tokens": float(s[_TOK]),
        "train/grad_norm": grad_norm,
        "train/lr": lr,
        "train/clip_frac": float(s[_CLIP]) / tok,
        "train/ratio_mean": float(s[_RATIO]) / tok,
        "mismatch/abs_logprob": float(s[_ABS]) / tok,
        "mismatch/kl_gen_train": float(s[_KL]) / tok,
        "learner/version": float(version),
        "time/train_step": seconds,
    }
    if s[_ONTOK] > 0:
        out["mismatch/onpolicy_abs_logprob"] = float(s[_ONABS]) / float(s[_ONTOK])
    return out
