"""Turn scored rollout groups into a typed training batch, and plan how it
splits across ranks and micro-batches.

Everything that needs a global view of the batch is decided here, once, on
the controller: advantages, the zero-variance filter, and per-token weights
that encode the loss aggregation. Ranks then just sum weighted token losses,
so 1 rank and N ranks (and any micro-batch split) compute the same loss.

The aggregations, as token weights w_it (B sequences, G prompt groups, |y_i|
response tokens of sequence i, L = `norm_tokens`):

    token_mean      1 / sum_j |y_j|                        DAPO
    sequence_mean   1 / (B * |y_i|)                        GRPO, GSPO, Kimi
    prompt_mean     1 / (G * sum_{j in group(i)} |y_j|)    ScaleRL
    sequence_sum    1 / (B * L)                            Dr.GRPO

The first three sum to 1 over the batch; sequence_sum sums to
mean_i |y_i| / L, so a longer answer carries more weight (Dr.GRPO's point:
dividing by |y_i| favours long wrong answers and short right ones). Every
aggregation gives each token of a sequence the same weight, which is what
lets the sequence-level losses (gspo, kimi) put their value on every token.

|y_i| counts trained tokens only: a sample's `loss_mask` leaves out forced
interruption text and segments generated in an earlier iteration (partial
rollouts). Those tokens stay in input_ids_bt, as context, with mask 0.

A sample whose reward failed (`Sample.reward_masked`, rewards.types) is a row
with mask 0 and advantage 0, outside its group's mean and std (and the batch
std): the group's baseline is that of its scored members. A group with fewer
than two scored samples carries no baseline and is dropped, filter on or off.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from rl.algo.advantages import compute_advantages
from rl.algo.config import AlgoConfig
from rollout.types import Group


@dataclass
class TrainBatch:
    """Right-padded sequences; every *_bt tensor is aligned with input_ids_bt
    (the value at position t concerns token input_ids_bt[:, t])."""

    input_ids_bt: torch.Tensor  # long (B, T): prompt + response, right-padded
    mask_bt: torch.Tensor  # float (B, T): 1 on response tokens that train (Sample.trainable_mask)
    gen_logprobs_bt: torch.Tensor  # float (B, T): log pi_gen of response tokens, 0 elsewhere
    token_weights_bt: torch.Tensor  # float (B, T): aggregation weights (sum 1 except sequence_sum)
    advantages_b: torch.Tensor  # float (B,)
    min_version_b: torch.Tensor  # long (B,): oldest policy version among the trained tokens
    lengths_b: torch.Tensor  # long (B,): prompt + response tokens

    @property
    def size(self) -> int:
        return int(self.input_ids_bt.shape[0])

    def select(self, idx: list[int]) -> "TrainBatch":
        """Sub-batch of the given rows, trimmed to its longest sequence."""
        t = int(self.lengths_b[idx].max()) if idx else 1
        pick = torch.tensor(idx, dtype=torch.long)
        return TrainBatch(
            input_ids_bt=self.input_ids_bt[pick, :t],
            mask_bt=self.mask_bt[pick, :t],
            gen_logprobs_bt=self.gen_logprobs_bt[pick, :t],
            token_weights_bt=self.token_weights_bt[pick, :t],
            advantages_b=self.advantages_b[pick],
            min_version_b=self.min_version_b[pick],
            lengths_b=self.lengths_b[pick],
        )


def scored_rewards(group: Group) -> list[float]:
    """Rewards of the group's samples that have one (masked samples left out)."""
    return [s.reward for s in group.samples if s.scored]


def baselined(group: Group) -> bool:
    """At least two scored samples: a group-relative baseline exists."""
    return len(scored_rewards(group)) >= 2


def informative(group: Group) -> bool:
    """Whether the group's scored samples got different rewards (a zero-variance
    group, or one with fewer than two scored samples, carries no gradient)."""
    return len(set(scored_rewards(group))) > 1


def filter_groups(groups: list[Group], cfg: AlgoConfig) -> list[Group]:
    """Drop groups with zero reward variance if the config says so, and groups
    without a baseline (fewer than two scored samples) always."""
    if not cfg.zero_variance_filter:
        return [g for g in groups if baselined(g)]
    return [g for g in groups if informative(g)]


def build_train_batch(groups: list[Group], cfg: AlgoConfig, pad_id: int) -> TrainBatch | None:
    """Advantages + token weights for the kept groups; None if nothing is left."""
    kept = [g for g in filter_groups(groups, cfg) if g.samples]
    if not kept:
        return None
    sizes = {len(g.samples) for g in kept}
    if len(sizes) != 1:
        raise ValueError(f"groups must have equal sizes, got {sorted(sizes)}")
    scored_gs = torch.tensor([[s.scored for s in g.samples] for g in kept], dtype=torch.bool)
    rewards_gs = torch.tensor([[s.reward if s.scored else 0.0 for s in g.samples] for g in kept],
                              dtype=torch.float64)
    adv_gs = compute_advantages(cfg.advantage, rewards_gs, cfg.adv_eps, mask_gs=scored_gs)

    rows = [(g, gi, s) for gi, g in enumerate(kept) for s in g.samples]
    lengths = [len(g.prompt_ids) + len(s.token_ids) for g, _, s in rows]
    b, t = len(rows), max(lengths)
    input_ids = torch.full((b, t), pad_id, dtype=torch.long)
    mask = torch.zeros((b, t))
    gen_lp = torch.zeros((b, t))
    for i, (g, _, s) in enumerate(rows):
        p, r = len(g.prompt_ids), len(s.token_ids)
        input_ids[i, :p] = torch.tensor(g.prompt_ids)
        if r:
            input_ids[i, p:p + r] = torch.tensor(s.token_ids)
            mask[i, p:p + r] = torch.tensor(s.trainable_mask(), dtype=torch.float32)
            gen_lp[i, p:p + r] = torch.tensor(s.logprobs, dtype=torch.float32)
    weights = _token_weights(cfg.aggregation, mask, [gi for _, gi, _ in rows], len(kept), cfg.norm_tokens)
    return TrainBatch(
        input_ids_bt=input_ids,
        mask_bt=mask,
        gen_logprobs_bt=gen_lp,
        token_weights_bt=weights,
        advantages_b=adv_gs.reshape(-1),
        min_version_b=torch.tensor([s.trainable_min_version for _, _, s in rows], dtype=torch.long),
        lengths_b=torch.tensor(lengths, dtype=torch.long),
    )


def _token_weights(aggregation: str, mask_bt: torch.Tensor, group_of_row: list[int], n_groups: int,
                   norm_tokens: int | None = None) -> torch.Tensor:
    """Per-token weights of one aggregation (table in the module docstring);
    rows without response tokens get weight 0, never 0/0."""
    tokens_b = mask_bt.sum(dim=1)
    n_rows = mask_bt.shape[0]
    if aggregation == "token_mean":
        return mask_bt / tokens_b.sum().clamp(min=1)
    if aggregation == "sequence_mean":
        return mask_bt / (tokens_b.clamp(min=1)[:, None] * n_rows)
    if aggregation == "prompt_mean":
        group_b = torch.tensor(group_of_row)
        group_tokens_g = torch.zeros(n_groups).index_add_(0, group_b, tokens_b)
        return mask_bt / (group_tokens_g[group_b].clamp(min=1)[:, None] * n_groups)
    if aggregation == "sequence_sum":
        if norm_tokens is None:
            raise ValueError("aggregation 'sequence_sum' needs norm_tokens")
        return mask_bt / (float(norm_tokens) * n_rows)
    raise ValueError(f"unknown aggregation {aggregation!r}")


def plan_microbatches(lengths: list[int], world: int, token_budget: int,
                      packed: bool = False) -> list[list[list[int]]]:
    """Split rows across `world` ranks (balanced by tokens) and each rank's rows
    into micro-batches that fit `token_budget`: padded, rows x longest row
    (length-sorted, so rows of similar length share a micro-batch); packed,
    the rows' real tokens (first-fit decreasing into bins, the learner packs
    each bin into one row). A row longer than the budget gets a micro-batch
    of its own.

    Every rank gets the same number of micro-batches (FSDP collectives need
    each rank to run the same number of forward/backward passes); a rank with
    fewer rows gets empty micro-batches, which the learner runs as a dummy
    pass with zero weight. Deterministic: every rank computes the same plan.
    """
    split = _pack_bins if packed else _padded_micros
    plans = [split(rows, lengths, token_budget) for rows in _balance(lengths, world)]
    n_micro = max(1, max(len(m) for m in plans))
    for m in plans:
        m.extend([] for _ in range(n_micro - len(m)))
    return plans


def padded_fraction(plan: list[list[list[int]]], lengths: list[int], packed: bool) -> float:
    """Share of the token slots a plan computes that are padding (a padded
    micro-batch computes rows x longest slots, a packed one its real tokens)."""
    real = padded = 0
    for micros in plan:
        for rows in micros:
            n = [lengths[i] for i in rows]
            real += sum(n)
            padded += sum(n) if packed else len(n) * max(n, default=0)
    return 1.0 - real / padded if padded else 0.0


def _balance(lengths: list[int], world: int) -> list[list[int]]:
    """Rows per rank, longest first, each to the rank with the fewest tokens."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    per_rank: list[list[int]] = [[] for _ in range(world)]
    load = [0] * world
    for i in order:
        r = min(range(world), key=lambda k: (load[k], k))
        per_rank[r].append(i)
        load[r] += lengths[i]
    return per_rank


def _padded_micros(rows: list[int], lengths: list[int], budget: int) -> list[list[int]]:
    micros: list[list[int]] = []
    cur: list[int] = []
    for i in rows:  # rows are longest first, so the first row sets the pad length
        longest = lengths[cur[0]] if cur else lengths[i]
        if cur and (len(cur) + 1) * longest > budget:
            micros.append(cur)
            cur = []
        cur.append(i)
    if cur:
        micros.append(cur)
    return micros


def _pack_bins(rows: list[int], lengths: list[int], budget: int) -> list[list[int]]:
    bins: list[list[int]] = []
    room: list[int] = []
    for i in rows:  # longest first: first-fit decreasing
        k = next((k for k, free in enumerate(room) if lengths[i] <= free), None)
        if k is None:
            bins.append([])
            room.append(budget)
            k = len(bins) - 1
        bins[k].append(i)
        room[k] -= lengths[i]
    return bins
