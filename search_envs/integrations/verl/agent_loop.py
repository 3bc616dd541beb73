"""`SearchEnvAgentLoop`: verl's agent loop playing one episode of a search_envs env.

verl (>= 0.9.1, < 0.10) runs it for every row whose `agent_name` is `search_envs_agent`
(rows from `search-envs data export-verl`). One `run` is one episode, exactly as the
reference agent's `collect_rollouts` plays it:

- the prompt is the env's reset observation through the chat template
  (`search_envs.agents.rollout.encode_prompt`), cut to `rollout.prompt_length`;
- each turn the rollout server generates from the whole context (prompt + response so
  far) until one of the env protocol's stop strings or EOS, at most `max_turn_tokens`
  tokens; the tokens are kept as generated (never re-tokenised), mask 1;
- their text (special tokens skipped) is the env action; the env's observation is
  tokenised on its own, cut to `max_obs_tokens`, and appended with mask 0;
- the episode ends when the env ends it (answer, `max_turns`, `max_episode_chars`) with
  the env's reward, or, with reward 0, when the response would exceed `rollout.response_length`.

The reward is returned as `reward_score` (verl then skips its reward function) and its
components as `reward_extra_info`. The env's noise curriculum follows verl's global step:
the rollout server tags each generation with the step of the weights it sampled from
(`TokenOutput.extra_fields["global_steps"]`), and the loop sets the env's progress to it.
Episodes of one env configuration share one engine per worker process and their
searches are batched (`shared_envs`).
"""

from __future__ import annotations

import logging
import secrets
from typing import Any
from uuid import uuid4

try:
    from verl.experimental.agent_loop.agent_loop import AgentLoopBase, AgentLoopMetrics, AgentLoopOutput, register
    from verl.utils.profiler import simple_timer
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"the verl agent loop needs verl>=0.9.1,<0.10 ({exc}): pip install 'search-envs[verl]' (docs/verl.md)"
    ) from exc

from search_envs.agents.rollout import encode_prompt, eos_ids, truncate_at_stop
from search_envs.integrations.verl import AGENT_NAME
from search_envs.integrations.verl.reward import env_kwargs_of
from search_envs.integrations.verl.shared_envs import shared_env
from search_envs.rewards import EpisodeOutcome

logger = logging.getLogger(__name__)


@register(AGENT_NAME)
class SearchEnvAgentLoop(AgentLoopBase):
    """One episode of the row's env per `run` (see the module docstring).

    Keyword arguments (set them in the agent loop config file next to `_target_`):
        max_turn_tokens: tokens generated per turn at most (the reference agent's
            `max_response_length`; Search-R1: 500).
        max_obs_tokens: observation tokens appended per turn at most (Search-R1: 500).
        search_timeout: seconds a batched search may take before its episodes get an
            error observation instead of results.
        use_chat_template: wrap the prompt in the tokenizer's chat template (as the
            reference agent does); False for base models.
    """

    def __init__(self, *args: Any, max_turn_tokens: int = 500, max_obs_tokens: int = 500,
                 search_timeout: float = 60.0, use_chat_template: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if max_turn_tokens < 1 or max_obs_tokens < 0 or search_timeout <= 0:
            raise ValueError("max_turn_tokens must be >= 1, max_obs_tokens >= 0 and search_timeout > 0")
        self.prompt_length = int(self.rollout_config.prompt_length)
        self.response_length = int(self.rollout_config.response_length)
        self.max_turn_tokens, self.max_obs_tokens = int(max_turn_tokens), int(max_obs_tokens)
        self.search_timeout, self.use_chat_template = float(search_timeout), bool(use_chat_template)
        self.eos = eos_ids(self.tokenizer)

    def _stop_params(self, stop_strings: tuple[str, ...]) -> dict[str, Any]:
        """Stop strings in the rollout backend's own sampling parameters, kept in the output."""
        if not stop_strings:
            return {}
        if self.rollout_config.get("name", "vllm") == "sglang":
            return {"stop": list(stop_strings), "no_stop_trim": True}
        return {"stop": list(stop_strings), "include_stop_str_in_output": True}

    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> AgentLoopOutput:
        extra = dict(kwargs.get("extra_info") or {})
        missing = [k for k in ("env_id", "task_id") if not extra.get(k)]
        if missing:
            raise ValueError(f"row extra_info lacks {missing}: export the data with `search-envs data export-verl`")
        shared = shared_env(str(extra["env_id"]), env_kwargs_of(extra), self.search_timeout)
        env = await shared.new_episode()
        seed = int(extra["seed"]) if extra.get("seed") is not None else secrets.randbits(31)
        prompt, _ = env.reset(seed=seed, options={"task_id": str(extra["task_id"])})
        prompt_ids = encode_prompt(self.tokenizer, prompt, self.use_chat_template)[-self.prompt_length:]
        stop_strings = tuple(env.protocol.stop_strings)
        params = {**sampling_params, **self._stop_params(stop_strings)}
        want_logprobs = bool(sampling_params.get("logprobs"))

        request_id = uuid4().hex
        response_ids: list[int] = []
        response_mask: list[int] = []
        logprobs: list[float] = []
        metrics: dict[str, float] = {}
        steps_seen: list[int] = []
        reward, info, turns, exhausted = 0.0, {}, 0, False
        while True:
            budget = self.response_length - len(response_ids)
            if budget < 1:
                exhausted = True  # as the reference agent's context_exhausted: reward 0
                break
            with simple_timer("generate_sequences", metrics):
                output = await self.server_manager.generate(
                    request_id=request_id,
                    prompt_ids=prompt_ids + response_ids,
                    sampling_params={**params, "max_tokens": min(self.max_turn_tokens, budget)},
                )
            step = (output.extra_fields or {}).get("global_steps")
            if step is not None:
                steps_seen.append(int(step))
                env.set_progress(float(step))
            ids = truncate_at_stop(output.token_ids, self.tokenizer, stop_strings, self.eos)[:budget]
            response_ids += ids
            response_mask += [1] * len(ids)
            if want_logprobs and output.log_probs is not None and len(output.log_probs) >= len(ids):
                logprobs += [float(x) for x in output.log_probs[: len(ids)]]
            else:  # the server gave none: report none rather than made-up values
                want_logprobs = False
            turns += 1
            action = self.tokenizer.decode(ids, skip_special_tokens=True)
            with simple_timer("tool_calls", metrics):
                obs, step_reward, terminated, truncated, info = await shared.step(env, action)
            if terminated or truncated:
                reward = float(step_reward)
                break
            obs_ids = [int(t) for t in self.tokenizer.encode(obs, add_special_tokens=False)][: self.max_obs_tokens]
            response_ids += obs_ids
            response_mask += [0] * len(obs_ids)
            logprobs += [0.0] * (len(obs_ids) if want_logprobs else 0)

        if exhausted:  # the same keys as a finished episode's, so verl can stack them over the batch
            blank = EpisodeOutcome(None, env.episode.task.answers, False, env.episode.num_searches)
            components = {k: 0.0 for k in env.reward_spec.components(blank)}
        else:
            components = {k: float(v) for k, v in (info.get("reward_components") or {}).items()}
        reward_info = {
            **components,
            "num_searches": int(env.episode.num_searches),
            "num_actions": turns,
            "context_exhausted": exhausted,
            "noise_probability": env.noise_probability(),  # the curriculum at the episode's last step
        }
        extra_fields: dict[str, Any] = {"reward_extra_info": reward_info}
        if steps_seen:
            extra_fields.update(min_global_steps=min(steps_seen), max_global_steps=max(steps_seen))
        return AgentLoopOutput(
            prompt_ids=prompt_ids,
            response_ids=response_ids[: self.response_length],
            response_mask=response_mask[: self.response_length],
            response_logprobs=logprobs[: self.response_length] if want_logprobs else None,
            reward_score=reward,
            num_turns=2 * turns + 1,
            metrics=AgentLoopMetrics(**metrics),
            extra_fields=extra_fields,
        )
