"""Every hyper-parameter of the reference agent, in one dataclass (CleanRL style).

Defaults are Search-R1's (`train_ppo.sh`, `train_grpo.sh` and the verl
`ppo_trainer.yaml` they run, PeterGriffinJin/Search-R1) unless a comment says
otherwise. The paper's run uses 512 questions per step on 8 GPUs; a CPU run
overrides the sizes (see agents/README.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class TrainConfig:
    # --- what to train -------------------------------------------------------------
    algo: str = "grpo"
    """"grpo" (group-normalised advantages, KL in the loss), "ppo" (critic, GAE, KL in the reward) or
    "sft" (cold-start fine-tuning on collected trajectories, `data`; agents/sft.py)."""
    env_id: str = "SearchEnvs/WikiBM25-v0"
    env_kwargs: dict[str, Any] = field(default_factory=lambda: {"tasks": "ramp:train"})
    """Passed to `gym.make(env_id, ...)` for every sub-env: tasks, protocol, reward, top_k, ..."""
    reward_spec: dict[str, Any] | None = None
    """A `search_envs.rewards.RewardSpec` as keyword arguments, e.g. {"answer_metric": "f1",
    "format_weight": 0.5, "retrieval_weight": 0.5}; when set it replaces env_kwargs["reward"]
    (a preset name) for training and held-out evaluation. Not a Search-R1 setting (EM only)."""
    model: str | None = None
    """HF causal LM name or folder; None = SmolLM2-135M-Instruct (search_envs.models)."""
    critic_model: str | None = None
    """PPO critic backbone; None = the actor's initial model (as Search-R1)."""
    use_chat_template: bool = True
    """Prompt = chat template applied to the user message with add_generation_prompt."""
    init: str | None = None
    """Start from this checkpoint (an SFT or RL output folder, a checkpoint or a model folder)
    instead of `model`: cold-start SFT, then GRPO/PPO with --init. Not a Search-R1 setting."""

    # --- cold-start SFT (algo="sft"; R1-Searcher++ / SimpleDeepSearcher style, not Search-R1) --------
    data: str | None = None
    """Trajectories JSONL written by `search-envs collect` (each line has a `transcript`)."""
    sft_epochs: int = 2
    sft_batch_size: int = 16
    """Episodes per optimizer step (micro_batch_size of them per forward/backward)."""
    sft_lr: float = 1e-5
    """AdamW learning rate of SFT (warm-up: actor_warmup_ratio of the SFT steps)."""

    # --- hardware ---------------------------------------------------------------------
    device: str = "auto"
    """"auto" = cuda when available, else cpu."""
    dtype: str = "auto"
    """"auto" = bfloat16 on cuda, float32 on cpu; or float32 / bfloat16 / float16."""
    gradient_checkpointing: bool = True
    """actor/critic.model.enable_gradient_checkpointing=true."""
    torch_threads: int | None = None
    """CPU threads for torch (None = torch's default); 1 is fastest on a busy shared CPU."""
    rollout_backend: str = "hf"
    """"hf" (transformers generate, KV cache) or "vllm" (optional, weights synced every step)."""
    vllm_gpu_memory_utilization: float = 0.6
    rollout_batch_size: int = 64
    """Sequences per HF `generate` call (vLLM schedules its own batches)."""

    # --- sizes and schedule --------------------------------------------------------------
    total_steps: int = 1005
    """trainer.total_training_steps (GRPO script; the PPO script uses 1005 upstream as well)."""
    questions_per_step: int = 512
    """data.train_batch_size."""
    group_size: int | None = None
    """rollout.n_agent: rollouts per question. None = 5 for GRPO, 1 for PPO."""
    mini_batch_size: int = 256
    """actor.ppo_mini_batch_size, in questions: optimizer steps per batch = questions_per_step / this."""
    micro_batch_size: int = 8
    """Trajectories per forward/backward (gradient accumulation inside a mini-batch)."""
    ppo_epochs: int = 1

    # --- optimisation ------------------------------------------------------------------
    actor_lr: float = 1e-6
    critic_lr: float = 1e-5
    actor_warmup_ratio: float = 0.285
    """actor.optim.lr_warmup_steps_ratio (linear warm-up, then constant)."""
    critic_warmup_ratio: float = 0.015
    """critic.optim.lr_warmup_steps_ratio in Search-R1's PPO scripts."""
    weight_decay: float = 0.01
    """verl's AdamW default."""
    grad_clip: float = 1.0

    # --- losses ---------------------------------------------------------------------------
    clip_ratio: float = 0.2
    value_clip: float = 0.5
    """critic.cliprange_value."""
    entropy_coef: float = 0.001
    """actor.entropy_coeff (verl default used by Search-R1)."""
    kl_coef: float = 0.001
    """GRPO: actor.kl_loss_coef (k3 'low_var_kl' in the loss). PPO: algorithm.kl_ctrl.kl_coef (k1 in the reward)."""
    gamma: float = 1.0
    lam: float = 1.0
    mask_retrieved_tokens: bool = True
    """actor.state_masking=true. False is the ablation: environment tokens are trained on as if generated."""

    # --- rollouts ---------------------------------------------------------------------------
    temperature: float = 1.0
    top_p: float = 1.0
    """rollout.top_p=1.0 in Search-R1's scripts (verl's yaml default is 0.95)."""
    max_turns: int = 3
    """Actions per episode (the env's max_turns): Search-R1's max_turns=2 search rounds plus its final answer turn."""
    max_start_length: int = 2048
    """data.max_start_length: prompts longer than this (in tokens) are cut from the left."""
    max_response_length: int = 500
    """data.max_response_length: new tokens per turn."""
    max_obs_length: int = 500
    """data.max_obs_length: observation tokens kept per turn."""
    max_total_length: int = 4096
    """data.max_prompt_length: the whole context; an episode that would exceed it ends with reward 0."""

    # --- evaluation, logging, checkpoints -----------------------------------------------------
    eval_tasks: str | None = "ramp:test"
    """Held-out task spec for EM/F1 during training (greedy decoding); None disables."""
    eval_episodes: int = 32
    """Held-out episodes per evaluation (data.val_batch_size is 256 upstream)."""
    eval_every: int = 50
    """trainer.test_freq."""
    save_every: int = 100
    """trainer.save_freq."""
    output_dir: str = "runs/search-agent"
    resume: bool = False
    """Continue from output_dir's latest checkpoint."""
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if self.algo not in ("grpo", "ppo", "sft"):
            raise ValueError(f"algo must be 'grpo', 'ppo' or 'sft', got {self.algo!r}")
        if self.algo == "sft" and not self.data:
            raise ValueError("algo 'sft' needs data: a trajectories JSONL from `search-envs collect`")
        if self.rollout_backend not in ("hf", "vllm"):
            raise ValueError(f"rollout_backend must be 'hf' or 'vllm', got {self.rollout_backend!r}")
        if self.reward_spec is not None:
            self.make_reward_spec()  # unknown keys or metrics fail here, not after the model loads
        if self.group_size is None:
            self.group_size = 5 if self.algo == "grpo" else 1
        positive = ("total_steps", "questions_per_step", "group_size", "mini_batch_size", "micro_batch_size",
                    "ppo_epochs", "max_turns", "max_response_length", "max_total_length", "sft_epochs",
                    "sft_batch_size")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.questions_per_step % min(self.mini_batch_size, self.questions_per_step):
            raise ValueError("questions_per_step must be a multiple of mini_batch_size")

    def make_reward_spec(self):
        """The `RewardSpec` of `reward_spec`, or None when it is not set."""
        if self.reward_spec is None:
            return None
        from search_envs.rewards import RewardSpec

        if not isinstance(self.reward_spec, dict):
            raise ValueError(f"reward_spec must be a JSON object, got {self.reward_spec!r}")
        try:
            return RewardSpec(**self.reward_spec)
        except TypeError as exc:
            raise ValueError(f"bad reward_spec {self.reward_spec!r}: {exc}") from None

    @property
    def updates_per_step(self) -> int:
        return max(1, self.questions_per_step // self.mini_batch_size) * self.ppo_epochs

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
