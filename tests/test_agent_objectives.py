"""GRPO advantages, masked GAE, KL estimators and clipped losses against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from search_envs.agents.objectives import (
    grpo_advantages,
    kl_k1,
    kl_k3,
    masked_gae,
    masked_mean,
    masked_whiten,
    policy_loss,
    token_logprobs,
    value_loss,
)


def test_grpo_advantages_hand_computed():
    adv = grpo_advantages([1.0, 0.0, 0.0, 1.0, 0.5, 2.0, 2.0], ["a", "a", "a", "a", "b", "c", "c"])
    # group a: mean 0.5, unbiased std sqrt(4 * 0.25 / 3) = 0.57735
    std = math.sqrt(1.0 / 3.0)
    expected = [0.5 / std, -0.5 / std, -0.5 / std, 0.5 / std, 0.5, 0.0, 0.0]
    # group b has one member: mean 0, std 1 (verl); group c has no spread: advantage 0
    assert adv.tolist() == pytest.approx(expected, abs=1e-5)


def test_gae_gamma_lambda_one_is_return_minus_value():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.2, 0.7]])
    adv, ret = masked_gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=1.0)
    assert adv.tolist()[0] == pytest.approx([0.5, 0.8, 0.3])
    assert ret.tolist()[0] == pytest.approx([1.0, 1.0, 1.0])


def test_gae_hand_computed_and_skips_masked_tokens():
    gamma, lam = 0.9, 0.8
    # A2 = 1 - 0.7 = 0.3; A1 = (0.9*0.7 - 0.2) + 0.72*0.3 = 0.646; A0 = (0.9*0.2 - 0.5) + 0.72*0.646 = 0.14512
    expected = [0.14512, 0.646, 0.3]
    adv, _ = masked_gae(torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([[0.5, 0.2, 0.7]]), torch.ones(1, 3), gamma, lam)
    assert adv.tolist()[0] == pytest.approx(expected)
    # An environment token (mask 0) between the decisions: it is skipped, whatever its value and reward.
    rewards = torch.tensor([[0.0, 5.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 99.0, 0.2, 0.7]])
    mask = torch.tensor([[1.0, 0.0, 1.0, 1.0]])
    adv, ret = masked_gae(rewards, values, mask, gamma, lam)
    assert adv.tolist()[0] == pytest.approx([0.14512, 0.0, 0.646, 0.3])
    assert ret[0, 1].item() == 0.0


def test_kl_estimators():
    logp = torch.log(torch.tensor([0.5, 0.3]))
    ref = torch.log(torch.tensor([0.25, 0.3]))
    # k3 = exp(r) - r - 1 with r = log(0.25/0.5): 0.5 + ln 2 - 1
    assert kl_k3(logp, ref).tolist() == pytest.approx([0.5 + math.log(2) - 1, 0.0], abs=1e-6)
    assert kl_k1(logp, ref).tolist() == pytest.approx([math.log(2), 0.0], abs=1e-6)
    assert (kl_k3(torch.randn(100), torch.randn(100)) >= 0).all()


def test_policy_loss_clips_both_ways():
    old = torch.zeros(1, 4)
    logp = torch.log(torch.tensor([[1.5, 1.5, 0.5, 1.0]]))  # ratios 1.5, 1.5, 0.5, 1.0
    adv = torch.tensor([[1.0, -1.0, 1.0, 7.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])  # the last token is masked out entirely
    loss, clip_frac = policy_loss(logp, old, adv, mask, clip_ratio=0.2)
    # per token: max(-A r, -A clip(r)): -1.2 (clipped), 1.5 (unclipped is worse), -0.5 (unclipped)
    assert loss.item() == pytest.approx((-1.2 + 1.5 - 0.5) / 3)
    assert clip_frac.item() == pytest.approx(1 / 3)


def test_value_loss_clipped():
    values = torch.tensor([[1.0, 0.0]])
    old = torch.tensor([[0.0, 0.0]])
    returns = torch.tensor([[2.0, 1.0]])
    # token 0: max((1-2)^2, (0.5-2)^2) = 2.25; token 1: 1.0
    loss = value_loss(values, old, returns, torch.ones(1, 2), clip=0.5)
    assert loss.item() == pytest.approx(0.5 * (2.25 + 1.0) / 2)


def test_masked_mean_and_whiten():
    x = torch.tensor([[1.0, 100.0, 3.0]])
    mask = torch.tensor([[1.0, 0.0, 1.0]])
    assert masked_mean(x, mask).item() == 2.0
    assert masked_mean(x, mask, denom=4).item() == 1.0  # a fixed denominator (gradient accumulation)
    w = masked_whiten(x, mask)
    assert w[0, 1].item() == 0.0 and w[0, 0].item() == pytest.approx(-1.0, abs=1e-3)


def test_token_logprobs_match_log_softmax():
    logits = torch.randn(2, 3, 5)
    targets = torch.randint(0, 5, (2, 3))
    lp = token_logprobs(logits, targets)
    assert torch.allclose(lp.exp().sum(), torch.softmax(logits, -1).gather(-1, targets[..., None]).sum())
