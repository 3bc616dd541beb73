"""Policies by name, as the CLI and benchmark suites give them.

- a baseline name (`baselines.BASELINES`: direct, cot, rag, ircot, search_o1,
  random, oracle), optionally with the LM it prompts after '@':
  `rag@hf:PATH`, `ircot@openai:URL#MODEL` (default: SmolLM2-135M-Instruct);
- `hf:PATH` (or `hf` / `hf:smollm2`): a causal LM playing the protocol;
- `openai:URL#MODEL`: an OpenAI-compatible endpoint playing the protocol;
- `callable:module:function`: `function(batch) -> actions`;
- `checkpoint:DIR`: a model folder written by `agents/` (a checkpoint, its actor/
  folder, or a training output folder: its latest checkpoint), loaded as an HF model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from search_envs.policies.base import Policy
from search_envs.generation import Generator, OpenAIGenerator, TransformersGenerator

POLICY_HELP = (
    "a policy is a baseline name (direct, cot, rag, ircot, search_o1, random, oracle, "
    "synth_teacher, majority; "
    "add '@hf:PATH' or '@openai:URL#MODEL' to pick its LM), 'hf:PATH', 'openai:URL#MODEL', "
    "'callable:module:function' or 'checkpoint:DIR'"
)


def _unknown_model(spec: str) -> str:
    return f"unknown model {spec!r}: use 'hf:PATH', 'openai:URL#MODEL' or 'checkpoint:DIR'"


def _split_openai(spec: str) -> tuple[str, str]:
    url, sep, model = spec.partition("#")
    if not sep or not url or not model:
        raise ValueError(f"an OpenAI policy is 'openai:URL#MODEL', got 'openai:{spec}'")
    return url, model


def make_generator(spec: str, **kwargs: Any) -> Generator:
    """'hf:PATH' or 'openai:URL#MODEL' -> a Generator (for the LM baselines)."""
    kind, _, rest = spec.partition(":")
    if kind == "hf":
        return TransformersGenerator(rest or None, **kwargs)
    if kind == "openai":
        return OpenAIGenerator(*_split_openai(rest), **kwargs)
    if kind == "checkpoint":
        return TransformersGenerator(str(_checkpoint_dir(rest)), **kwargs)
    raise ValueError(_unknown_model(spec))


def _checkpoint_dir(path: str) -> Path:
    """The model folder of `path`: a save_pretrained folder, or (with `agents/`) a
    training checkpoint, its actor/ folder, or an output folder (its latest checkpoint)."""
    folder = Path(path).expanduser()
    if folder.is_dir() and not any(folder.glob("*.safetensors")):
        try:
            from search_envs.agents.checkpoint import resolve_actor_dir
        except ImportError:
            pass
        else:
            folder = resolve_actor_dir(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} is not a checkpoint folder (no config.json; save it with save_pretrained)")
    return folder


def make_policy(name: str, protocol: str | None = None, **kwargs: Any) -> Policy:
    """Build a policy from its name (see the module docstring).

    kwargs go to the generator for LM policies (max_new_tokens, temperature,
    batch_size, ...) and to the baseline's constructor for baselines.
    """
    name = name.strip()
    kind, sep, rest = name.partition(":")
    if sep and kind in ("hf", "checkpoint", "openai"):
        from search_envs.policies.lm import LMPolicy

        policy = LMPolicy(make_generator(name, **kwargs), protocol=protocol, name=name)
        return policy
    if sep and kind == "callable":
        from search_envs.policies.callable import CallablePolicy, load_callable

        return CallablePolicy(load_callable(rest), name=name)
    if name in ("hf", "smollm2"):
        return make_policy("hf:smollm2", protocol=protocol, **kwargs)
    from search_envs.baselines import BASELINES

    base, _, model = name.partition("@")
    if base not in BASELINES:
        raise ValueError(f"unknown policy {name!r}; {POLICY_HELP}")
    generator = shared_generator(model or "hf:smollm2") if BASELINES[base].uses_lm else None
    return BASELINES[base](generator, protocol=protocol, **kwargs)


_SHARED: dict[str, Generator] = {}


def shared_generator(spec: str) -> Generator:
    """One generator per model spec for all baselines built by name, so comparing
    five LM baselines loads the model once (baselines pass their own token budgets)."""
    kind, _, rest = spec.partition(":")
    if kind not in ("hf", "openai", "checkpoint"):
        raise ValueError(_unknown_model(spec))
    if kind == "openai":
        _split_openai(rest)
    if spec not in _SHARED:
        _SHARED[spec] = _LazyGenerator(spec)
    return _SHARED[spec]


class _LazyGenerator(Generator):
    """Builds the generator on first use: naming a policy must not load a model."""

    def __init__(self, spec: str) -> None:
        self.spec, self.name, self._inner = spec, spec, None

    @property
    def inner(self) -> Generator:
        if self._inner is None:
            self._inner = make_generator(self.spec)
        return self._inner

    def complete(self, conversations, stop=(), max_new_tokens=None, continue_last=True, **sampling):
        return self.inner.complete(conversations, stop, max_new_tokens, continue_last, **sampling)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def close(self) -> None:
        """Shared: stays open for the other baselines (freed with the process)."""
