"""The verl agent loop, with the real verl package (run in the verl CI environment, see
README "verl"): token-exact equivalence with the reference agent's rollouts, the env's
reward, the curriculum following verl's global step, one shared engine per worker, and
episodes over a dead or stalled retrieval server that end with error observations.

Generation sits behind an object with verl's `LLMServerClient` interface
(`async generate(request_id, *, prompt_ids, sampling_params) -> TokenOutput`) over a real
model. Sampling is seeded by the context, so the loop and the reference agent draw the
same tokens from the same context.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import socket
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import httpx
import pytest
import torch
from conftest import missing

try:
    import verl.experimental.agent_loop  # noqa: F401
except ImportError as exc:
    if importlib.util.find_spec("verl") is None:  # the main environment: `make test-verl` runs these in verl's
        pytest.skip("verl is not installed in this environment (README: verl; `make test-verl`)", allow_module_level=True)
    missing(f"verl is installed but its agent loop does not import: {exc}")

import hydra  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from verl.experimental.agent_loop.agent_loop import DictConfigWrap, ToolListWrap, _agent_loop_registry  # noqa: E402
from verl.utils.dataset.rl_dataset import RLHFDataset  # noqa: E402
from verl.workers.rollout.replica import TokenOutput  # noqa: E402

from search_envs.agents.rollout import HFRolloutGenerator, collect_rollouts, encode_prompt  # noqa: E402
from search_envs.agents.tiny import tiny_llama, torch_threads, word_tokenizer  # noqa: E402
from search_envs.integrations.verl import AGENT_NAME  # noqa: E402
from search_envs.integrations.verl.agent_loop import SearchEnvAgentLoop  # noqa: E402
from search_envs.integrations.verl.dataset import verl_rows  # noqa: E402
from search_envs.integrations.verl.shared_envs import shared_env  # noqa: E402
from search_envs.vector import make_vec  # noqa: E402

ENV_ID = "SearchEnvs/WikiBM25-v0"
ENV_KWARGS = {"tasks": "ramp:train", "max_turns": 3}


@pytest.fixture(autouse=True)
def one_torch_thread():
    with torch_threads(1):
        yield


class SeededGenerator:
    """The reference agent's HFRolloutGenerator, sampling each context with its own seed
    (a function of the context), one context per `generate` call."""

    def __init__(self, model, tokenizer, stop_strings, temperature: float = 1.0, seed: int = 0):
        self.model, self.tokenizer, self.seed, self.temperature = model, tokenizer, seed, temperature
        self.inner = HFRolloutGenerator(model, tokenizer, stop_strings, temperature=temperature, batch_size=1)

    def with_stops(self, stop_strings) -> "SeededGenerator":
        return SeededGenerator(self.model, self.tokenizer, stop_strings, self.temperature, self.seed)

    def generate(self, contexts, max_new_tokens: int) -> list[list[int]]:
        out = []
        for c in contexts:
            torch.manual_seed(self.seed + zlib.crc32(bytes(str(list(c)), "ascii")))
            out += self.inner.generate([list(c)], max_new_tokens)
        return out


class ModelServer:
    """verl's LLMServerClient interface over a real model (what verl's vLLM/SGLang server does on GPU)."""

    def __init__(self, generator: SeededGenerator, global_steps: int | None = None):
        self.generator, self.global_steps = generator, global_steps
        self.calls: list[dict] = []

    async def generate(self, request_id, *, prompt_ids, sampling_params, **kwargs) -> TokenOutput:
        self.calls.append(dict(sampling_params))
        gen = self.generator.with_stops(tuple(sampling_params.get("stop") or ()))
        ids = gen.generate([prompt_ids], int(sampling_params["max_tokens"]))[0]
        return TokenOutput(token_ids=ids, extra_fields={"global_steps": self.global_steps})


class ScriptedServer:
    """Answers every turn with the next scripted action (for tests about the env side);
    with `logprob`, reports that log-prob for every token."""

    def __init__(self, tokenizer, actions: list[str], global_steps: int | None = None, logprob: float | None = None):
        self.tokenizer, self.actions, self.global_steps, self.turn = tokenizer, actions, global_steps, 0
        self.logprob = logprob

    async def generate(self, request_id, *, prompt_ids, sampling_params, **kwargs) -> TokenOutput:
        text = self.actions[min(self.turn, len(self.actions) - 1)]
        self.turn += 1
        await asyncio.sleep(0)
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        return TokenOutput(token_ids=ids, log_probs=None if self.logprob is None else [self.logprob] * len(ids),
                           extra_fields={"global_steps": self.global_steps})


def make_loop(tokenizer, server, response_length: int = 4096, prompt_length: int = 4096, entry=None, **loop_kwargs):
    """The loop as verl's AgentLoopWorker builds it: from the registry (or an agent loop
    config file's `entry`), through hydra."""
    config = OmegaConf.create({
        "actor_rollout_ref": {"rollout": {"name": "vllm", "prompt_length": prompt_length,
                                          "response_length": response_length}},
        "data": {},
    })
    loop_config = OmegaConf.merge(entry if entry is not None else _agent_loop_registry[AGENT_NAME], loop_kwargs)
    return hydra.utils.instantiate(
        config=loop_config, trainer_config=DictConfigWrap(config), server_manager=server, tokenizer=tokenizer,
        processor=None, hf_model_type=None, dataset_cls=RLHFDataset, data_config=DictConfigWrap(config.data),
        tools=ToolListWrap({}),
    )


def row_kwargs(task_id: str, seed: int, env_id: str = ENV_ID, env_kwargs: dict | None = None) -> dict:
    """What verl passes to `run` for one exported row (its non-tensor fields)."""
    from search_envs.datasets import load_tasks

    env_kwargs = dict(ENV_KWARGS if env_kwargs is None else env_kwargs)
    task = load_tasks(env_kwargs["tasks"]).by_id(task_id)
    row = verl_rows([task], env_id, env_kwargs, "train")[0]
    row["extra_info"]["seed"] = seed
    return {"raw_prompt": row["prompt"], "agent_name": row["agent_name"], "data_source": row["data_source"],
            "reward_model": row["reward_model"], "extra_info": row["extra_info"], "index": 0}


def play(loop, kwargs, sampling_params=None):
    return asyncio.run(loop.run(dict(sampling_params or {"temperature": 1.0, "top_p": 1.0}), **kwargs))


@pytest.fixture(scope="module")
def wiki_tasks():
    from search_envs.datasets import load_tasks

    return list(load_tasks("ramp:train"))


def reference(generator, tokenizer, task_id, seed, response_length, max_turn_tokens, max_obs_tokens,
              use_chat_template):
    """The reference agent's trajectory for one episode, with the same length limits."""
    vec = make_vec(ENV_ID, 1, **ENV_KWARGS)
    try:
        prompt = vec.envs[0].protocol.prompt(vec.envs[0].tasks.by_id(task_id).question)
        n_prompt = len(encode_prompt(tokenizer, prompt, use_chat_template))
        return collect_rollouts(generator, tokenizer, vec, [task_id], [0], use_chat_template=use_chat_template,
                                max_response_length=max_turn_tokens, max_obs_length=max_obs_tokens,
                                max_total_length=n_prompt + response_length, seed=seed)[0]
    finally:
        vec.close()


def assert_same_episode(out, traj, response_length: int):
    """Token for token; verl's response holds at most response_length tokens, so an
    exhausted episode's last observation is cut there (the reference keeps it whole)."""
    assert out.prompt_ids == traj.input_ids[: traj.prompt_length]
    assert out.response_ids == traj.input_ids[traj.prompt_length:][:response_length]
    assert out.response_mask == traj.policy_mask[traj.prompt_length:][:response_length]
    assert out.reward_score == traj.reward
    assert out.extra_fields["reward_extra_info"]["context_exhausted"] == traj.context_exhausted
    if traj.info.get("reward_components"):
        for k, v in traj.info["reward_components"].items():
            assert out.extra_fields["reward_extra_info"][k] == v


# --- token-exact equivalence -------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(wiki_tasks):
    """The word tokenizer and a tiny random Llama whose output layer is nudged towards
    <search> and </search>, so its random actions include real searches (BM25 results)."""
    from search_envs.protocols import SearchR1Protocol

    p = SearchR1Protocol()
    texts = [p.prompt(t.question) for t in wiki_tasks[:40]]
    texts += [p.error_observation("no <search> or <answer> block"), p.error_observation("empty search query")]
    tok = word_tokenizer(texts, extra_words=["<information>", "</information>", "Doc", "Title"])
    model = tiny_llama(len(tok), seed=1)
    with torch.no_grad():
        ids = torch.tensor([tok.encode(texts[0], add_special_tokens=False)])
        h = model(ids, output_hidden_states=True).hidden_states[-1][0].mean(0)
        head = torch.nn.Linear(h.numel(), len(tok), bias=False)
        head.weight.copy_(model.get_input_embeddings().weight)
        for word, scale in (("<search>", 2.6), ("</search>", 2.4)):
            head.weight[tok.convert_tokens_to_ids(word)] = scale * h / h.norm()
    model.lm_head, model.config.tie_word_embeddings = head, False
    return tok, model


@pytest.mark.parametrize("response_length", [4096, 60])
def test_tiny_model_episodes_equal_the_reference_trajectories(tiny, wiki_tasks, response_length):
    tok, model = tiny
    gen = SeededGenerator(model, tok, (), seed=7)
    loop = make_loop(tok, ModelServer(gen), response_length=response_length, max_turn_tokens=16,
                     max_obs_tokens=40, use_chat_template=False)
    multi_turn = exhausted = searched = 0
    for n, task in enumerate(wiki_tasks[:3]):
        out = play(loop, row_kwargs(task.id, seed=n))
        traj = reference(gen.with_stops(("</search>", "</answer>")), tok, task.id, n, response_length, 16, 40, False)
        assert traj.done
        assert_same_episode(out, traj, response_length)
        multi_turn += len(traj.actions) > 1
        exhausted += traj.context_exhausted
        searched += sum("<information>" in o for o in traj.observations)
    assert searched or response_length < 100, "some actions search: observations of real BM25 results (mask 0)"
    assert multi_turn, "random actions are invalid: episodes go on with error observations (mask-0 runs)"
    if response_length == 60:
        assert exhausted, "a 60-token response budget must cut some episode"


@pytest.mark.slow
def test_smollm2_episodes_equal_the_reference_trajectories(wiki_tasks):
    from search_envs.models import load_causal_lm

    model, tok = load_causal_lm(None, device="cpu")
    gen = SeededGenerator(model, tok, (), seed=0)
    server = ModelServer(gen)
    loop = make_loop(tok, server, response_length=120, max_turn_tokens=24, max_obs_tokens=60)
    for n, task in enumerate(wiki_tasks[:2]):
        out = play(loop, row_kwargs(task.id, seed=n))
        traj = reference(gen.with_stops(("</search>", "</answer>")), tok, task.id, n, 120, 24, 60, True)
        assert_same_episode(out, traj, 120)
        prompt = row_kwargs(task.id, n)["raw_prompt"]  # the exported prompt column: the env's own prompt
        assert tok.decode(out.prompt_ids) == tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    # the rollout server was asked for the protocol's stop strings, kept in the output
    assert server.calls[0]["stop"] == ["</search>", "</answer>"] and server.calls[0]["include_stop_str_in_output"]


# --- reward, curriculum, shared engine ---------------------------------------------------------
@pytest.fixture(scope="module")
def smol_tokenizer():
    from transformers import AutoTokenizer

    from search_envs.models import default_model_path

    return AutoTokenizer.from_pretrained(str(default_model_path()))


def test_answer_reward_and_components_are_the_envs(smol_tokenizer, wiki_tasks):
    task = wiki_tasks[5]
    actions = ["<think> look it up </think><search> " + task.question[:60] + " </search>",
               f"<think> ok </think><answer> {task.answers[0]} </answer>"]
    env_kwargs = {**ENV_KWARGS, "reward": "r1_searcher_stage2"}
    loop = make_loop(smol_tokenizer, ScriptedServer(smol_tokenizer, actions))
    out = play(loop, row_kwargs(task.id, 0, env_kwargs=env_kwargs))
    info = out.extra_fields["reward_extra_info"]
    assert out.reward_score == pytest.approx(1.0) and info["r1_searcher_f1"] == pytest.approx(1.0)
    assert info["num_searches"] == 1 and info["num_actions"] == 2
    text = smol_tokenizer.decode([t for t, m in zip(out.response_ids, out.response_mask) if m == 0])
    assert "<information>" in text and "Doc 1(Title:" in text
    # a wrong answer scores as the env scores it
    wrong = make_loop(smol_tokenizer, ScriptedServer(smol_tokenizer, ["<answer> zzz qqq </answer>"]))
    assert play(wrong, row_kwargs(task.id, 0, env_kwargs=env_kwargs)).reward_score == 0.0


def test_rollout_logprobs_line_up_with_the_policy_tokens(smol_tokenizer, wiki_tasks):
    actions = ["<search> Hamlet </search>", "<answer> x </answer>"]
    params = {"temperature": 1.0, "logprobs": True}
    out = play(make_loop(smol_tokenizer, ScriptedServer(smol_tokenizer, actions, logprob=-0.5)),
               row_kwargs(wiki_tasks[0].id, 0), params)
    assert len(out.response_logprobs) == len(out.response_ids)
    assert [lp == -0.5 for lp in out.response_logprobs] == [m == 1 for m in out.response_mask]
    assert 0 in out.response_mask
    # a server that gives no log-probs: none reported, rather than zeros
    silent = play(make_loop(smol_tokenizer, ScriptedServer(smol_tokenizer, actions)), row_kwargs(wiki_tasks[0].id, 0),
                  params)
    assert silent.response_logprobs is None and silent.response_ids == out.response_ids


def test_curriculum_follows_verls_global_step(smol_tokenizer, wiki_tasks):
    from search_envs.curriculum import make_schedule

    schedule = {"name": "linear", "total_steps": 10}
    env_kwargs = {"tasks": "ramp:train", "max_turns": 2, "noise_schedule": schedule}
    probs = {}
    for step in (0, 5, 10):
        server = ScriptedServer(smol_tokenizer, ["<search> Hamlet </search>"], global_steps=step)
        out = play(make_loop(smol_tokenizer, server), row_kwargs(wiki_tasks[0].id, 0, "SearchEnvs/NoisyWiki-v0",
                                                                   env_kwargs))
        probs[step] = out.extra_fields["reward_extra_info"]["noise_probability"]
        assert out.extra_fields["min_global_steps"] == out.extra_fields["max_global_steps"] == step
    assert probs == {s: pytest.approx(make_schedule(schedule)(s)) for s in (0, 5, 10)}
    assert probs[0] < probs[5] < probs[10]


def test_concurrent_episodes_share_one_engine_and_batch_their_searches(smol_tokenizer, wiki_tasks):
    env_kwargs = {"tasks": "ramp:train", "max_turns": 1, "top_k": 2}
    shared = shared_env(ENV_ID, env_kwargs)

    async def many(n):
        # a window that holds on a loaded machine: the default 2 ms is shorter than a time slice
        # there, so eight episodes' searches can straddle it (2 calls under load average 11)
        shared.batcher().window = 1.0
        loops = [make_loop(smol_tokenizer, ScriptedServer(smol_tokenizer, [f"<search> {t.question[:40]} </search>"]))
                 for t in wiki_tasks[:n]]
        outs = await asyncio.gather(*(lp.run({}, **row_kwargs(t.id, i, env_kwargs=env_kwargs))
                                      for i, (lp, t) in enumerate(zip(loops, wiki_tasks[:n]))))
        return outs, shared.batcher().engine_calls

    outs, calls = asyncio.run(many(8))
    assert all(o.extra_fields["reward_extra_info"]["num_searches"] == 1 for o in outs)
    assert calls == 1, "eight concurrent searches go to the engine in one call"
    assert shared_env(ENV_ID, dict(env_kwargs)) is shared  # one per configuration and process
    assert len({id(shared.prototype.engine)}) == 1


# --- a dead or stalled retrieval server ----------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_serving(proc: subprocess.Popen, port: int, timeout: float = 60.0) -> None:
    """Block until the server answers /health (it loads its index first)."""
    deadline = time.monotonic() + timeout
    with httpx.Client(transport=httpx.HTTPTransport(retries=0), timeout=1) as client:
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                client.get(f"http://127.0.0.1:{port}/health").raise_for_status()
                return
            except httpx.HTTPError:
                time.sleep(0.1)
    pytest.fail(f"the retrieval server did not start: {proc.stdout.read() if proc.poll() is not None else ''}")


@pytest.mark.slow
def test_killed_retrieval_server_gives_error_observations(smol_tokenizer, wiki_tasks, bm25_engine):
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen([sys.executable, "-m", "search_envs.cli", "serve", "--index", str(bm25_engine.directory),
                             "--port", str(port), "--log-level", "warning"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/retrieve"
    try:
        wait_until_serving(proc, port)
        env_kwargs = {"tasks": "ramp:train", "max_turns": 2, "engine": url}
        actions = ["<search> Hamlet Shakespeare </search>", "<search> Hamlet </search>"]
        live = play(make_loop(smol_tokenizer, ScriptedServer(smol_tokenizer, actions)),
                    row_kwargs(wiki_tasks[0].id, 0, env_kwargs=env_kwargs))
        assert "(Title: \"Hamlet\")" in smol_tokenizer.decode(live.response_ids)
    finally:
        proc.kill()
        proc.wait(timeout=20)
    t0 = time.monotonic()
    dead = play(make_loop(smol_tokenizer, ScriptedServer(smol_tokenizer, actions)),
                row_kwargs(wiki_tasks[1].id, 0, env_kwargs=env_kwargs))
    assert time.monotonic() - t0 < 60  # no hang: two searches of 4 refused attempts and 1.75 s of backoff
    text = smol_tokenizer.decode([t for t, m in zip(dead.response_ids, dead.response_mask) if m == 0])
    assert "Search failed: the retrieval server is unavailable" in text and "Doc 1(Title:" not in text
    assert dead.extra_fields["reward_extra_info"]["num_actions"] == 2  # the episode went on after the error


def test_stalled_retrieval_server_times_out_into_an_error_observation(smol_tokenizer, wiki_tasks):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept():  # accept connections, never answer
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/retrieve"
        env_kwargs = {"tasks": "ramp:train", "max_turns": 1, "engine": url}
        loop = make_loop(smol_tokenizer, ScriptedServer(smol_tokenizer, ["<search> Hamlet </search>"]),
                         search_timeout=1.0)
        t0 = time.monotonic()
        out = play(loop, row_kwargs(wiki_tasks[2].id, 0, env_kwargs=env_kwargs))
        assert time.monotonic() - t0 < 20  # abandoned at 1 s; without search_timeout it waits the engine's 30 s timeout
        text = smol_tokenizer.decode(out.response_ids)
        assert "did not answer within 1 seconds" not in text  # max_turns=1: the step's observation is not appended
        assert out.extra_fields["reward_extra_info"]["num_searches"] == 0
        # with a second turn the error observation is in the response, masked 0
        loop2 = make_loop(smol_tokenizer, ScriptedServer(smol_tokenizer, ["<search> Hamlet </search>"]),
                          search_timeout=1.0)
        out2 = play(loop2, row_kwargs(wiki_tasks[2].id, 0, env_kwargs={**env_kwargs, "max_turns": 2}))
        env_text = smol_tokenizer.decode([t for t, m in zip(out2.response_ids, out2.response_mask) if m == 0])
        assert "did not answer within 1 seconds" in env_text
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in accepted:
            conn.close()
        listener.close()


def test_a_row_without_env_fields_is_a_clear_error(smol_tokenizer):
    loop = make_loop(smol_tokenizer, ScriptedServer(smol_tokenizer, ["<answer> x </answer>"]))
    with pytest.raises(ValueError, match="export-verl"):
        play(loop, {"raw_prompt": [{"role": "user", "content": "q"}], "extra_info": {"index": 0}})


def test_the_loop_is_registered_by_name():
    assert _agent_loop_registry[AGENT_NAME]["_target_"].endswith("agent_loop.SearchEnvAgentLoop")
    assert issubclass(SearchEnvAgentLoop, __import__("verl").experimental.agent_loop.AgentLoopBase)


# --- the example launch configs ----------------------------------------------------------------
@pytest.mark.parametrize("algo", ["GRPO", "PPO"])
def test_example_overrides_compose_with_verls_trainer_config(algo, tiny):
    """examples/verl/common.sh's overrides are valid for verl 0.9.1's ppo_trainer config,
    and its agent loop file registers this loop under the exported rows' agent name."""
    import verl
    from hydra import compose, initialize_config_dir
    from verl.utils.config import omega_conf_to_dataclass

    root = Path(__file__).resolve().parents[1]
    printed = subprocess.run(
        ["bash", "-c", f'DATA_DIR=/data BASE_MODEL=Qwen/Qwen2.5-3B; source examples/verl/common.sh; '
                       f'printf "%s\\n" "${{COMMON_ARGS[@]}}" "${{{algo}_ARGS[@]}}"'],
        cwd=root, capture_output=True, text=True, check=True).stdout
    overrides = [line for line in printed.splitlines() if line]
    with initialize_config_dir(config_dir=str(Path(verl.__file__).parent / "trainer" / "config"), version_base=None):
        cfg = compose(config_name="ppo_trainer", overrides=overrides)
    rollout = omega_conf_to_dataclass(cfg.actor_rollout_ref.rollout)
    assert (rollout.prompt_length, rollout.response_length) == (2048, 2048)
    assert rollout.n == (5 if algo == "GRPO" else 1)
    assert cfg.algorithm.adv_estimator == ("grpo" if algo == "GRPO" else "gae")
    entries = OmegaConf.load(rollout.agent.agent_loop_config_path)
    entry = next(e for e in entries if e.name == rollout.agent.default_agent_loop == AGENT_NAME)
    assert hydra.utils.get_class(entry._target_) is SearchEnvAgentLoop
    loop = make_loop(tiny[0], None, entry=entry)  # the file's keyword arguments reach the loop
    assert (loop.max_turn_tokens, loop.max_obs_tokens, loop.search_timeout) == (500, 500, 60.0)


# --- the other env ids -------------------------------------------------------------------------
@pytest.fixture()
def env_setup(request, tmp_path):
    """(env id, env kwargs (JSON-able, as a row stores them), search action, text the results
    must show) for each kind of engine, each on a real local backend."""
    from search_envs.corpus import embedded_subset_path

    kind = request.param
    if kind in ("dense", "hybrid"):
        request.getfixturevalue("tmp_cache")  # the index of this small corpus is built into a fresh cache
        corpus = str(embedded_subset_path(60, include=("Hamlet", "Tokyo")))
        env_id = "SearchEnvs/WikiDense-v0" if kind == "dense" else "SearchEnvs/WikiHybrid-v0"
        yield env_id, {"tasks": "ramp:train", "corpus": corpus}, "<search> tragedy Hamlet </search>", 'Title: "Hamlet"'
    elif kind == "sim":
        from openai_server import running_server

        from search_envs.generation import TransformersGenerator

        with running_server(TransformersGenerator(num_threads=1)) as server:
            yield "SearchEnvs/SimSearch-v0", {
                "tasks": "ramp:train", "generator": "openai", "cache": str(tmp_path / "sim.sqlite"),
                "generator_kwargs": {"base_url": server.base_url, "model": server.model_name},
                "engine_kwargs": {"max_new_tokens": 24}, "top_k": 1,
                "noise_schedule": {"name": "constant", "p": 0.0},
            }, "<search> Hamlet </search>", "Doc 1"
    else:  # the live-web env against local provider and page servers speaking their APIs
        from test_web_env import KEYS
        from web_servers import LocalWeb

        tasks = tmp_path / "curie.jsonl"
        tasks.write_text('{"id": "curie", "question": "Which element was discovered by Marie Curie?", '
                         '"golden_answers": ["polonium"]}\n')
        with LocalWeb() as web:
            yield "SearchEnvs/WebSearch-v0", {
                "tasks": str(tasks), "provider": "tavily",
                "provider_options": {"api_key": KEYS["tavily"], "base_url": web.provider_base("tavily")},
            }, '<tool_call>{"name": "web_search", "arguments": {"query": ["Eiffel tower"]}}</tool_call>', "Eiffel Tower"


@pytest.mark.slow
@pytest.mark.parametrize("env_setup", ["dense", "hybrid", "sim", "web"], indirect=True)
def test_every_kind_of_env_plays_through_the_loop(env_setup, smol_tokenizer):
    import gymnasium as gym

    env_id, env_kwargs, action, shown = env_setup
    task_id = gym.make(env_id, **env_kwargs).unwrapped.tasks[0].id
    answer = "<answer> x </answer>"
    # a CPU simulator writing documents is slow on a shared machine: a generous search timeout
    out = play(make_loop(smol_tokenizer, ScriptedServer(smol_tokenizer, [action, answer]), search_timeout=600),
               row_kwargs(task_id, 0, env_id, env_kwargs))
    env_text = smol_tokenizer.decode([t for t, m in zip(out.response_ids, out.response_mask) if m == 0])
    assert shown in env_text and "Search failed" not in env_text
    info = out.extra_fields["reward_extra_info"]
    assert info["num_searches"] == 1 and info["num_actions"] == 2 and out.reward_score == 0.0


# --- end to end through verl's own worker and dataset --------------------------------------------
@pytest.mark.slow
def test_verls_agent_loop_worker_runs_exported_rows(tmp_path):
    """`search-envs data export-verl` rows, read by verl's RLHFDataset, run by verl's
    AgentLoopWorker with the example config: verl's batch comes back with the env's rewards
    as rm_scores, their components as reward extra keys and the step of the weights."""
    import verl
    from hydra import compose, initialize_config_dir
    from verl.experimental.agent_loop.agent_loop import AgentLoopWorker
    from verl.protocol import DataProto
    from verl.utils.dataset.rl_dataset import collate_fn

    from search_envs.integrations.verl.dataset import export_verl
    from search_envs.models import default_model_path, load_causal_lm

    paths = export_verl("ramp:test", tmp_path, env_kwargs={"max_turns": 2}, test_fraction=0.1)
    root = Path(__file__).resolve().parents[1]
    printed = subprocess.run(
        ["bash", "-c", f'DATA_DIR={tmp_path} BASE_MODEL={default_model_path()}; source examples/verl/common.sh; '
                       'printf "%s\\n" "${COMMON_ARGS[@]}" "${GRPO_ARGS[@]}"'],
        cwd=root, capture_output=True, text=True, check=True).stdout
    overrides = [line for line in printed.splitlines() if line] + [
        "data.max_prompt_length=1024", "data.max_response_length=48"]
    with initialize_config_dir(config_dir=str(Path(verl.__file__).parent / "trainer" / "config"), version_base=None):
        cfg = compose(config_name="ppo_trainer", overrides=overrides)
    model, tok = load_causal_lm(None, device="cpu")
    worker = AgentLoopWorker(cfg, llm_client=ModelServer(SeededGenerator(model, tok, ()), global_steps=3))
    dataset = RLHFDataset(str(paths["test"]), worker.tokenizer, cfg.data)
    batch = DataProto.from_single_dict(collate_fn([dataset[i] for i in range(2)]))
    batch.meta_info["global_steps"] = 3
    out = asyncio.run(worker.generate_sequences(batch))
    assert out.batch["responses"].shape == (2, 48)
    assert out.meta_info["reward_extra_keys"][:2] == ["em", "num_searches"]
    # the episode reward (here exact match, its only component) on the last response token
    assert out.batch["rm_scores"].sum(-1).tolist() == [float(x) for x in out.non_tensor_batch["em"]]
    assert ((out.batch["rm_scores"] != 0).sum(-1) <= 1).all()
    assert list(out.non_tensor_batch["max_global_steps"]) == [3, 3]
    # the policy tokens the worker trains on lie inside the response and start it
    mask = out.batch["response_mask"]
    assert (mask[:, 0] == 1).all() and (mask.sum(-1) > 0).all()


@pytest.mark.slow
def test_launch_script_serves_exports_and_builds_a_valid_verl_command(tmp_path):
    """examples/verl/train.sh with DRY_RUN=1: starts `search-envs serve`, waits for it,
    exports the rows against it, and prints a verl command whose overrides compose."""
    import verl
    from hydra import compose, initialize_config_dir

    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, DRY_RUN="1", PYTHON=sys.executable, DATA_DIR=str(tmp_path), PORT=str(free_port()),
               TASKS="ramp:test", TEST_TASKS="ramp:test", PYTHONPATH=str(root))
    done = subprocess.run(["bash", "examples/verl/train.sh", "grpo", "trainer.total_training_steps=3"], cwd=root,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    command = [line for line in done.stdout.splitlines() if line]
    assert command[:3] == [sys.executable, "-m", "verl.trainer.main_ppo"]
    with initialize_config_dir(config_dir=str(Path(verl.__file__).parent / "trainer" / "config"), version_base=None):
        cfg = compose(config_name="ppo_trainer", overrides=command[3:])
    assert cfg.trainer.total_training_steps == 3 and cfg.actor_rollout_ref.rollout.n == 5
    rows = __import__("pandas").read_parquet(cfg.data.train_files)
    kwargs = __import__("json").loads(rows.iloc[0]["extra_info"]["env_kwargs"])
    assert kwargs["engine"] == f"http://127.0.0.1:{env['PORT']}/retrieve" and kwargs["max_turns"] == 3
