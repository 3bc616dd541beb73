"""The reference PPO / GRPO agent for search-envs (see agents/README.md).

`agents.train.train(TrainConfig(...))` trains; `agents.evaluate.evaluate_checkpoint`
scores a checkpoint through `search_envs.policies`; `search-envs train` is the CLI.
"""

from .config import TrainConfig



def register_policies() -> None:
    """The `search_envs.policies` plugin: `checkpoint:DIR` understands training folders."""
    from search_envs.policies.registry import register_checkpoint_resolver

    from .checkpoint import resolve_actor_dir

    register_checkpoint_resolver(resolve_actor_dir)


__all__ = ["TrainConfig", "register_policies"]
