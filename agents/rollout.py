"""Token-exact multi-turn rollouts: generate until a stop string, step the env,
append the observation's tokens, repeat.

Token ids are kept exactly as the policy generated them and as the observation
was inserted; the text is never re-tokenised as a whole (which drifts at the
seams between action and observation). Each token carries a mask: 1 when the
policy generated it, 0 for the prompt and environment text.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


@dataclass
class Trajectory:
    """One episode as the trainer sees it."""

    task_id: str
    group: int
    """Rollouts of the same question share a group (GRPO normalises within it)."""
    input_ids: list[int]
    policy_mask: list[int]
    """1 for tokens the policy generated, 0 for prompt and observation tokens."""
    prompt_length: int
    actions: list[str] = field(default_factory=list)
    observations: list[str] = field(default_factory=list)
    reward: float = 0.0
    done: bool = False
    context_exhausted: bool = False
    """The context reached max_total_length before the episode ended (reward 0)."""
    info: dict[str, Any] = field(default_factory=dict)
    noisy: list[bool] = field(default_factory=list)

    def loss_mask(self, mask_retrieved_tokens: bool = True) -> list[int]:
        """Tokens trained on: the policy's (default) or, in the ablation, every token after the prompt."""
        if mask_retrieved_tokens:
            return list(self.policy_mask)
        return [0] * self.prompt_length + [1] * (len(self.input_ids) - self.prompt_length)

    @property
    def num_policy_tokens(self) -> int:
        return int(sum(self.policy_mask))

    @property
    def num_response_tokens(self) -> int:
        return len(self.input_ids) - self.prompt_length


def encode_prompt(tokenizer, text: str, use_chat_template: bool = True) -> list[int]:
    """The prompt's token ids: the chat template applied to one user message with
    add_generation_prompt, or the plain text when the tokenizer has no template."""
    if use_chat_template and getattr(tokenizer, "chat_template", None):
        out = tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True
        )
        ids = out["input_ids"] if isinstance(out, dict) or hasattr(out, "keys") else out
        return [int(t) for t in ids]
    return [int(t) for t in tokenizer.encode(text, add_special_tokens=False)]


def encode_observation(tokenizer, text: str, max_obs_length: int) -> list[int]:
    """An observation's token ids as appended to the context: its first `max_obs_length` tokens."""
    return [int(t) for t in tokenizer.encode(text, add_special_tokens=False)][:max_obs_length]


def tokenize_episode(tokenizer, transcript, *, task_id: str = "", reward: float = 0.0, use_chat_template: bool = True,
                     max_start_length: int = 2048, max_obs_length: int = 500, max_total_length: int = 4096,
                     **_: Any) -> Trajectory:
    """A played episode (an env transcript: ("prompt" | "action" | "observation", text) pairs)
    as the token ids and policy mask `collect_rollouts` would have built had the policy
    generated the actions' tokens: the prompt as `encode_prompt`, each action's tokens
    (mask 1), each observation that a later action follows (`encode_observation`, mask 0),
    cut at max_total_length. Cold-start SFT trains on exactly what RL sees."""
    items = [(str(role), str(text)) for role, text in transcript]
    if not items or items[0][0] != "prompt":
        raise ValueError("a transcript starts with the ('prompt', text) item")
    ids = encode_prompt(tokenizer, items[0][1], use_chat_template)[-max_start_length:]
    traj = Trajectory(str(task_id), 0, ids, [0] * len(ids), len(ids), reward=float(reward), done=True)
    last_action = max((i for i, (role, _) in enumerate(items) if role == "action"), default=0)
    for i, (role, text) in enumerate(items[1:], 1):
        if role == "action":
            new, flag = [int(t) for t in tokenizer.encode(text, add_special_tokens=False)], 1
            traj.actions.append(text)
        elif role == "observation" and i < last_action:
            new, flag = encode_observation(tokenizer, text, max_obs_length), 0
            traj.observations.append(tokenizer.decode(new))
        else:
            continue
        room = max_total_length - len(traj.input_ids)
        if len(new) > room:
            traj.context_exhausted = True
            new = new[:room]
        traj.input_ids.extend(new)
        traj.policy_mask.extend([flag] * len(new))
        if traj.context_exhausted:
            break
    return traj


def eos_ids(tokenizer, model=None) -> set[int]:
    ids: set[int] = set()
    for source in (getattr(getattr(model, "generation_config", None), "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(source, int):
            ids.add(source)
        elif source is not None:
            ids.update(int(x) for x in source)
    return ids


def truncate_at_stop(ids: Sequence[int], tokenizer, stop_strings: Sequence[str], eos: set[int]) -> list[int]:
    """Cut generated ids after the token that completes the first stop string or is
    an EOS token (both kept: the policy generated them). Tokens are never split, so
    a token that runs past the stop string is kept whole."""
    ids = [int(t) for t in ids]
    for i, t in enumerate(ids):
        if t in eos:
            ids = ids[: i + 1]
            break
    if not stop_strings or not ids:
        return ids
    pieces = tokenizer.batch_decode([[t] for t in ids])
    text, ends, pos = "".join(pieces), [], 0
    for piece in pieces:
        pos += len(piece)
        ends.append(pos)
    hits = [text.find(s) + len(s) for s in stop_strings if s and s in text]
    if not hits:
        return ids
    first_end = min(hits)
    for i, end in enumerate(ends):
        if end >= first_end:
            return ids[: i + 1]
    return ids


class StopOnStrings:
    """Per-sequence StoppingCriteria: a row is done once its generated tokens
    (never the prompt, which may quote a stop string) contain a stop string.

    Works with any tokenizer, unlike transformers' StopStringCriteria, which
    needs byte-level token strings."""

    def __init__(self, tokenizer, stop_strings: Sequence[str], prompt_width: int, window: int = 32):
        self.tokenizer, self.stop_strings = tokenizer, tuple(s for s in stop_strings if s)
        self.prompt_width, self.window = prompt_width, window

    def __call__(self, input_ids: torch.Tensor, scores=None, **kwargs) -> torch.Tensor:
        new = input_ids[:, self.prompt_width:][:, -self.window:]
        texts = self.tokenizer.batch_decode(new.tolist())
        return torch.tensor([any(s in t for s in self.stop_strings) for t in texts], device=input_ids.device)


class HFGenerator:
    """Batched sampling with transformers' `generate` (KV cache, left padding,
    per-sequence stop strings)."""

    def __init__(self, model, tokenizer, stop_strings: Sequence[str], temperature: float = 1.0, top_p: float = 1.0,
                 batch_size: int = 64):
        self.model, self.tokenizer = model, tokenizer
        self.batch_size = max(1, batch_size)
        self.stop_strings = tuple(stop_strings)
        self.temperature, self.top_p = temperature, top_p
        self.eos = eos_ids(tokenizer, model)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos, default=0)

    def sync(self, model) -> None:
        """The HF generator samples from the training model itself."""
        self.model = model

    def generate(self, contexts: Sequence[Sequence[int]], max_new_tokens: int) -> list[list[int]]:
        """New token ids for each context, cut after a stop string or EOS; `batch_size`
        contexts per `generate` call."""
        out: list[list[int]] = []
        for s in range(0, len(contexts), self.batch_size):
            out.extend(self._generate(contexts[s : s + self.batch_size], max_new_tokens))
        return out

    @torch.no_grad()
    def _generate(self, contexts: Sequence[Sequence[int]], max_new_tokens: int) -> list[list[int]]:
        from transformers import GenerationConfig, StoppingCriteriaList

        device = next(self.model.parameters()).device
        width = max(len(c) for c in contexts)
        input_ids = torch.full((len(contexts), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(contexts), width), dtype=torch.long)
        for i, c in enumerate(contexts):
            input_ids[i, width - len(c):] = torch.as_tensor(c, dtype=torch.long)
            attention[i, width - len(c):] = 1
        sample = self.temperature > 0
        config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=sample,
            temperature=self.temperature if sample else None,
            top_p=self.top_p if sample else None,
            top_k=0 if sample else None,
            pad_token_id=self.pad_id,
            eos_token_id=sorted(self.eos) or None,
            use_cache=True,
        )
        was_training = self.model.training
        self.model.eval()
        try:
            out = self.model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention.to(device),
                generation_config=config,
                stopping_criteria=StoppingCriteriaList([StopOnStrings(self.tokenizer, self.stop_strings, width)]),
            )
        finally:
            self.model.train(was_training)
        new = out[:, width:].tolist()
        return [truncate_at_stop(row, self.tokenizer, self.stop_strings, self.eos) for row in new]


class VLLMGenerator:
    """Optional vLLM rollouts (GPU). The training model's weights are copied into
    the vLLM engine by `sync` before each step's rollouts."""

    def __init__(self, model_path: str, tokenizer, stop_strings: Sequence[str], temperature: float = 1.0,
                 top_p: float = 1.0, dtype: str = "bfloat16", gpu_memory_utilization: float = 0.6,
                 max_model_len: int = 4096):
        try:
            import vllm
        except ImportError:
            raise ImportError(
                "rollout_backend='vllm' needs vLLM (a CUDA machine): `pip install 'search-envs[vllm]'`, "
                "or use rollout_backend='hf'"
            ) from None
        self._vllm = vllm
        self.tokenizer = tokenizer
        self.stop_strings = tuple(stop_strings)
        self.eos = eos_ids(tokenizer)
        self.temperature, self.top_p = temperature, top_p
        self.llm = vllm.LLM(model=str(model_path), dtype=dtype, gpu_memory_utilization=gpu_memory_utilization,
                            max_model_len=max_model_len, enable_prefix_caching=True)

    def sync(self, model) -> None:
        weights = [(name, p.detach()) for name, p in model.state_dict().items()]
        engine = self.llm.llm_engine
        executor = getattr(engine, "model_executor", None)
        runner = getattr(getattr(executor, "driver_worker", None), "model_runner", None)
        if runner is not None:
            runner.model.load_weights(weights)
        else:  # vLLM >= 0.8 (V1 engine): run the load inside each worker
            self.llm.collective_rpc(lambda worker: worker.model_runner.model.load_weights(weights))
        if hasattr(self.llm, "reset_prefix_cache"):
            self.llm.reset_prefix_cache()

    def generate(self, contexts: Sequence[Sequence[int]], max_new_tokens: int) -> list[list[int]]:
        params = self._vllm.SamplingParams(
            temperature=self.temperature, top_p=self.top_p, max_tokens=max_new_tokens,
            stop=list(self.stop_strings) or None, include_stop_str_in_output=True,
        )
        prompts = [{"prompt_token_ids": list(c)} for c in contexts]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        return [truncate_at_stop(o.outputs[0].token_ids, self.tokenizer, self.stop_strings, self.eos) for o in outputs]


def info_at(infos: dict[str, Any], i: int) -> dict[str, Any]:
    """Sub-env i's info out of a vector env's merged infos (arrays plus `_key` masks)."""
    out: dict[str, Any] = {}
    for key, value in infos.items():
        if key.startswith("_"):
            continue
        if isinstance(value, dict):
            out[key] = info_at(value, i)
        elif infos.get(f"_{key}") is not None and infos[f"_{key}"][i]:
            item = value[i]
            out[key] = item.item() if isinstance(item, np.generic) else item
    return out


@dataclass
class RolloutStats:
    generated_tokens: int = 0
    generate_seconds: float = 0.0
    env_seconds: float = 0.0


def collect_rollouts(
    generator,
    tokenizer,
    vec_env,
    task_ids: Sequence[str],
    groups: Sequence[int],
    *,
    use_chat_template: bool = True,
    max_start_length: int = 2048,
    max_response_length: int = 500,
    max_obs_length: int = 500,
    max_total_length: int = 4096,
    seed: int = 0,
    stats: RolloutStats | None = None,
) -> list[Trajectory]:
    """Play one episode of `task_ids[i]` in sub-env i of `vec_env` (a
    `search_envs.vector.SearchVectorEnv`) for every i, all at once.

    Each turn, the contexts of the unfinished episodes are generated in one
    batch, all actions stepped together (the vector env sends their searches to
    the engine in one call), and the observation tokens appended. An episode
    ends when the env ends it, or with reward 0 when its context would exceed
    max_total_length. The observation of a step that ends an episode is not
    appended (nothing is generated after it).
    """
    n = vec_env.num_envs
    if not (len(task_ids) == len(groups) == n):
        raise ValueError(f"need one task id and group per sub-env ({n}), got {len(task_ids)} and {len(groups)}")
    stats = stats if stats is not None else RolloutStats()
    trajs: list[Trajectory] = []
    for i, (task_id, group) in enumerate(zip(task_ids, groups)):
        mask = np.zeros(n, dtype=np.bool_)
        mask[i] = True
        prompts, _ = vec_env.reset(seed=seed + i, options={"reset_mask": mask, "task_id": task_id})
        ids = encode_prompt(tokenizer, prompts[i], use_chat_template)[-max_start_length:]
        trajs.append(Trajectory(str(task_id), int(group), ids, [0] * len(ids), len(ids)))

    active = list(range(n))
    while active:
        budgets = {i: max_total_length - len(trajs[i].input_ids) for i in active}
        for i in [i for i in active if budgets[i] < 1]:
            trajs[i].done = trajs[i].context_exhausted = True
        active = [i for i in active if budgets[i] >= 1]
        if not active:
            break
        t0 = time.perf_counter()
        new = generator.generate([trajs[i].input_ids for i in active], min(max_response_length, max(budgets.values())))
        stats.generate_seconds += time.perf_counter() - t0
        t0 = time.perf_counter()
        actions = [""] * n  # finished sub-envs auto-reset or idle; their steps are ignored
        for i, ids in zip(active, new):
            ids = ids[: budgets[i]]
            stats.generated_tokens += len(ids)
            traj = trajs[i]
            traj.input_ids.extend(ids)
            traj.policy_mask.extend([1] * len(ids))
            actions[i] = tokenizer.decode(ids, skip_special_tokens=True)
            traj.actions.append(actions[i])
        observations, rewards, terminated, truncated, infos = vec_env.step(actions)
        still = []
        for i in active:
            traj, info = trajs[i], info_at(infos, i)
            traj.noisy.extend(bool(x) for x in (info.get("noisy") or []))
            if terminated[i] or truncated[i]:
                traj.reward, traj.done, traj.info = float(rewards[i]), True, info
                continue
            obs_ids = encode_observation(tokenizer, observations[i], max_obs_length)
            traj.observations.append(tokenizer.decode(obs_ids))
            traj.input_ids.extend(obs_ids)
            traj.policy_mask.extend([0] * len(obs_ids))
            still.append(i)
        stats.env_seconds += time.perf_counter() - t0
        active = still
    return trajs
