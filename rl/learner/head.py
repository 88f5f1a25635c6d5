"""Token log-probs without the whole vocabulary's logits.

The learner needs one number per token, log pi_T(y_t | y_<t) at the sampling
temperature T, yet a plain forward materialises the (tokens x vocabulary)
logits of a whole micro-batch, and log-softmax's backward keeps more copies
of them: at a 150k vocabulary that is 0.6 MB per token per copy, more than
every decoder layer's activations together.

`LogprobHead` takes over the model's output projection (its `forward`; the
module, its parameter and their names are unchanged, so FSDP2, checkpoints
and weight sync see the same model). Inside `scoring(targets, T)` the
projection returns token log-probs instead of logits, computed
`chunk_tokens` rows at a time; each chunk runs under non-reentrant
`torch.utils.checkpoint`, so the backward pass recomputes that chunk's
logits instead of keeping them. At most one chunk's logits (and log-softmax
backward's temporaries) exist at a time. Per chunk:

    logits = h @ W^T (+ b)      float32 operands when fp32 (model.fp32_lm_head
                                under bfloat16), else the compute dtype, then float32
    lp_t   = logits[t, y_t] / T - logsumexp(logits[t] / T)

which is log_softmax(logits / T)[y_t] up to float rounding (the earlier path,
`learner.logprob_head: full`). With fp32 the head weight is upcast once per
forward, not per chunk (a float32 copy of the head for the step, vocab x hidden
x 4 bytes, in the memory plan). Outside `scoring` the projection returns
ordinary logits (greedy checks, anything else that calls the model).

Models that transform logits after the projection (Gemma's soft-capping,
Cohere's logit scale) are refused by `check_plain_head`: the chunked head
would skip that step.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")


def check_plain_head(config) -> None:
    """Raise if the model's CausalLM forward changes the head's logits."""
    for name in _LOGIT_TRANSFORMS:
        if getattr(config, name, None) not in (None, 1, 1.0):
            raise ValueError(f"learner.logprob_head 'chunked' cannot serve a model with {name}="
                             f"{getattr(config, name)!r}; set learner.logprob_head: full")


class LogprobHead:
    """Owns the output projection's forward while the learner scores tokens."""

    def __init__(self, head: torch.nn.Linear, chunk_tokens: int, fp32: bool):
        self.head, self.chunk_tokens, self.fp32 = head, chunk_tokens, fp32
        self._logits_forward = head.forward  # what the model computes outside `scoring`
        self._targets: Optional[torch.Tensor] = None
        self._temperature = 1.0
        head.forward = self._forward

    @contextmanager
    def scoring(self, targets_bt: torch.Tensor, temperature: float) -> Iterator[None]:
        """While open, the model's output is (B, T) float32 log-probs of
        `targets_bt` (position t scores targets_bt[:, t]) instead of logits."""
        self._targets, self._temperature = targets_bt, temperature
        try:
            yield
        finally:
            self._targets = None

    def _forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if self._targets is None:
            return self._logits_forward(hidden)
        return chunked_logprobs(hidden, self.head.weight, self.head.bias, self._targets,
                                self._temperature, self.fp32, self.chunk_tokens)


def chunked_logprobs(hidden_btd: torch.Tensor, weight_vd: torch.Tensor, bias_v: Optional[torch.Tensor],
                     targets_bt: torch.Tensor, temperature: float, fp32: bool, chunk_tokens: int) -> torch.Tensor:
    """(B, T) float32 log-probs of `targets_bt` under logits hidden @ weight^T / T."""
    b, t, d = hidden_btd.shape
    h_nd = hidden_btd.reshape(b * t, d)
    tgt_n = targets_bt.reshape(b * t).to(h_nd.device)
    w, bias = weight_vd, bias_v
    if fp32:
        w = weight_vd.float()
        bias = None if bias_v is None else bias_v.float()
    grad = torch.is_grad_enabled() and (h_nd.requires_grad or w.requires_grad)
    out = []
    for i in range(0, b * t, chunk_tokens):
        args = (h_nd[i:i + chunk_tokens], w, bias, tgt_n[i:i + chunk_tokens], temperature, fp32)
        out.append(checkpoint(_chunk, *args, use_reentrant=False) if grad else _chunk(*args))
    return torch.cat(out).view(b, t)


def _chunk(h_nd: torch.Tensor, w_vd: torch.Tensor, bias_v: Optional[torch.Tensor], tgt_n: torch.Tensor,
           temperature: float, fp32: bool) -> torch.Tensor:
    logits = F.linear(h_nd.float() if fp32 else h_nd, w_vd, bias_v).float() / temperature
    return logits.gather(-1, tgt_n[:, None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)
