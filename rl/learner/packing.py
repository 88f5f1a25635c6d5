"""Padding-free micro-batches: several sequences in one row.

A packed micro-batch is one row of the concatenated sequences, with
positions restarting at 0 for each sequence and attention kept within each
sequence. Nothing else changes: the row's token log-probs are put back in
the right-padded (B, T) layout of the micro-batch's rows (`Packed.unpack`),
so every loss and aggregation (per token, per sequence as in GSPO and Kimi,
per prompt) reads exactly what it read before.

Attention over the packed row is the model's attention function registered
with transformers as `PACKED_ATTENTION`: the model passes it the packed
queries, keys and values with the sequence boundaries (`cu_seq_lens_q`,
`max_length_q`, the keyword names flash-attention's varlen kernels take).
On CUDA it runs torch's varlen flash attention (`torch.nn.attention.varlen`,
not run here). Elsewhere (the CPU path) it lays the sequences' queries,
keys and values out as padded rows for the attention alone and runs one
causal SDPA over them: the attention the padded path computes, while every
projection, MLP and the head run on real tokens only (a loop of one SDPA
per sequence measured 1.3x slower than padding at the tiny size). No
(tokens x tokens) mask is ever built.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

PACKED_ATTENTION = "asymptote_packed"


@dataclass
class Packed:
    """One packed row and the map back to the padded rows it came from."""

    input_ids_1n: torch.Tensor  # long (1, N): the sequences' real tokens, end to end
    position_ids_1n: torch.Tensor  # long (1, N): 0..len-1 per sequence
    cu_seqlens: torch.Tensor  # int32 (S+1,): sequence starts in the row, then N
    max_len: int
    dest_n: torch.Tensor  # long (N,): flat index in the (B, T) grid of each packed position

    @property
    def attention_kwargs(self) -> dict:
        """What the model forwards to `PACKED_ATTENTION` (and flash-attention's varlen)."""
        cu = self.cu_seqlens.to(self.input_ids_1n.device)
        return {"position_ids": self.position_ids_1n, "cu_seq_lens_q": cu, "cu_seq_lens_k": cu,
                "max_length_q": self.max_len, "max_length_k": self.max_len}

    def unpack(self, lp_1n: torch.Tensor, shape_bt: tuple[int, int]) -> torch.Tensor:
        """(B, T) from per-position values of the packed row: position t of
        each sequence at row b, column t; 0 at every pad and at each
        sequence's first position (nothing predicts it), as the padded path."""
        b, t = shape_bt
        lp_n = lp_1n.reshape(-1)
        starts = self.cu_seqlens[:-1].long().to(lp_n.device)
        keep = torch.ones_like(lp_n, dtype=torch.bool)
        keep[starts] = False
        dest = self.dest_n.to(lp_n.device)
        return lp_n.new_zeros(b * t).index_put((dest[keep],), lp_n[keep]).view(b, t)


def pack(input_ids_bt: torch.Tensor, lengths_b: torch.Tensor) -> Packed:
    """Pack right-padded rows (`lengths_b` real tokens each) into one row."""
    b, t = input_ids_bt.shape
    lengths = [int(n) for n in lengths_b]
    cols = torch.cat([torch.arange(n) for n in lengths])
    rows = torch.cat([torch.full((n,), i, dtype=torch.long) for i, n in enumerate(lengths)])
    cu = torch.zeros(b + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(torch.tensor(lengths, dtype=torch.int32), 0)
    return Packed(
        input_ids_1n=input_ids_bt[rows, cols][None],
        position_ids_1n=cols[None],
        cu_seqlens=cu,
        max_len=max(lengths),
        dest_n=rows * t + cols,
    )


def packed_attention(module, query, key, value, attention_mask, dropout: float = 0.0,
                     scaling=None, **kwargs):
    """Attention within each packed sequence. query/key/value: (1, heads, N,
    head_dim) as transformers passes them; returns (1, N, heads, head_dim)."""
    cu = kwargs.get("cu_seq_lens_q")
    if cu is None:  # an unpacked call (a padded batch, a greedy check): plain causal SDPA
        from transformers.integrations.sdpa_attention import sdpa_attention_forward
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    if query.is_cuda:
        return _varlen_cuda(module, query, key, value, cu, int(kwargs["max_length_q"]), scaling)
    return _repadded(module, query, key, value, cu, scaling)


def _repadded(module, query, key, value, cu: torch.Tensor, scaling) -> tuple[torch.Tensor, None]:
    """Causal SDPA over the sequences laid out as padded rows for this call
    only: the projections, MLPs and head around it ran on real tokens, and a
    pad at the end of a row cannot reach the row's real positions."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    cu = cu.to(query.device).long()
    lengths = cu[1:] - cu[:-1]
    s, longest = int(lengths.numel()), int(lengths.max())
    seq = torch.repeat_interleave(torch.arange(s, device=cu.device), lengths)
    dest = seq * longest + torch.arange(int(cu[-1]), device=cu.device) - cu[:-1][seq]

    def rows(x):  # (1, heads, N, d) -> (S, heads, longest, d)
        grid = x.new_zeros(x.shape[1], s * longest, x.shape[3]).index_copy(1, dest, x[0])
        return grid.view(x.shape[1], s, longest, x.shape[3]).transpose(0, 1)
    out, _ = sdpa_attention_forward(module, rows(query), rows(key), rows(value), None,
                                    scaling=scaling, is_causal=True)  # (S, longest, heads, d)
    return out.reshape(s * longest, *out.shape[2:]).index_select(0, dest)[None], None


def _varlen_cuda(module, query, key, value, cu: torch.Tensor, max_len: int, scaling) -> tuple[torch.Tensor, None]:
    """torch's varlen flash attention (CUDA only; not run on the CPU machines
    this project is tested on)."""
    from torch.nn.attention.varlen import varlen_attn
    q, k, v = (x[0].transpose(0, 1) for x in (query, key, value))  # (N, heads, head_dim)
    cu = cu.to(device=q.device, dtype=torch.int32)
    out = varlen_attn(q, k, v, cu, cu, max_len, max_len, scale=scaling, window_size=(-1, 0),
                      enable_gqa=k.shape[1] != q.shape[1])
    return out[None], None


def register() -> str:
    """Make `PACKED_ATTENTION` an attention implementation transformers
    models can be loaded with (idempotent); returns its name."""
    from transformers import AttentionInterface
    AttentionInterface.register(PACKED_ATTENTION, packed_attention)
    return PACKED_ATTENTION
