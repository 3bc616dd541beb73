"""The reference PPO / GRPO agent for search-envs (see agents/README.md).

`agents.train.train(TrainConfig(...))` trains; `agents.evaluate.evaluate_checkpoint`
scores a checkpoint through `search_envs.policies`; `search-envs train` is the CLI.
"""

from .config import TrainConfig

__all__ = ["TrainConfig"]
