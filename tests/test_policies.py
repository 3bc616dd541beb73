"""Policy adapters and `run_episodes` on the real embedded Wikipedia env, with the
real SmolLM2 model and a real OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import gymnasium as gym
import pytest

import search_envs  # noqa: F401
from search_envs.policies import CallablePolicy, Policy, make_policy, question_of, run_episodes, summarize
from search_envs.policies.actions import answer_action, detect_protocol, search_action
from search_envs.generation import cut_at_stop, restore_stop
from search_envs.protocols import PROTOCOLS, make_protocol


@pytest.fixture(scope="module")
def env():
    e = gym.make("SearchEnvs/WikiBM25-v0", tasks="ramp:test", max_turns=3)
    yield e
    e.close()


@pytest.fixture(scope="module")
def smollm2():
    from search_envs.generation import TransformersGenerator

    return TransformersGenerator(max_new_tokens=24)


def search_then_answer(history):
    """Searches the question, then answers with the first result's title."""
    if len(history) == 1:
        return search_action("search_r1", question_of(history))
    obs = history[-1][1]
    title = obs.split('(Title: "', 1)[1].split('")', 1)[0] if '(Title: "' in obs else "nothing"
    return answer_action("search_r1", title)


def batch_policy(batch):
    return [search_then_answer(h) for h in batch]


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_actions_round_trip_through_each_protocol(name):
    proto = make_protocol(name)
    q = proto.parse(search_action(proto, "  capital of   France </search>", thought="think <b>"))
    assert q.kind == "search" and q.queries == ["capital of France"]
    a = proto.parse(answer_action(proto, "Paris", thought="because"))
    assert a.kind == "answer" and a.answer == "Paris"
    detected = detect_protocol(proto.prompt("Who wrote Hamlet?"))
    # zerosearch has Search-R1's prompt and actions (only the documents look different)
    assert detected.name == name or (detected.prompt("q") == proto.prompt("q") and detected.stop_strings == proto.stop_strings)
    assert question_of([("prompt", proto.prompt("Who wrote Hamlet?"))]) == "Who wrote Hamlet?"


def test_detect_protocol_rejects_unknown_prompt():
    with pytest.raises(ValueError, match="protocol"):
        detect_protocol("Tell me a story")


def test_stop_string_helpers():
    stop = ("</search>", "</answer>")
    assert cut_at_stop("<search> a </search> trailing <answer>x</answer>", stop) == "<search> a </search>"
    assert restore_stop("<think>x</think><search> paris", stop) == "<think>x</think><search> paris</search>"
    assert restore_stop("<answer> Paris", stop) == "<answer> Paris</answer>"
    assert restore_stop("no tags", stop) == "no tags"
    assert restore_stop("<|begin_of_query|> q", ("<|end_of_query|>", "</answer>")).endswith("<|end_of_query|>")


def test_callable_policy_plays_real_episodes(env):
    records = run_episodes(batch_policy, env, n=6, seed=3, batch_size=4, progress=False)
    assert len(records) == 6
    assert len({r.id for r in records}) == 6  # n <= len(tasks): no question twice
    for r in records:
        assert r.searches == 1 and r.turns == 2 and r.prediction and not r.truncated
        assert r.trajectory.startswith("Answer the given question") and "<information>" in r.trajectory
        assert r.em in (0.0, 1.0) and 0.0 <= r.f1 <= 1.0 and r.wall_time > 0
    again = run_episodes(CallablePolicy(search_then_answer, per_history=True), env, n=6, seed=3, batch_size=2,
                         progress=False)
    assert [r.id for r in again] == [r.id for r in records]  # same seed, same plan, any batch size
    assert [r.prediction for r in again] == [r.prediction for r in records]
    summary = summarize(records)
    assert summary["n"] == 6 and summary["searches"] == 1.0


def test_run_episodes_task_ids_and_callbacks(env):
    ids = [t.id for t in list(env.unwrapped.tasks)[:3]]
    seen = []
    records = run_episodes(batch_policy, env, task_ids=ids, on_record=seen.append, progress=False)
    assert [r.id for r in records] == ids and sorted(r.id for r in seen) == sorted(ids)


def test_policy_returning_wrong_number_of_actions_is_an_error(env):
    with pytest.raises(ValueError, match="one action per history"):
        run_episodes(CallablePolicy(lambda batch: ["<answer> x </answer>"]), env, n=3, batch_size=3, progress=False)
    with pytest.raises(ValueError, match="give n"):
        run_episodes(batch_policy, env, progress=False)


def test_episodes_that_never_answer_are_truncated(env):
    records = run_episodes(lambda b: ["I am not sure."] * len(b), env, n=2, progress=False)
    assert all(r.truncated and r.prediction is None and r.em == 0.0 and not r.format_ok for r in records)
    assert all(r.turns == 3 for r in records)


def test_make_policy_names():
    assert isinstance(make_policy("callable:tests.test_policies:batch_policy"), CallablePolicy)
    assert make_policy("random").name == "random"
    assert make_policy("direct").generator is make_policy("rag").generator  # one model for all baselines
    for bad, msg in [("nope", "unknown policy"), ("openai:http://x", "URL#MODEL"), ("callable:json", "module:function"),
                     ("callable:json:nothing_here", "no attribute"), ("rag@gpt", "unknown model")]:
        with pytest.raises(ValueError, match=msg):
            make_policy(bad)
    with pytest.raises(FileNotFoundError, match="config.json"):
        make_policy("checkpoint:/nonexistent/folder")


def test_checkpoint_names_resolve_to_the_actor_folder(tmp_path):
    from search_envs.policies.registry import checkpoint_dir as _checkpoint_dir

    step = tmp_path / "checkpoints" / "step_000010"
    (step / "actor").mkdir(parents=True)
    (step / "actor" / "config.json").write_text("{}")
    (step / "actor" / "model.safetensors").write_bytes(b"")  # only paths are resolved here, nothing loaded
    (step / "trainer_state.pt").write_bytes(b"")
    (tmp_path / "checkpoints" / "latest").write_text("step_000010")
    assert _checkpoint_dir(str(step)) == step / "actor"
    assert _checkpoint_dir(str(step / "actor")) == step / "actor"
    assert _checkpoint_dir(str(tmp_path)) == step / "actor"  # a training output folder: its latest checkpoint


@pytest.mark.slow
def test_hf_policy_generates_protocol_actions(env, smollm2):
    from search_envs.policies.lm import LMPolicy

    policy = LMPolicy(smollm2)
    env.reset(seed=0)
    history = list(env.unwrapped.episode.transcript)
    actions = policy.act([history, history + [("action", "<think> I should search. </think>\n<search>")]])
    stops = env.unwrapped.protocol.stop_strings
    assert all(cut_at_stop(a, stops) == a for a in actions)  # nothing after the first stop string
    assert len(policy.last_tokens) == 2 and all(t > 0 for t in policy.last_tokens)
    records = run_episodes(policy, env, n=2, seed=0, progress=False)
    assert len(records) == 2 and all(r.tokens > 0 for r in records)


@pytest.mark.slow
def test_hf_batched_left_padding_matches_one_by_one(smollm2):
    convs = [[{"role": "user", "content": "What is the capital of France?"}],
             [{"role": "user", "content": "Name a colour. Reply with one word only, please, thank you."}]]
    together = smollm2.complete(convs, max_new_tokens=8)
    alone = [smollm2.complete([c], max_new_tokens=8)[0] for c in convs]
    assert [c.text for c in together] == [c.text for c in alone]
    assert all(c.tokens > 0 for c in together)


@pytest.mark.slow
def test_checkpoint_policy_loads_a_save_pretrained_folder(env):
    from search_envs.models import default_model_path

    policy = make_policy(f"checkpoint:{default_model_path()}", max_new_tokens=16)
    records = run_episodes(policy, env, n=1, progress=False)
    assert len(records) == 1 and records[0].tokens > 0


@pytest.mark.slow
def test_openai_policy_against_local_server_with_faults(env):
    from tests.openai_server import running_server

    with running_server() as server:
        policy = make_policy(f"openai:{server.base_url}#{server.model_name}", max_new_tokens=24)
        assert isinstance(policy, Policy)
        policy.generator.client.backoff = 0.01
        server.set_faults(fail_first=2)  # two 500s: retried, not fatal
        records = run_episodes(policy, env, n=2, seed=0, batch_size=2, progress=False)
        assert len(records) == 2 and all(r.turns >= 1 for r in records)
        assert server.stats["failed"] == 2 and server.stats["generated"] >= 2
        assert policy.generator.client.stats["retries"] >= 2
        assert all(r.trajectory.startswith("Answer the given question") for r in records)
        policy.close()
