"""Advantages, KL estimators and clipped losses over masked token sequences.

Every tensor is [batch, tokens]; `mask` is 1 where a token is trained on (the
policy's own tokens, or every response token in the no-masking ablation) and 0
for prompt, environment and padding tokens. Losses are token means over the
mask (verl's "token-mean"), so a masked token contributes exactly nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def masked_sum(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum()


def masked_mean(x: torch.Tensor, mask: torch.Tensor, denom: float | torch.Tensor | None = None) -> torch.Tensor:
    """Sum over the mask divided by `denom` (default: the number of masked tokens).
    A fixed `denom` keeps the token mean exact under gradient accumulation."""
    if denom is None:
        denom = mask.sum()
    return masked_sum(x, mask) / torch.clamp(torch.as_tensor(denom, dtype=x.dtype, device=x.device), min=1.0)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Zero-mean unit-variance over the masked entries (verl whitens GAE advantages)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + eps) * mask


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log p(target_t | <t) for aligned logits [B, T, V] and targets [B, T]."""
    logits = logits.float() / temperature
    return torch.gather(F.log_softmax(logits, dim=-1), -1, targets.unsqueeze(-1)).squeeze(-1)


def entropy_from_logits(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    logp = F.log_softmax(logits.float() / temperature, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def group_members(groups: Sequence[object]) -> list[list[int]]:
    """The positions of each group's members, groups in order of first appearance."""
    members: dict[object, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    return list(members.values())


def grpo_advantages(scores: Sequence[float], groups: Sequence[object], eps: float = 1e-6) -> torch.Tensor:
    """(score - group mean) / (group std + eps), one value per trajectory.

    As verl's `compute_grpo_outcome_advantage`: std is the unbiased sample std,
    and a group of one gets mean 0 and std 1 (its raw score)."""
    scores_t = torch.as_tensor(list(scores), dtype=torch.float32)
    out = torch.empty_like(scores_t)
    for idx in group_members(groups):
        s = scores_t[idx]
        if len(idx) == 1:
            mean, std = torch.tensor(0.0), torch.tensor(1.0)
        else:
            mean, std = s.mean(), s.std()
        out[idx] = (s - mean) / (std + eps)
    return out


def masked_gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over the masked tokens only; returns (advantages, returns), zero off the mask.

    Environment tokens are not decisions: the recursion skips them, so the
    policy token before an observation bootstraps from the value of the first
    policy token after it (the next decision), not from a value inside the
    retrieved text."""
    r = rewards.detach().double().cpu().numpy()
    v = values.detach().double().cpu().numpy()
    m = mask.detach().cpu().numpy() > 0
    adv = np.zeros_like(r)
    for b in range(r.shape[0]):
        last_gae, next_value = 0.0, 0.0
        for t in np.flatnonzero(m[b])[::-1]:
            delta = r[b, t] + gamma * next_value - v[b, t]
            last_gae = delta + gamma * lam * last_gae
            adv[b, t] = last_gae
            next_value = v[b, t]
    adv_t = torch.as_tensor(adv, dtype=values.dtype, device=values.device)
    return adv_t, (adv_t + values.detach()) * mask


def kl_k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """log pi - log pi_ref: verl's "kl", used as a per-token reward penalty in PPO."""
    return logp - ref_logp


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Schulman's low-variance, non-negative estimator: exp(r) - r - 1 with r = log pi_ref - log pi
    (verl's "low_var_kl", clamped to [-10, 10] as there)."""
    r = torch.clamp(ref_logp - logp, -20.0, 20.0)
    return torch.clamp(torch.exp(r) - r - 1.0, -10.0, 10.0)


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_ratio: float,
    denom: float | torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO clipped surrogate, token mean over the mask; returns (loss, clip fraction)."""
    ratio = torch.exp(logp - old_logp)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_ratio, 1.0 + clip_ratio)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask, denom)
    clip_frac = masked_mean((clipped > unclipped).float(), mask).detach()
    return loss, clip_frac


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip: float,
    denom: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """Clipped value loss 0.5 * max((v - R)^2, (clip(v) - R)^2), token mean over the mask."""
    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    loss = torch.maximum((values - returns) ** 2, (clipped - returns) ** 2)
    return 0.5 * masked_mean(loss, mask, denom)


# ----------------------------------------------------------------------------- DAPO
def decoupled_policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_low: float,
    clip_high: float,
    denom: float | torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DAPO's clip-higher surrogate: -min(r A, clip(r, 1 - eps_low, 1 + eps_high) A), aggregated as
    `masked_mean(., mask, denom)`; equal to `policy_loss` when eps_low == eps_high. The log-ratio is
    clamped to [-20, 20] as in verl's `compute_policy_loss`. Returns (loss, clip fraction)."""
    ratio = torch.exp(torch.clamp(logp - old_logp, -20.0, 20.0))
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask, denom)
    clip_frac = masked_mean((clipped > unclipped).float(), mask).detach()
    return loss, clip_frac


def overlong_penalty(length: int, max_length: int, buffer_len: int, factor: float = 1.0) -> float:
    """DAPO's soft overlong punishment: 0 up to max_length - buffer_len tokens, then falling
    linearly to -factor at max_length (verl's DAPO reward manager; it is not floored there either)."""
    if buffer_len <= 0:
        return 0.0
    exceed = length - (max_length - buffer_len)
    return min(-exceed / buffer_len * factor, 0.0)


def informative_groups(scores: Sequence[float], groups: Sequence[object]) -> set[object]:
    """DAPO's dynamic-sampling filter: the groups whose scores are not all equal (a group of one
    is kept, as in verl's recipe). The other groups have zero advantage: no gradient."""
    members: dict[object, list[float]] = {}
    for s, g in zip(scores, groups):
        members.setdefault(g, []).append(float(s))
    return {g for g, s in members.items() if len(s) == 1 or float(np.std(s)) > 0}


# ----------------------------------------------------------------------------- REINFORCE++
def group_mean_baseline(scores: Sequence[float], groups: Sequence[object]) -> torch.Tensor:
    """score - mean of its group: OpenRLHF's `reinforce_baseline` (REINFORCE++-baseline), which
    R1-Searcher trains with; no division by the group std (unlike GRPO)."""
    scores_t = torch.as_tensor(list(scores), dtype=torch.float32)
    out = torch.empty_like(scores_t)
    for idx in group_members(groups):
        out[idx] = scores_t[idx] - scores_t[idx].mean()
    return out


def reinforce_pp_advantages(
    scores: torch.Tensor, mask: torch.Tensor, kl: torch.Tensor, kl_coef: float, gamma: float = 1.0
) -> torch.Tensor:
    """REINFORCE++: per-token reward -kl_coef * kl plus the episode score on its last trained token,
    the discounted return-to-go over the trained tokens, then whitened over every trained token of
    the batch (OpenRLHF's `compute_reward`, `get_cumulative_returns` and replay-buffer `normalize`).
    No critic; environment tokens (mask 0) carry no reward and no return."""
    rewards = -max(kl_coef, 0.0) * kl * mask
    last = mask.shape[1] - 1 - mask.long().fliplr().argmax(1)
    rewards[torch.arange(len(scores)), last] += scores.to(rewards.dtype) * (mask.sum(1) > 0)
    returns = torch.zeros_like(rewards)
    running = torch.zeros(rewards.shape[0], dtype=rewards.dtype)
    for t in reversed(range(rewards.shape[1])):
        running = rewards[:, t] + gamma * running
        returns[:, t] = running
    return masked_whiten(returns * mask, mask)


def sequence_token_weights(mask: torch.Tensor) -> torch.Tensor:
    """mask / (the sequence's trained-token count): with `masked_mean(x, weights, n_sequences)`
    the loss is "seq-mean-token-mean" (each episode weighs the same, whatever its length), the
    aggregation of OpenRLHF's `PolicyLoss` that R1-Searcher's REINFORCE++ uses."""
    return mask / mask.sum(1, keepdim=True).clamp(min=1.0)
