"""`search-envs play`: play one episode yourself, seeing exactly what an agent sees."""

from __future__ import annotations

import argparse
import sys

from search_envs.commands import add_protocol_option


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("play", help="play an episode interactively in the terminal")
    p.add_argument("--env", default="SearchEnvs/WikiBM25-v0", help="registered environment id")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tasks", default=None, help="task spec (default: the env's default tasks)")
    add_protocol_option(p)
    p.add_argument("--top-k", type=int, default=None)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import gymnasium as gym

    import search_envs  # noqa: F401  (registers the ids)

    kwargs = {k: v for k, v in {"tasks": args.tasks, "protocol": args.protocol, "top_k": args.top_k}.items() if v}
    env = gym.make(args.env, **kwargs)
    obs, info = env.reset(seed=args.seed)
    print(obs)
    print("(type your action, e.g. <search> query </search> or <answer> text </answer>; an empty line quits)\n")
    max_turns = env.unwrapped.max_turns
    terminated = truncated = False
    while not (terminated or truncated):
        try:
            # the env truncates after max_turns actions: the player sees how many are left
            action = input(f"[turn {info['turn'] + 1}/{max_turns}] > ")
        except EOFError:
            break
        if not action.strip():
            break
        obs, reward, terminated, truncated, info = env.step(action)
        print(obs)
        if terminated or truncated:
            print(f"episode over: reward={reward:.3f}  gold answers={info.get('answers')}  "
                  f"searches={info.get('num_searches')}  components={info.get('reward_components')}")
    env.close()
    sys.stdout.flush()
    return 0
