"""DAPO's and REINFORCE++'s objectives against hand-computed values and against the released code
(vendored below as reference implementations, on thousands of random inputs)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from search_envs.agents.config import TrainConfig
from search_envs.agents.objectives import (
    decoupled_policy_loss,
    group_mean_baseline,
    informative_groups,
    kl_k1,
    masked_mean,
    overlong_penalty,
    policy_loss,
    reinforce_pp_advantages,
    sequence_token_weights,
)


# ---------------------------------------------------------------------------------------------
# Reference code 1: verl (https://github.com/volcengine/verl), Apache License 2.0,
# commit b178a3cd56f58b2d502255daba591e92833930a7, verl/trainer/ppo/core_algos.py
# `compute_policy_loss` (dual-clip part cut: DAPO's objective has none, see docs/papers.md) and
# `agg_loss` ("token-mean"), and verl/workers/reward_manager/dapo.py (overlong buffer).
def _verl_masked_mean(values, mask):
    return (values * mask).sum() / mask.sum()


def verl_compute_policy_loss(old_log_prob, log_prob, advantages, response_mask, cliprange_low, cliprange_high):
    negative_approx_kl = log_prob - old_log_prob
    negative_approx_kl = torch.clamp(negative_approx_kl, min=-20.0, max=20.0)
    ratio = torch.exp(negative_approx_kl)
    pg_losses1 = -advantages * ratio
    pg_losses2 = -advantages * torch.clamp(ratio, 1 - cliprange_low, 1 + cliprange_high)
    clip_pg_losses1 = torch.maximum(pg_losses1, pg_losses2)
    pg_clipfrac = _verl_masked_mean(torch.gt(pg_losses2, pg_losses1).float(), response_mask)
    loss = (clip_pg_losses1 * response_mask).sum() / response_mask.sum()  # agg_loss "token-mean"
    return loss, pg_clipfrac


def verl_dapo_overlong(valid_response_length, max_resp_len, overlong_buffer_len, overlong_penalty_factor):
    expected_len = max_resp_len - overlong_buffer_len
    exceed_len = valid_response_length - expected_len
    return min(-exceed_len / overlong_buffer_len * overlong_penalty_factor, 0)


# verl recipe/dapo/dapo_ray_trainer.py (same licence): the dynamic-sampling filter.
def verl_kept_uids(uids, metric_vals):
    prompt_uid2metric_vals = {}
    for uid, val in zip(uids, metric_vals):
        prompt_uid2metric_vals.setdefault(uid, []).append(val)
    prompt_uid2metric_std = {uid: np.std(v) for uid, v in prompt_uid2metric_vals.items()}
    return [uid for uid, std in prompt_uid2metric_std.items() if std > 0 or len(prompt_uid2metric_vals[uid]) == 1]


# ---------------------------------------------------------------------------------------------
# Reference code 2: R1-Searcher's OpenRLHF fork (https://github.com/RUCAIBox/R1-Searcher), MIT
# License, commit 631167cbb3c2464f805730e3e364a690f5b136d4: OpenRLHF-RAG/openrlhf/
# trainer/ppo_utils/experience_maker.py (`process_experiences` "reinforce_baseline",
# `get_cumulative_returns`), models/utils.py (`compute_reward`, `masked_mean`), models/loss.py
# (`PolicyLoss`) and trainer/ppo_utils/replay_buffer.py (`normalize`), single process.
def r1s_reinforce_baseline(rewards, n_samples_per_prompt):
    rewards = rewards.reshape(-1, n_samples_per_prompt)
    rewards = rewards - rewards.mean(-1, keepdim=True)
    return rewards.reshape(-1)


def r1s_compute_reward(r, kl_coef, kl, action_mask):
    if kl_coef <= 0.0:
        kl_coef = 0.0
    kl_reward = -kl_coef * kl
    eos_indices = action_mask.size(1) - 1 - action_mask.long().fliplr().argmax(dim=1, keepdim=True)
    last_reward = torch.zeros_like(kl).scatter_(dim=1, index=eos_indices, src=r.unsqueeze(1).to(kl.dtype))
    return last_reward + kl_reward


def r1s_get_cumulative_returns(rewards, action_mask, retrieve_mask, gamma):
    response_length = rewards.size(1)
    returns = torch.zeros_like(rewards)
    cumulative_return = torch.zeros(rewards.size(0), device=rewards.device)
    if action_mask is not None:
        rewards = action_mask * rewards
    for t in reversed(range(response_length)):
        cumulative_return = rewards[:, t] + gamma * cumulative_return
        returns[:, t] = cumulative_return
    if retrieve_mask is not None:
        returns = returns * retrieve_mask
    return returns


def r1s_normalize(advantages, retrieve_mask):
    items_vector = advantages.float().flatten()
    action_masks_vector = retrieve_mask.flatten()
    num_actions = action_masks_vector.sum()
    mean = items_vector.sum() / num_actions
    std = ((items_vector - mean).pow(2) * action_masks_vector).sum()
    rstd = (std / num_actions).clamp(min=1e-8).rsqrt()
    return (advantages - mean) * rstd


def r1s_policy_loss(log_probs, old_log_probs, advantages, retrieve_mask, clip_eps=0.2):
    ratio = (log_probs - old_log_probs).exp()
    surr1 = ratio * advantages
    surr2 = ratio.clamp(1 - clip_eps, 1 + clip_eps) * advantages
    loss = -torch.min(surr1, surr2)
    return ((loss * retrieve_mask).sum(axis=-1) / retrieve_mask.sum(axis=-1)).mean()


def random_mask(rng, b, t):
    """Masks with a trained prefix, then retrieved (0) spans, then more trained tokens, then padding."""
    mask = torch.zeros(b, t)
    for i in range(b):
        n = int(rng.integers(2, t + 1))
        mask[i, :n] = 1.0
        for _ in range(int(rng.integers(0, 3))):
            s = int(rng.integers(1, n))
            mask[i, s : s + int(rng.integers(1, 4))] = 0.0
        mask[i, 0] = 1.0
    return mask


# ---------------------------------------------------------------------------------------------
def test_decoupled_clip_hand_computed():
    old = torch.zeros(1, 4)
    logp = torch.log(torch.tensor([[1.5, 1.5, 0.5, 0.7]]))  # ratios 1.5, 1.5, 0.5, 0.7
    adv = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    loss, clip_frac = decoupled_policy_loss(logp, old, adv, torch.ones(1, 4), clip_low=0.2, clip_high=0.28)
    # A>0, r=1.5: clipped at 1.28 -> -1.28; A<0, r=1.5: unclipped 1.5; A>0, r=0.5: unclipped -0.5;
    # A<0, r=0.7: clipped at 0.8 -> 0.8 (the low range is 0.2, not 0.28)
    assert loss.item() == pytest.approx((-1.28 + 1.5 - 0.5 + 0.8) / 4)
    assert clip_frac.item() == pytest.approx(2 / 4)
    # eps_high == eps_low is the plain PPO loss
    same, _ = decoupled_policy_loss(logp, old, adv, torch.ones(1, 4), 0.2, 0.2)
    assert same.item() == pytest.approx(policy_loss(logp, old, adv, torch.ones(1, 4), 0.2)[0].item())


def test_decoupled_clip_matches_verl_on_random_inputs():
    gen = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    for _ in range(300):
        b, t = int(rng.integers(1, 6)), int(rng.integers(2, 12))
        old, logp = -torch.rand(b, t, generator=gen) * 3, -torch.rand(b, t, generator=gen) * 3
        adv = torch.randn(b, t, generator=gen)
        mask = random_mask(rng, b, t)
        low, high = float(rng.uniform(0.05, 0.3)), float(rng.uniform(0.05, 0.4))
        ours = decoupled_policy_loss(logp, old, adv, mask, low, high)
        ref = verl_compute_policy_loss(old, logp, adv, mask, low, high)
        assert ours[0].item() == pytest.approx(ref[0].item(), rel=1e-5, abs=1e-6)
        assert ours[1].item() == pytest.approx(ref[1].item(), abs=1e-6)


def test_overlong_penalty_hand_computed_and_matches_verl():
    # DAPO eq. 13: L_max = 20480, L_cache = 4096: no penalty up to 16384 tokens, -1 at 20480
    assert overlong_penalty(16384, 20480, 4096) == 0.0
    assert overlong_penalty(18432, 20480, 4096) == pytest.approx(-0.5)
    assert overlong_penalty(20480, 20480, 4096) == pytest.approx(-1.0)
    assert overlong_penalty(100, 20480, 0) == 0.0  # off
    for length in range(0, 1200, 7):
        for factor in (0.5, 1.0):
            assert overlong_penalty(length, 1000, 250, factor) == pytest.approx(verl_dapo_overlong(length, 1000, 250, factor))


def test_informative_groups_match_verl_filter():
    # a (all 1) and b (all 0) carry no signal; c has one member (kept, as in verl); d varies
    assert informative_groups([1, 1, 0, 0, 1, 0.5, 0.0], ["a", "a", "b", "b", "c", "d", "d"]) == {"c", "d"}
    rng = np.random.default_rng(1)
    for _ in range(1000):
        n = int(rng.integers(1, 30))
        uids = [int(u) for u in rng.integers(0, 6, n)]
        vals = [float(v) for v in rng.integers(0, 2, n)]
        assert informative_groups(vals, uids) == set(verl_kept_uids(uids, vals))


def test_reinforce_pp_hand_computed():
    # two episodes of one group, scores 1 and 0: baseline 0.5 -> +0.5 and -0.5
    base = group_mean_baseline([1.0, 0.0, 3.0], ["q", "q", "r"])
    assert base.tolist() == pytest.approx([0.5, -0.5, 0.0])
    mask = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    kl = torch.tensor([[0.2, 9.0, 0.4], [0.0, 0.2, 9.0]])
    # returns with kl_coef 0.5, gamma 1: ep 0: t2: 0.5 - 0.2 = 0.3; t0: 0.3 - 0.1 = 0.2
    #                                  ep 1: t1: -0.5 - 0.1 = -0.6; t0: -0.6
    # whitened over the 4 trained tokens [0.2, 0.3, -0.6, -0.6]: mean -0.175, var (0.375² + 0.475² + 2 * 0.425²) / 4 = 0.181875
    adv = reinforce_pp_advantages(base[:2], mask, kl, kl_coef=0.5, gamma=1.0)
    std = math.sqrt(0.181875)
    expected = [[(0.2 + 0.175) / std, 0.0, (0.3 + 0.175) / std], [(-0.6 + 0.175) / std, (-0.6 + 0.175) / std, 0.0]]
    assert adv.tolist() == [pytest.approx(row, abs=1e-4) for row in expected]


def test_reinforce_pp_matches_r1_searcher_code_on_random_inputs():
    gen = torch.Generator().manual_seed(2)
    rng = np.random.default_rng(2)
    for _ in range(300):
        n, t = int(rng.integers(2, 5)), int(rng.integers(3, 12))
        b = n * int(rng.integers(1, 4))
        scores = torch.tensor(rng.integers(0, 3, b), dtype=torch.float32) / 2
        mask = random_mask(rng, b, t)
        logp, ref = -torch.rand(b, t, generator=gen) * 3, -torch.rand(b, t, generator=gen) * 3
        kl_coef, gamma = float(rng.choice([0.0, 0.01, 0.5])), float(rng.choice([1.0, 0.9]))
        groups = [i // n for i in range(b)]
        ours = reinforce_pp_advantages(group_mean_baseline(scores.tolist(), groups), mask,
                                       kl_k1(logp, ref) * mask, kl_coef, gamma)
        # R1-Searcher computes the KL with the retrieve mask applied (compute_approx_kl)
        rewards = r1s_compute_reward(r1s_reinforce_baseline(scores, n), kl_coef, (logp - ref) * mask, mask)
        ref_adv = r1s_normalize(r1s_get_cumulative_returns(rewards, mask, mask, gamma), mask)
        assert torch.allclose(ours * mask, ref_adv * mask, atol=2e-4), (ours, ref_adv)
        # ...and the seq-mean-token-mean loss equals OpenRLHF's PolicyLoss
        new_logp = logp + 0.3 * torch.randn(b, t, generator=gen)
        weights = sequence_token_weights(mask)
        ours_loss, _ = policy_loss(new_logp, logp, ref_adv, weights, 0.2, denom=float(b))
        assert ours_loss.item() == pytest.approx(r1s_policy_loss(new_logp, logp, ref_adv, mask).item(), rel=1e-4, abs=1e-6)


def test_sequence_token_weights_make_every_episode_weigh_the_same():
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
    x = torch.tensor([[1.0, 1.0, 1.0, 1.0], [5.0, 7.0, 7.0, 7.0]])
    assert masked_mean(x, sequence_token_weights(mask), 2).item() == pytest.approx((1.0 + 5.0) / 2)
    assert masked_mean(x, mask).item() == pytest.approx((4.0 + 5.0) / 5)  # token-mean differs


def test_algo_defaults_follow_the_papers():
    dapo = TrainConfig(algo="dapo")
    assert (dapo.clip_ratio, dapo.clip_ratio_high, dapo.kl_coef, dapo.entropy_coef) == (0.2, 0.28, 0.0, 0.0)
    assert dapo.dynamic_sampling and dapo.loss_agg_mode == "token-mean" and dapo.group_size == 16
    assert dapo.overlong_buffer_len == dapo.max_turns * dapo.max_response_length // 5
    rpp = TrainConfig(algo="reinforce_pp")
    assert rpp.loss_agg_mode == "seq-mean-token-mean" and rpp.kl_coef == 0.0 and not rpp.dynamic_sampling
    grpo = TrainConfig(algo="grpo")
    assert (grpo.kl_coef, grpo.entropy_coef, grpo.clip_ratio_high, grpo.overlong_buffer_len) == (0.001, 0.001, 0.2, 0)
    with pytest.raises(ValueError, match="loss_agg_mode"):
        TrainConfig(loss_agg_mode="token-sum")
    with pytest.raises(ValueError, match="overlong_buffer_len"):
        TrainConfig(algo="dapo", overlong_buffer_len=10**6)
