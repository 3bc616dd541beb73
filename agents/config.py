"""Every hyper-parameter of the reference agent, in one dataclass (CleanRL style).

Defaults are Search-R1's (`train_ppo.sh`, `train_grpo.sh` and the verl
`ppo_trainer.yaml` they run, PeterGriffinJin/Search-R1) unless a comment says
otherwise. The paper's run uses 512 questions per step on 8 GPUs; a CPU run
overrides the sizes (see agents/README.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


ALGOS = ("grpo", "ppo", "dapo", "reinforce_pp", "sft")
LOSS_AGG_MODES = ("token-mean", "seq-mean-token-mean")


@dataclass
class TrainConfig:
    # --- what to train -------------------------------------------------------------
    algo: str = "grpo"
    """"grpo" (group-normalised advantages, KL in the loss), "ppo" (critic, GAE, KL in the reward),
    "dapo" (GRPO advantages with DAPO's clip-higher, dynamic sampling, token-mean loss, overlong
    shaping, no KL) or "reinforce_pp" (REINFORCE++ as R1-Searcher trains it: no critic, group-mean
    baseline, KL in the reward, returns whitened over the batch), or "sft" (cold-start fine-tuning on
    collected trajectories, `data`; agents/sft.py). See docs/papers.md."""
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
    """rollout.n_agent: rollouts per question. None = 5 for GRPO, 1 for PPO, 16 for DAPO (the paper's
    n) and REINFORCE++ (R1-Searcher's N_SAMPLES)."""
    mini_batch_size: int = 256
    """actor.ppo_mini_batch_size, in trajectories: optimizer updates per step =
    questions_per_step * group_size / this. Search-R1's verl does not multiply it by n_agent
    (only by rollout.n, 1 there), so its GRPO run makes 512 x 5 / 256 = 10 updates per step."""
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
    """epsilon of the clipped surrogate (DAPO's eps_low)."""
    clip_ratio_high: float | None = None
    """DAPO's clip-higher eps_high; None = 0.28 for DAPO (its recipe), clip_ratio otherwise."""
    value_clip: float = 0.5
    """critic.cliprange_value."""
    entropy_coef: float | None = None
    """actor.entropy_coeff. None = 0.001 for GRPO/PPO (verl default used by Search-R1), 0 for DAPO
    (its recipe) and REINFORCE++ (OpenRLHF has no entropy bonus)."""
    kl_coef: float | None = None
    """GRPO/DAPO: actor.kl_loss_coef (k3 'low_var_kl' in the loss). PPO/REINFORCE++: the k1 penalty in the
    reward. None = 0.001 for GRPO/PPO (Search-R1), 0 for DAPO (the paper drops the KL) and REINFORCE++
    (R1-Searcher's scripts: --init_kl_coef 0.0)."""
    loss_agg_mode: str | None = None
    """"token-mean" (a mean over every trained token of the mini-batch: verl, DAPO's token-level loss) or
    "seq-mean-token-mean" (each episode's token mean, then a mean over episodes: OpenRLHF, as in
    R1-Searcher's REINFORCE++). None = seq-mean-token-mean for REINFORCE++, token-mean otherwise."""
    dynamic_sampling: bool | None = None
    """DAPO: drop the groups whose episodes all score the same and roll out more questions until
    questions_per_step informative groups are kept. None = on for DAPO only."""
    max_gen_batches: int = 10
    """filter_groups.max_num_gen_batches: rollout rounds per step at most (<= 0: no limit); past it the
    step trains on the informative groups it has."""
    overlong_buffer_len: int | None = None
    """DAPO's soft overlong punishment: episodes whose policy tokens exceed max_turns * max_response_length
    - this are penalised linearly, down to -overlong_penalty_factor at the limit. None = a fifth of that
    limit for DAPO (its 4096 of 20480), 0 (off) otherwise."""
    overlong_penalty_factor: float = 1.0
    task_curriculum: str | None = None
    """A task metadata key (e.g. "mask_count" of 'masksearch' tasks): training questions are split into
    stages by its increasing values, each stage trained for an equal share of total_steps (MaskSearch's
    curriculum over the number of masks). None = every question at every step."""
    group_reward: str | None = None
    """A reward over each question's group of rollouts added to the env's reward, from
    `search_envs.rewards.GROUP_REWARDS`: "r1_searcher_pp" (R1-Searcher++: the correct rollouts with
    the fewest searches get a bonus; pair it with reward "r1_searcher_pp"). None = none."""
    reinforce_baseline: bool = True
    """REINFORCE++: subtract the group's mean score (OpenRLHF `reinforce_baseline`, R1-Searcher's scripts);
    False = the original REINFORCE++ (`reinforce`: raw scores, batch whitening only)."""
    gamma: float = 1.0
    lam: float = 1.0
    mask_retrieved_tokens: bool = True
    """actor.state_masking=true. False is the ablation: environment tokens are trained on as if generated."""

    # --- rollouts ---------------------------------------------------------------------------
    temperature: float = 1.0
    top_p: float = 0.95
    """rollout.top_p: Search-R1's train_grpo.sh and train_ppo.sh leave verl's yaml default, 0.95
    (its later scripts under scripts/nq_hotpotqa set 1.0)."""
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
    eval_clean: bool = True
    """Held-out evaluation without the noise curriculum and, for a simulated engine, without the
    gold answer in the simulator's prompt (ZeroSearch validates on real, noise-free search).
    False evaluates with the training env's settings."""
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
        if self.algo not in ALGOS:
            raise ValueError(f"algo must be one of {', '.join(map(repr, ALGOS))}, got {self.algo!r}")
        self._resolve_algo_defaults()
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
        if self.trajectories_per_step % min(self.mini_batch_size, self.trajectories_per_step):
            raise ValueError("questions_per_step * group_size must be a multiple of mini_batch_size (trajectories)")

    def _resolve_algo_defaults(self) -> None:
        """The None fields that depend on the algorithm get that algorithm's published value."""
        paper = self.algo in ("dapo", "reinforce_pp")
        if self.kl_coef is None:
            self.kl_coef = 0.0 if paper else 0.001
        if self.entropy_coef is None:
            self.entropy_coef = 0.0 if paper else 0.001
        if self.clip_ratio_high is None:
            self.clip_ratio_high = 0.28 if self.algo == "dapo" else self.clip_ratio
        if self.loss_agg_mode is None:
            self.loss_agg_mode = "seq-mean-token-mean" if self.algo == "reinforce_pp" else "token-mean"
        if self.loss_agg_mode not in LOSS_AGG_MODES:
            raise ValueError(f"loss_agg_mode must be one of {LOSS_AGG_MODES}, got {self.loss_agg_mode!r}")
        if self.dynamic_sampling is None:
            self.dynamic_sampling = self.algo == "dapo"
        if self.overlong_buffer_len is None:
            self.overlong_buffer_len = self.max_turns * self.max_response_length // 5 if self.algo == "dapo" else 0
        if not 0 <= self.overlong_buffer_len <= self.max_turns * self.max_response_length:
            raise ValueError("overlong_buffer_len must be in [0, max_turns * max_response_length]")
        if self.group_reward is not None:
            from search_envs.rewards import GROUP_REWARDS

            if self.group_reward not in GROUP_REWARDS:
                raise ValueError(f"unknown group_reward {self.group_reward!r}; choose from {sorted(GROUP_REWARDS)}")
        if self.group_size is None and paper:
            self.group_size = 16

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
    def trajectories_per_step(self) -> int:
        return self.questions_per_step * int(self.group_size or 1)

    @property
    def updates_per_step(self) -> int:
        return max(1, self.trajectories_per_step // self.mini_batch_size) * self.ppo_epochs

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
