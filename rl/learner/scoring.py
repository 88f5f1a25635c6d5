"""From token rows to log pi_T(token): the learner's one forward pass.

`TokenScorer` owns how a micro-batch goes through the model: padded rows or
one packed row (rl/learner/packing.py), and the head that turns hidden
states into log-probs, chunked (rl/learner/head.py) or the model's full
logits followed by log-softmax (`learner.logprob_head: full`, the earlier
path). Whatever the route, the result is the same (B, T) float32 tensor
aligned with the rows' input ids: position t holds log pi_T(ids[t] |
ids[<t]) at the sampling temperature, position 0 and pads hold 0.
"""
from __future__ import annotations

from typing import Optional

import torch

from rl.learner.config import LearnerConfig
from rl.learner.head import LogprobHead, check_plain_head
from rl.learner.packing import pack


class TokenScorer:
    def __init__(self, model: torch.nn.Module, cfg: LearnerConfig, temperature: float, device: str,
                 fp32_head: bool):
        """`model` is the (sharded) causal LM; `fp32_head`: the head's matmul
        in float32 under a lower compute dtype (model.fp32_lm_head)."""
        self.model, self.temperature, self.device = model, temperature, device
        self.packing = cfg.packing
        self.head = None
        if cfg.logprob_head == "chunked":
            check_plain_head(model.config)
            self.head = LogprobHead(model.get_output_embeddings(), cfg.head_chunk_tokens, fp32_head)

    def __call__(self, input_ids_bt: torch.Tensor, lengths_b: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Log-probs of right-padded rows; with `lengths_b` (the rows' real
        token counts) and packing on, computed on one packed row."""
        ids = input_ids_bt.to(self.device)
        if self.packing and lengths_b is not None:
            packed = pack(input_ids_bt, lengths_b)
            kwargs = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v
                      for k, v in packed.attention_kwargs.items()}
            lp_1n = self._aligned(packed.input_ids_1n.to(self.device), **kwargs)
            return packed.unpack(lp_1n, tuple(ids.shape))
        return self._aligned(ids)

    def _aligned(self, ids: torch.Tensor, **kwargs) -> torch.Tensor:
        if self.head is None:  # the full-logits path, as it always was
            logits = self.model(input_ids=ids, **kwargs).logits.float()[:, :-1] / self.temperature
            lp = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        else:
            targets = torch.roll(ids, -1, dims=1)  # position t scores token t+1 (the last column is dropped)
            with self.head.scoring(targets, self.temperature):
                lp = self.model(input_ids=ids, **kwargs).logits[:, :-1]
        return torch.cat([torch.zeros_like(lp[:, :1]), lp], dim=1)
