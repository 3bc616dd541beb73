"""Batched chat generation: one interface for every LLM the project prompts.

The ZeroSearch simulator (`engines.simulated`), the LM policies (`policies.lm`)
and the prompting baselines all go through a `Generator`:

    generator.complete(conversations, stop=(), max_new_tokens=None, continue_last=True,
                       temperature=None, top_p=None, seed=None, return_exceptions=False)
    -> one `Completion(text, tokens)` per conversation, in input order.

A conversation whose last message is from the assistant is continued when
`continue_last` is true (its text is a prefix of the reply and is not repeated in
the output): agents continue their own transcript, the simulator its "Doc 1:"
prefill. Backends: `TransformersGenerator` (any local causal LM, SmolLM2-135M-
Instruct offline by default), `OpenAIGenerator` (an sglang / vLLM / OpenAI-
compatible server through `OpenAIClient`) and `VLLMGenerator` (vLLM in-process,
optional). `make_generator` builds one from a generator spec, the one format every
caller uses: "hf[:PATH]", "openai:URL#MODEL", "vllm[:PATH]" (policies add
"checkpoint:DIR", see `search_envs.policies.registry`).

The agent trainer (`agents/rollout.py`) has its own token-exact rollout generators
(`HFRolloutGenerator`, `VLLMRolloutGenerator`): they keep the token ids and masks,
which this text interface does not.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search_envs.llm_client import LLMError, Message, OpenAIClient

Messages = list[Message]


@dataclass
class Completion:
    """A reply: its text (cut after the first stop string) and its length in tokens."""

    text: str
    tokens: int


# -- stop strings ------------------------------------------------------------------------
def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """Keep text up to and including the earliest stop string (the env parses it)."""
    best = None
    for s in stop:
        i = text.find(s)
        if i >= 0 and (best is None or i + len(s) < best):
            best = i + len(s)
    return text if best is None else text[:best]


def _opener(stop: str) -> str:
    """The opening tag a closing stop string ends: '</search>' -> '<search>'."""
    return stop.replace("</", "<", 1) if stop.startswith("</") else stop.replace("end_of", "begin_of")


def restore_stop(text: str, stop: Sequence[str]) -> str:
    """Servers cut the stop string off the reply; put back the one that closes the
    block the reply left open (the env needs the closing tag to parse it)."""
    if not stop or any(s in text for s in stop):
        return text
    best, where = None, -1
    for s in stop:
        opener = _opener(s)
        i = text.rfind(opener) if opener != s else -1
        if i > where:
            best, where = s, i
    return text + best if best is not None else text


# -- rendering -----------------------------------------------------------------------------
def continues(conversation: Sequence[Message], continue_last: bool = True) -> bool:
    """Whether the reply continues the conversation's last (assistant) message."""
    return bool(continue_last) and bool(conversation) and conversation[-1].get("role") == "assistant"


def render_chat(tokenizer: Any, conversation: Sequence[Message], continue_last: bool = True) -> str:
    """The prompt text a model sees: its chat template with the generation prompt,
    followed by the partial assistant message when continuing (kept verbatim, even
    empty or ending in whitespace). Tokenizers without a template get plain
    "Role: content" lines."""
    messages = list(conversation)
    partial = messages.pop()["content"] if continues(messages, continue_last) else None
    if getattr(tokenizer, "chat_template", None):
        head = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        head = "\n".join([f"{m['role'].capitalize()}: {m['content']}" for m in messages] + ["Assistant:"])
        head += " " if partial else ""
    return head if partial is None else head + partial


def _in_groups(items: Sequence, key: Callable[[Any], Any], run: Callable[[list, Any], list]) -> list:
    """Call `run(group, key)` once per distinct key; results come back in input order."""
    groups: dict[Any, list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(key(item), []).append(i)
    results: list = [None] * len(items)
    for k, idx in groups.items():
        for i, out in zip(idx, run([items[i] for i in idx], k)):
            results[i] = out
    return results


# -- the interface ----------------------------------------------------------------------------
class Generator:
    """Completes a batch of chat conversations (see the module docstring).

    name: the model's identity (part of the simulator's cache keys).
    max_new_tokens, temperature, top_p, seed: defaults for calls that leave them None
    (temperature 0 is greedy decoding).
    Errors: a request that fails for good raises its `LLMError`, or with
    return_exceptions=True comes back in its place so one failure cannot sink a
    batch. A local backend that cannot run (a model that does not load) raises.
    """

    name: str = "generator"
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None

    def complete(
        self,
        conversations: Sequence[Messages],
        stop: Sequence[str] = (),
        max_new_tokens: int | None = None,
        continue_last: bool = True,
        *,
        temperature: float | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        return_exceptions: bool = False,
    ) -> list[Completion]:
        raise NotImplementedError

    def sampling(self, max_new_tokens=None, temperature=None, top_p=None, seed=None) -> tuple[int, float, float, int | None]:
        """The call's (max_new_tokens, temperature, top_p, seed), defaults filled in."""
        return (
            int(max_new_tokens or self.max_new_tokens),
            float(self.temperature if temperature is None else temperature),
            float(self.top_p if top_p is None else top_p),
            self.seed if seed is None else int(seed),
        )

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def close(self) -> None:
        """Release the model or the connection pool."""


class TransformersGenerator(Generator):
    """Any Hugging Face causal LM, batched with left padding and its chat template.

    model_path: a local folder or hub name; None is the offline default
        SmolLM2-135M-Instruct (`search_envs.models`). The model loads on first use
        (or pass a loaded `model` and `tokenizer`).
    batch_size: sequences per `generate` call; inputs are sorted by length first
        so a batch carries little padding.
    max_input_tokens: longer inputs keep their last tokens (the recent context).
    num_threads: torch CPU threads (process-wide) set on load; on a shared CPU,
        1 thread is many times faster than oversubscribed cores.
    Stop strings end each sequence inside `generate`. A lock serialises calls, so
    one instance can serve several threads (the test OpenAI server does).
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        model: Any = None,
        tokenizer: Any = None,
        device: str | None = None,
        dtype: Any = None,
        batch_size: int = 8,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        max_input_tokens: int = 4096,
        num_threads: int | None = None,
    ) -> None:
        from search_envs.models import DEFAULT_MODEL_NAME

        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.model_path = model_path
        self.model, self.tokenizer = model, tokenizer
        self.device, self.dtype, self.batch_size = device, dtype, int(batch_size)
        self.max_new_tokens, self.temperature, self.top_p, self.seed = max_new_tokens, temperature, top_p, seed
        self.max_input_tokens = max_input_tokens
        self.num_threads = num_threads
        self.name = DEFAULT_MODEL_NAME if model_path is None else str(model_path).rstrip("/")
        self._lock = threading.RLock()
        self._ready = False

    def load(self) -> None:
        with self._lock:
            if self._ready:
                return
            if self.num_threads:
                import torch

                torch.set_num_threads(int(self.num_threads))
            if self.model is None or self.tokenizer is None:
                from search_envs.models import load_causal_lm

                self.model, self.tokenizer = load_causal_lm(self.model_path, device=self.device, dtype=self.dtype)
            self.tokenizer.padding_side = "left"
            self.tokenizer.truncation_side = "left"
            if self.tokenizer.pad_token is None:
                self.tokenizer.pad_token = self.tokenizer.eos_token
            self._ready = True

    def render(self, conversation: Sequence[Message], continue_last: bool = True) -> str:
        """The prompt text the model sees (see `render_chat`)."""
        self.load()
        return render_chat(self.tokenizer, conversation, continue_last)

    def complete(self, conversations, stop=(), max_new_tokens=None, continue_last=True, *, temperature=None,
                 top_p=None, seed=None, return_exceptions=False):
        with self._lock:
            prompts = [self.render(c, continue_last) for c in conversations]
            return self.complete_prompts(prompts, stop, max_new_tokens, temperature=temperature, top_p=top_p, seed=seed)

    def complete_prompts(self, prompts: Sequence[str], stop: Sequence[str] = (), max_new_tokens: int | None = None,
                         *, temperature=None, top_p=None, seed=None) -> list[Completion]:
        """Continue raw prompt texts (no chat template)."""
        import torch
        from tqdm.auto import tqdm

        if not prompts:
            return []
        max_new_tokens, temperature, top_p, seed = self.sampling(max_new_tokens, temperature, top_p, seed)
        with self._lock:
            self.load()
            kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "pad_token_id": self.tokenizer.pad_token_id,
                                      "do_sample": temperature > 0}
            if temperature > 0:
                kwargs.update(temperature=temperature, top_p=top_p)
            if stop:
                kwargs.update(stop_strings=list(stop), tokenizer=self.tokenizer)
            if seed is not None:
                torch.manual_seed(seed)
            order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # less padding per batch
            batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
            device = next(self.model.parameters()).device
            results: list[Completion] = [None] * len(prompts)  # type: ignore[list-item]
            for batch in tqdm(batches, desc="generating", disable=len(batches) < 3, leave=False):
                enc = self.tokenizer(
                    [prompts[i] for i in batch], return_tensors="pt", padding=True, truncation=True,
                    max_length=self.max_input_tokens, add_special_tokens=False,
                ).to(device)
                with torch.inference_mode():
                    out = self.model.generate(**enc, **kwargs)
                new = out[:, enc["input_ids"].shape[1] :]
                for row, i in enumerate(batch):
                    ids = [t for t in new[row].tolist() if t != self.tokenizer.pad_token_id]
                    text = self.tokenizer.decode(ids, skip_special_tokens=True)
                    results[i] = Completion(cut_at_stop(text, stop), len(ids))
            return results

    def count_tokens(self, text: str) -> int:
        self.load()
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def close(self) -> None:
        self.model = self.tokenizer = None
        self._ready = False


class OpenAIGenerator(Generator):
    """An OpenAI-compatible chat server (sglang, vLLM, TGI, hosted) through `OpenAIClient`:
    a whole batch at once, `max_concurrency` requests in flight, retried with backoff.

    continue_mode: how a trailing assistant message is continued.
        "server" (default) sends it with vLLM/sglang's `continue_final_message=true,
        add_generation_prompt=false`; "prompt" (providers without that flag) puts it
        in the user message and asks for the continuation; "drop" leaves it out of
        the request. An empty partial message is always left out.
    Servers drop the stop string from the reply; it is put back (the env needs the
    closing tag) when the reply left a block open. The API takes at most four stop
    strings; replies are cut client-side too. Token counts are whitespace words:
    not every server reports usage per reply.
    client_kwargs go to `OpenAIClient` (api_key, max_concurrency, timeout, retries,
    backoff, max_requests_per_second, default_params).
    """

    CONTINUE_MODES = ("server", "prompt", "drop")

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        continue_mode: str = "server",
        client: OpenAIClient | None = None,
        **client_kwargs: Any,
    ) -> None:
        if continue_mode not in self.CONTINUE_MODES:
            raise ValueError(f"continue_mode must be one of {self.CONTINUE_MODES}, got {continue_mode!r}")
        self.client = client or OpenAIClient(base_url, model, **client_kwargs)
        self.base_url = base_url
        self.name = f"openai:{model}"
        self.max_new_tokens, self.temperature, self.top_p, self.seed = max_new_tokens, temperature, top_p, seed
        self.continue_mode = continue_mode

    def request(self, conversation: Sequence[Message], continue_last: bool = True) -> tuple[Messages, bool]:
        """The messages to send, and whether they need the continue_final_message flag."""
        messages = list(conversation)
        if not continues(messages, continue_last):
            return messages, False
        partial = messages[-1]["content"]
        if not partial or self.continue_mode == "drop":
            return messages[:-1], False
        if self.continue_mode == "server":
            return messages, True
        head, user = messages[:-2], messages[-2]["content"] if len(messages) > 1 else ""
        user += "\n\nYour reply so far:\n" + partial + "\n\nContinue your reply exactly where it stops."
        return head + [{"role": "user", "content": user}], False

    def complete(self, conversations, stop=(), max_new_tokens=None, continue_last=True, *, temperature=None,
                 top_p=None, seed=None, return_exceptions=False):
        max_new_tokens, temperature, top_p, seed = self.sampling(max_new_tokens, temperature, top_p, seed)
        params: dict[str, Any] = {"max_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p}
        if seed is not None:
            params["seed"] = seed
        if stop:
            params["stop"] = list(stop)[:4]  # the OpenAI API accepts at most four

        def run(group, flagged):
            extra = {"continue_final_message": True, "add_generation_prompt": False} if flagged else {}
            return self.client.chat([m for m, _ in group], return_exceptions=return_exceptions, **params, **extra)

        replies = _in_groups([self.request(c, continue_last) for c in conversations], lambda r: r[1], run)
        out: list = []
        for reply in replies:
            if isinstance(reply, BaseException):
                out.append(reply)
                continue
            # Some servers ignore `stop`: cut client-side too, then restore a dropped stop string.
            text = restore_stop(cut_at_stop(reply, stop), stop)
            out.append(Completion(text, self.count_tokens(text)))
        return out

    def close(self) -> None:
        self.client.close()


class VLLMGenerator(Generator):
    """vLLM in-process (GPU). Needs the optional extra: `pip install search-envs[vllm]`.

    Prompts are rendered with `render_chat` (the same text the transformers backend
    feeds its model) and sent as token ids. llm_kwargs go to `vllm.LLM`
    (tensor_parallel_size, gpu_memory_utilization, ...); the engine starts on first use.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        **llm_kwargs: Any,
    ) -> None:
        try:
            import vllm  # noqa: F401
        except ImportError as exc:
            raise ImportError(
                "the vllm backend needs vLLM (a GPU package): `pip install 'search-envs[vllm]'`; "
                "use generator='transformers' or 'openai' without it"
            ) from exc
        from search_envs.models import resolve_model

        self.model_path = resolve_model(model)
        self.name = f"vllm:{model or Path(self.model_path).name}"
        self.max_new_tokens, self.temperature, self.top_p, self.seed = max_new_tokens, temperature, top_p, seed
        self.llm_kwargs = llm_kwargs
        self.llm = None

    def complete(self, conversations, stop=(), max_new_tokens=None, continue_last=True, *, temperature=None,
                 top_p=None, seed=None, return_exceptions=False):
        from vllm import LLM, SamplingParams

        if not conversations:
            return []
        if self.llm is None:
            self.llm = LLM(model=self.model_path, **self.llm_kwargs)
        max_new_tokens, temperature, top_p, seed = self.sampling(max_new_tokens, temperature, top_p, seed)
        params = SamplingParams(max_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed,
                                stop=list(stop) or None, include_stop_str_in_output=True)
        tokenizer = self.llm.get_tokenizer()
        prompts = [
            {"prompt_token_ids": tokenizer(render_chat(tokenizer, c, continue_last), add_special_tokens=False)["input_ids"]}
            for c in conversations
        ]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        return [Completion(cut_at_stop(o.outputs[0].text, stop), len(o.outputs[0].token_ids)) for o in outputs]

    def count_tokens(self, text: str) -> int:
        if self.llm is None:
            return super().count_tokens(text)
        return len(self.llm.get_tokenizer()(text, add_special_tokens=False)["input_ids"])

    def close(self) -> None:
        self.llm = None


GENERATORS: dict[str, type[Generator]] = {
    "hf": TransformersGenerator,
    "transformers": TransformersGenerator,  # the same backend, by its library's name
    "openai": OpenAIGenerator,
    "vllm": VLLMGenerator,
}
GENERATOR_SPEC_HELP = "a generator is 'hf[:PATH]', 'openai:URL#MODEL' or 'vllm[:PATH]' (or a Generator)"


def make_generator(spec: str | Generator = "hf", **kwargs: Any) -> Generator:
    """A Generator from a spec: "hf[:PATH]" (alias "transformers"), "openai:URL#MODEL",
    "vllm[:PATH]", or a ready Generator. kwargs go to the backend's constructor (a
    bare "openai" takes base_url= and model= there)."""
    if isinstance(spec, Generator):
        if kwargs:
            raise ValueError("generator options given with a ready generator instance")
        return spec
    kind, sep, rest = str(spec).partition(":")
    cls = GENERATORS.get(kind.lower())
    if cls is None:
        raise ValueError(f"unknown generator backend {spec!r}; {GENERATOR_SPEC_HELP}")
    if not rest:
        return cls(**kwargs)
    if cls is OpenAIGenerator:
        url, hash_, model = rest.partition("#")
        if not hash_ or not url or not model:
            raise ValueError(f"an OpenAI generator is 'openai:URL#MODEL', got {spec!r}")
        return cls(url, model, **kwargs)
    return cls(rest, **kwargs)
