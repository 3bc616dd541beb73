"""Policies by name, as the CLI and benchmark suites give them.

- a baseline name (direct, cot, rag, ircot, search_o1, random, oracle), optionally
  with the LM it prompts after '@': `rag@hf:PATH`, `ircot@openai:URL#MODEL`
  (default: SmolLM2-135M-Instruct);
- `hf:PATH` (or `hf` / `hf:smollm2`), `openai:URL#MODEL`, `vllm:PATH`: an LM playing
  the protocol (the generator specs of `search_envs.generation.make_generator`);
- `checkpoint:DIR`: a model folder (a checkpoint written by the reference agent, its
  actor/ folder, or a training output folder: its latest checkpoint), loaded as an HF model;
- `callable:module:function`: `function(batch) -> actions`.

The library does not import its consumers: baselines and the agent register themselves
through plugins, entry points of the group `search_envs.policies` (see pyproject.toml),
loaded the first time a name needs them. Another package can add baselines the same way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from search_envs.generation import GENERATORS, Generator, make_generator
from search_envs.policies.base import Policy

PLUGIN_GROUP = "search_envs.policies"
POLICY_HELP = (
    "a policy is a baseline name (direct, cot, rag, ircot, search_o1, random, oracle, "
    "synth_teacher, majority; "
    "add '@hf:PATH' or '@openai:URL#MODEL' to pick its LM), 'hf:PATH', 'openai:URL#MODEL', "
    "'callable:module:function' or 'checkpoint:DIR'"
)
LM_KINDS = ("hf", "openai", "vllm", "checkpoint")

BASELINES: dict[str, Any] = {}
"""Baseline classes by name (filled by plugins): `cls(generator, protocol=..., **kwargs)`, `cls.uses_lm`."""
CHECKPOINT_RESOLVERS: list[Callable[[Path], Path]] = []
"""Functions mapping a training folder to its model folder (filled by plugins)."""

_plugins_loaded = False
_plugins_lock = threading.Lock()


def register_baseline(cls: Any) -> None:
    """Make a baseline class playable by its `name` (`make_policy(name)`)."""
    BASELINES[cls.name] = cls


def register_checkpoint_resolver(resolve: Callable[[Path], Path]) -> None:
    """Teach `checkpoint:DIR` a folder layout (the reference agent registers its own)."""
    if resolve not in CHECKPOINT_RESOLVERS:
        CHECKPOINT_RESOLVERS.append(resolve)


def load_plugins() -> None:
    """Run every `search_envs.policies` entry point once (each registers what it provides)."""
    global _plugins_loaded
    with _plugins_lock:
        if _plugins_loaded:
            return
        for entry in entry_points(group=PLUGIN_GROUP):
            entry.load()()
        _plugins_loaded = True


def _unknown_model(spec: str) -> str:
    return f"unknown model {spec!r}: use 'hf:PATH', 'openai:URL#MODEL' or 'checkpoint:DIR'"


def lm_generator(spec: str, **kwargs: Any) -> Generator:
    """A generator spec, or 'checkpoint:DIR', -> a Generator (for LM policies and baselines)."""
    kind, _, rest = spec.partition(":")
    if kind == "checkpoint":
        return make_generator(f"hf:{checkpoint_dir(rest)}", **kwargs)
    if kind not in GENERATORS or kind == "transformers":
        raise ValueError(_unknown_model(spec))
    return make_generator(spec, **kwargs)


def checkpoint_dir(path: str) -> Path:
    """The model folder of `path`: a save_pretrained folder, or whatever a registered
    resolver maps it to (the agent: a checkpoint, its actor/ folder, an output folder)."""
    folder = Path(path).expanduser()
    if folder.is_dir() and not any(folder.glob("*.safetensors")):
        load_plugins()
        for resolve in CHECKPOINT_RESOLVERS:
            folder = resolve(folder)
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
    if sep and kind in LM_KINDS:
        from search_envs.policies.lm import LMPolicy

        return LMPolicy(lm_generator(name, **kwargs), protocol=protocol, name=name)
    if sep and kind == "callable":
        from search_envs.policies.callable import CallablePolicy, load_callable

        return CallablePolicy(load_callable(rest), name=name)
    if name in ("hf", "smollm2"):
        return make_policy("hf:smollm2", protocol=protocol, **kwargs)
    load_plugins()
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
    if kind not in LM_KINDS:
        raise ValueError(_unknown_model(spec))
    if kind == "openai":
        url, sep, model = rest.partition("#")
        if not (url and sep and model):
            raise ValueError(f"an OpenAI policy is 'openai:URL#MODEL', got {spec!r}")
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
            self._inner = lm_generator(self.spec)
        return self._inner

    def complete(self, conversations, stop=(), max_new_tokens=None, continue_last=True, **sampling):
        return self.inner.complete(conversations, stop, max_new_tokens, continue_last, **sampling)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def close(self) -> None:
        """Shared: stays open for the other baselines (freed with the process)."""
