"""`search-envs train`: PPO, GRPO, DAPO, REINFORCE++ or SFT on a search environment (the reference agent in `agents/`).

Every field of `agents.config.TrainConfig` is an option (`--actor-lr`, `--kl-coef`,
`--no-mask-retrieved-tokens`, ...), its help the first sentence of the field's docstring and its
default the field's; `--tasks`, `--protocol`, `--reward`, `--top-k` and `--noise-schedule` go to
the environment, `--env-kwargs '<json>'` passes anything else. `--reward-spec '{"answer_metric": "f1",
"format_weight": 0.5}'` builds a `RewardSpec` instead of naming a preset.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import re
import textwrap
from dataclasses import MISSING, Field, fields
from types import UnionType
from typing import Any, Callable, Literal, Union, get_args, get_origin, get_type_hints

from search_envs.commands import add_protocol_option

ALIASES = {"env_id": ["--env"], "total_steps": ["--steps"]}
ENV_OPTIONS = ("tasks", "protocol", "reward", "top_k")
"""Options that go into env_kwargs (as `env_<name>` in the parsed arguments)."""
NO_NOISE = object()
"""`--noise-schedule none`: the env's noise_schedule set to None (no curriculum)."""
_SENTENCE_END = re.compile(r"(?<!e\.g)(?<!i\.e)\.(?:\s|$)", re.IGNORECASE)
"""The period that ends a docstring's first sentence (not the one of "e.g." or "i.e.")."""


def noise_schedule_spec(text: str):
    """`--noise-schedule`: a schedule name ("exponential"), a number (constant p), "none",
    or a JSON object (`{"name": "exponential", "p_end": 0.5, "base": 4}`); checked here so a
    bad spec fails before the model loads."""
    from search_envs.curriculum import make_schedule

    if text.strip().lower() in ("none", "null", ""):
        return NO_NOISE
    try:
        spec = json.loads(text)
    except json.JSONDecodeError:
        spec = text.strip()
    try:
        make_schedule(spec)
    except (TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return spec


def json_object(text: str) -> dict[str, Any]:
    """`--env-kwargs`, `--reward-spec`: a JSON object, or a clear argparse error."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object {{...}}, got {text!r}")
    return value


def field_help(cls: type) -> dict[str, str]:
    """The first sentence of each field's docstring (the string under the field in the class
    body). Python keeps no attribute docstrings at run time, so they are read from the source:
    the dataclass stays the one place an option is described."""
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    helps = {}
    for node, doc in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(doc, ast.Expr)
                and isinstance(doc.value, ast.Constant) and isinstance(doc.value.value, str)):
            text = " ".join(doc.value.value.split())
            end = _SENTENCE_END.search(text)
            helps[node.target.id] = text[: end.start() + 1] if end else text
    return helps


def option_type(hint: Any) -> Callable[[str], Any]:
    """What parses an option's text: the field's type without `| None` (JSON for a dict)."""
    if get_origin(hint) in (Union, UnionType):
        hint = next(arg for arg in get_args(hint) if arg is not type(None))
    if get_origin(hint) is Literal:
        return str
    if hint is dict or get_origin(hint) is dict:
        return json_object
    return hint


def field_default(f: Field) -> Any:
    return f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]


def shown(value: Any) -> str:
    """A default as the user would type it (JSON for a dict)."""
    return json.dumps(value) if isinstance(value, dict) else str(value)


def with_default(text: str, default: Any) -> str:
    """argparse %-formats help strings: a literal % in a docstring must not break it."""
    return f"{text.replace('%', '%%')} (default: {shown(default)})"


def register(sub: argparse._SubParsersAction) -> None:
    from search_envs.agents.config import ALGOS, TrainConfig
    from search_envs.rewards import REWARD_PRESETS

    p = sub.add_parser("train", help=f"train a search agent ({', '.join(ALGOS)})", description=__doc__.split("\n")[0],
                       usage="%(prog)s [options]",
                       epilog="Each option is a field of TrainConfig (agents/config.py): its docstring there says "
                              "more, e.g. where Search-R1 sets the value.")
    helps, hints = field_help(TrainConfig), get_type_hints(TrainConfig)
    defaults = {f.name: field_default(f) for f in fields(TrainConfig)}
    for f in fields(TrainConfig):
        flags = [f"--{f.name.replace('_', '-')}"] + ALIASES.get(f.name, [])
        kind = option_type(hints[f.name])
        # default=None: config_from_args passes only the options given, so the config's own
        # algorithm-dependent defaults still apply
        common = {"dest": f.name, "default": None, "help": with_default(helps.get(f.name, ""), defaults[f.name])}
        if kind is bool:
            p.add_argument(*flags, action=argparse.BooleanOptionalAction, **common)
        else:
            p.add_argument(*flags, type=kind, choices=TrainConfig.choices(f.name), **common)
    env = p.add_argument_group("environment", "what goes into env_kwargs (the env's own defaults otherwise)")
    env.add_argument("--tasks", dest="env_tasks", metavar="TASKS", default=None,
                     help=with_default("training task spec (docs/tasks.md)", defaults["env_kwargs"]["tasks"]))
    add_protocol_option(env, dest="env_protocol")
    env.add_argument("--reward", dest="env_reward", default=None, choices=sorted(REWARD_PRESETS),
                     help="reward preset (--reward-spec builds another) (default: the env's)")
    env.add_argument("--top-k", dest="env_top_k", metavar="K", type=int, default=None,
                     help="passages per search (default: the env's)")
    env.add_argument("--noise-schedule", dest="env_noise_schedule", metavar="SCHEDULE", type=noise_schedule_spec,
                     default=None,
                     help='noise curriculum (ZeroSearch envs): a name, a number, "none", or JSON, e.g. '
                          '\'{"name": "exponential", "p_start": 0, "p_end": 0.5, "base": 4}\' (default: the env\'s)')
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    from search_envs.agents.config import TrainConfig

    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name, None) is not None}
    env_kwargs = dict(given.pop("env_kwargs", None) or TrainConfig().env_kwargs)
    env_kwargs.update({k: getattr(args, f"env_{k}") for k in ENV_OPTIONS if getattr(args, f"env_{k}") is not None})
    schedule = getattr(args, "env_noise_schedule", None)
    if schedule is not None:
        env_kwargs["noise_schedule"] = None if schedule is NO_NOISE else schedule
    return TrainConfig(env_kwargs=env_kwargs, **given)


def run(args: argparse.Namespace) -> int:
    from search_envs.agents.train import train

    cfg = config_from_args(args)
    rows = train(cfg)
    last = [r for r in rows if r["type"] == "train"][-1:] or [{}]
    evals = [r for r in rows if r["type"] == "eval"]
    print(json.dumps({"output_dir": cfg.output_dir, "last_step": last[0], "evals": evals}, indent=2))
    return 0
