"""`search-envs train`: PPO or GRPO on a search environment (the reference agent in `agents/`).

Every field of `agents.config.TrainConfig` is an option (`--actor-lr`, `--kl-coef`,
`--no-mask-retrieved-tokens`, ...); `--tasks`, `--protocol`, `--reward`, `--top-k` and
`--noise-schedule` go to the environment, `--env-kwargs '<json>'` passes anything else. `--reward-spec '{"answer_metric": "f1", "format_weight": 0.5}'` builds a
`RewardSpec` instead of naming a preset.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import MISSING, fields

ALIASES = {"env_id": ["--env"], "total_steps": ["--steps"]}
ENV_OPTIONS = {"tasks": str, "protocol": str, "reward": str, "top_k": int}
NO_NOISE = object()
"""`--noise-schedule none`: the env's noise_schedule set to None (no curriculum)."""


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


def _field_type(f):
    default = f.default if f.default is not MISSING else None
    if isinstance(default, bool):
        return bool
    if isinstance(default, (int, float)):
        return type(default)
    if f.name in ("group_size", "torch_threads"):
        return int
    annotation = str(f.type)  # "float | None": an option whose default depends on the algorithm
    for kind in (bool, float, int):
        if annotation.startswith(f"{kind.__name__} |"):
            return kind
    return str


def register(sub: argparse._SubParsersAction) -> None:
    from search_envs.agents.config import TrainConfig

    p = sub.add_parser("train", help="train a search agent with PPO, GRPO, DAPO or REINFORCE++", description=__doc__.split("\n")[0])
    for f in fields(TrainConfig):
        flags = [f"--{f.name.replace('_', '-')}"] + ALIASES.get(f.name, [])
        if f.name == "env_kwargs":
            p.add_argument(*flags, dest=f.name, type=json.loads, default=None,
                           help='JSON object for gym.make, e.g. \'{"tasks": "ramp:train"}\'')
            continue
        if f.name == "reward_spec":
            p.add_argument(*flags, dest=f.name, type=json.loads, default=None,
                           help='RewardSpec fields as a JSON object (replaces --reward), e.g. '
                                '\'{"answer_metric": "f1", "format_weight": 0.5}\'')
            continue
        kind = _field_type(f)
        if kind is bool:
            p.add_argument(*flags, dest=f.name, action=argparse.BooleanOptionalAction, default=None)
        else:
            p.add_argument(*flags, dest=f.name, type=kind, default=None)
    for name, kind in ENV_OPTIONS.items():
        p.add_argument(f"--{name.replace('_', '-')}", dest=f"env_{name}", type=kind, default=None,
                       help=f"environment {name}")
    p.add_argument("--noise-schedule", dest="env_noise_schedule", type=noise_schedule_spec, default=None,
                   help='environment noise curriculum (ZeroSearch envs): a name, a number, "none", or JSON, e.g. '
                        '\'{"name": "exponential", "p_start": 0, "p_end": 0.5, "base": 4}\'')
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
