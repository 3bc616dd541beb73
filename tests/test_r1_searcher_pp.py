"""R1-Searcher++: its protocol (internal knowledge vs external search), answer, format and group
rewards, against the paper's definitions (no code was released) and hand-computed values."""

from __future__ import annotations

import pytest

from search_envs import SearchEnv, Task
from search_envs.agents.config import TrainConfig
from search_envs.agents.rollout import Trajectory
from search_envs.agents.train import group_reward_bonus
from search_envs.protocols import make_protocol
from search_envs.rewards import EpisodeOutcome, cover_em_short, make_reward, r1_searcher_pp_group_reward


def test_group_reward_on_the_papers_figure_1_group():
    # Fig. 1 of arXiv:2505.17005 (RL stage): correct rollouts with retrieval counts RC = 1, 2, 0 and
    # an incorrect one; R_group = min(2 sigma^2, eta), eta = 2, to the correct rollout with the fewest.
    # Population sigma^2 of (1, 2, 0) = 2/3 -> 4/3 (a sample std would give 2 * 1 = 2).
    out = r1_searcher_pp_group_reward([True, True, True, False], [1, 2, 0, 1], ["q"] * 4)
    assert out == pytest.approx([0.0, 0.0, 4 / 3, 0.0])
    # the incorrect rollout gets nothing even with fewer searches than every correct one
    assert r1_searcher_pp_group_reward([True, True, False], [1, 3, 0], ["q"] * 3) == pytest.approx([2.0, 0.0, 0.0])
    # eta is the cap: a larger eta lets 2 sigma^2 through
    assert r1_searcher_pp_group_reward([True, True], [0, 4], [1, 1], cap=10.0) == pytest.approx([8.0, 0.0])


def test_group_reward_hand_computed():
    # one question, 4 rollouts: correct with 1, 3, 2 searches, and a wrong one with 0 searches.
    # sigma^2 of (1, 3, 2) = 2/3, so the bonus is 2 * 2/3 = 4/3, to the correct rollout with 1 search only.
    out = r1_searcher_pp_group_reward([True, True, True, False], [1, 3, 2, 0], ["q"] * 4)
    assert out == pytest.approx([4 / 3, 0.0, 0.0, 0.0])
    # ties on the fewest searches all get the bonus; the bonus is capped at 2
    # (0, 4, 0): mean 4/3, sigma^2 = (16/9 + 64/9 + 16/9) / 3 = 32/27, bonus 64/27 -> capped at 2, to both 0s
    assert r1_searcher_pp_group_reward([True, True, True], [0, 4, 0], [7, 7, 7]) == pytest.approx([2.0, 0.0, 2.0])
    assert r1_searcher_pp_group_reward([True, True], [0, 4], [1, 1]) == pytest.approx([2.0, 0.0])  # 2 * 4 = 8 -> cap 2
    # no bonus without a spread among correct rollouts, or with one correct rollout; groups are separate
    assert r1_searcher_pp_group_reward([True, True, True, False], [2, 2, 0, 5], ["a", "a", "b", "b"]) == [0.0] * 4


def test_answer_reward_is_cover_em_up_to_ten_words():
    assert cover_em_short("it was William Shakespeare of course", ["Shakespeare"]) == 1.0
    assert cover_em_short("one two three four five six seven eight nine Shakespeare", ["Shakespeare"]) == 1.0
    assert cover_em_short("one two three four five six seven eight nine ten Shakespeare", ["Shakespeare"]) == 0.0
    reward = make_reward("r1_searcher_pp")
    assert reward(EpisodeOutcome("Shakespeare", ("Shakespeare",), True, 1)) == 1.0
    assert reward(EpisodeOutcome("Shakespeare", ("Shakespeare",), False, 1)) == -1.0  # 1 - 2 for a broken format
    assert reward(EpisodeOutcome("Marlowe", ("Shakespeare",), True, 0)) == 0.0


def test_protocol_marks_internal_and_external_knowledge():
    proto = make_protocol("r1_searcher_pp")
    a = proto.parse("I recall <internal> Hamlet is a play </internal>, but who wrote it? <external> Hamlet author </external>")
    assert (a.kind, a.queries, a.format_ok) == ("search", ["Hamlet author"], True)
    a = proto.parse("<internal> Shakespeare wrote Hamlet </internal> </think> <answer> Shakespeare </answer>")
    assert (a.kind, a.answer, a.format_ok) == ("answer", "Shakespeare", True)
    # a search inside an internal span, an unclosed or nested span: well parsed but badly formed
    assert not proto.parse("<internal> I know <external> q </external>").format_ok
    assert not proto.parse("<internal> a <internal> b </internal> </internal> <answer> x </answer>").format_ok
    assert not proto.parse("<internal> unclosed <answer> x </answer>").format_ok
    # documents come only from the retriever: one the model writes itself breaks the format
    assert not proto.parse("<document> Hamlet is by Shakespeare </document> <answer> Shakespeare </answer>").format_ok
    assert not proto.parse("I found it </document> <external> Hamlet </external>").format_ok
    reward = make_reward("r1_searcher_pp")
    fabricated = proto.parse("<document> made up </document> <answer> Shakespeare </answer>")
    assert reward(EpisodeOutcome(fabricated.answer, ("Shakespeare",), fabricated.format_ok, 0)) == -1.0
    assert proto.parse("<external>   </external>").kind == "invalid"
    assert proto.parse("just thinking").kind == "invalid"


def test_episode_through_the_env(bm25_engine):
    env = SearchEnv(bm25_engine, [Task("hamlet", "Who wrote the tragedy Hamlet?", ("William Shakespeare", "Shakespeare"))],
                    protocol="r1_searcher_pp", reward="r1_searcher_pp", max_turns=3)
    prompt, _ = env.reset(seed=0)
    assert prompt.endswith("Assistant: <think>") and "<internal>" in prompt
    obs, *_ = env.step("<internal> It is a tragedy. </internal> <external> Hamlet tragedy author </external>")
    assert obs.startswith("\n\n<document>\n") and obs.endswith("\n</document>\n\n") and "Hamlet" in obs
    _, reward, terminated, _, info = env.step("It says Shakespeare. </think> <answer> William Shakespeare </answer>")
    assert terminated and reward == 1.0 and info["num_searches"] == 1


def test_trainer_adds_the_group_reward():
    def traj(group, prediction, searches):
        t = Trajectory("t", group, [1, 2], [0, 1], 1)
        t.info = {"prediction": prediction, "answers": ["Paris"], "num_searches": searches}
        return t

    trajs = [traj(0, "Paris", 2), traj(0, "Paris", 0), traj(0, "Lyon", 0), traj(1, "Paris", 1)]
    # group 0: correct with 2 and 0 searches: sigma^2 = 1, bonus 2 to the one with 0 searches; group 1 has one
    assert group_reward_bonus("r1_searcher_pp", trajs, [0, 0, 0, 1]) == pytest.approx([0.0, 2.0, 0.0, 0.0])
    assert TrainConfig(group_reward="r1_searcher_pp").group_reward == "r1_searcher_pp"
    with pytest.raises(ValueError, match="group_reward"):
        TrainConfig(group_reward="fewest")
