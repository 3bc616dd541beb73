"""Every hyper-parameter of the reference agent, in one dataclass (CleanRL style).

Defaults are Search-R1's (`train_ppo.sh`, `train_grpo.sh` and the verl
`ppo_trainer.yaml` they run, PeterGriffinJin/Search-R1) unless a comment says
otherwise. The paper's run uses 512 questions per step on 8 GPUs; a CPU run
overrides the sizes (see agents/README.md).

Each field's docstring is its `search-envs train --help` text: the first sentence says what
the option does (and what None means), the rest where the value comes from. Closed sets of
values are `Literal` types (group_reward: its registry), so the CLI lists them and `TrainConfig`
rejects anything else (`TrainConfig.choices`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from functools import cache
from typing import Any, Literal, get_args, get_origin, get_type_hints

Algo = Literal["grpo", "ppo", "dapo", "reinforce_pp", "sft"]
LossAggMode = Literal["token-mean", "seq-mean-token-mean"]
ALGOS: tuple[str, ...] = get_args(Algo)
LOSS_AGG_MODES: tuple[str, ...] = get_args(LossAggMode)


@cache
def _type_hints(cls: type) -> dict[str, Any]:
    """`get_type_hints` once per class: it evaluates every annotation, and `__post_init__` asks
    for each field's choices (uncached, a config took 33 ms to build)."""
    return get_type_hints(cls)


@dataclass
class TrainConfig:
    # --- what to train -------------------------------------------------------------
    algo: Algo = "grpo"
    """The training algorithm (docs/papers.md). "grpo" (group-normalised advantages, KL in the loss), "ppo"
    (critic, GAE, KL in the reward), "dapo" (GRPO advantages with DAPO's clip-higher, dynamic sampling,
    token-mean loss, overlong shaping, no KL) or "reinforce_pp" (REINFORCE++ as R1-Searcher trains it: no
    critic, group-mean baseline, KL in the reward, returns whitened over the batch), or "sft" (cold-start
    fine-tuning on collected trajectories, `data`; agents/sft.py)."""
    env_id: str = "SearchEnvs/WikiBM25-v0"
    """The registered environment id the agent is trained on."""
    env_kwargs: dict[str, Any] = field(default_factory=lambda: {"tasks": "ramp:train"})
    """Keyword arguments of `gym.make(env_id, ...)` for every sub-env, as a JSON object (tasks, protocol,
    reward, top_k, ...)."""
    reward_spec: dict[str, Any] | None = None
    """A `search_envs.rewards.RewardSpec` as a JSON object, e.g. {"answer_metric": "f1", "format_weight": 0.5},
    replacing env_kwargs["reward"] (a preset name) for training and held-out evaluation. Other fields:
    "retrieval_weight", ...; not a Search-R1 setting (EM only)."""
    model: str | None = None
    """HF causal LM name or folder; None = SmolLM2-135M-Instruct (search_envs.models)."""
    critic_model: str | None = None
    """PPO critic backbone; None = the actor's initial model (as Search-R1)."""
    use_chat_template: bool = True
    """Prompt with the tokenizer's chat template (applied to the user message, add_generation_prompt)."""
    init: str | None = None
    """Start from this checkpoint or model folder instead of `model`. An SFT or RL output folder, a
    checkpoint or a model folder: cold-start SFT, then GRPO/PPO with --init. Not a Search-R1 setting."""

    # --- cold-start SFT (algo="sft"; R1-Searcher++ / SimpleDeepSearcher style, not Search-R1) --------
    data: str | None = None
    """Trajectories JSONL written by `search-envs collect` (each line has a `transcript`)."""
    sft_epochs: int = 2
    """Passes over the trajectories in SFT."""
    sft_batch_size: int = 16
    """Episodes per optimizer step (micro_batch_size of them per forward/backward)."""
    sft_lr: float = 1e-5
    """AdamW learning rate of SFT (warm-up: actor_warmup_ratio of the SFT steps)."""

    # --- hardware ---------------------------------------------------------------------
    device: str = "auto"
    """Torch device; "auto" = cuda when available, else cpu."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Compute dtype (autocast); "auto" = bfloat16 on cuda, float32 on cpu."""
    gradient_checkpointing: bool = True
    """Recompute activations in the backward pass to save memory.
    actor/critic.model.enable_gradient_checkpointing=true."""
    torch_threads: int | None = None
    """CPU threads for torch (None = torch's default); 1 is fastest on a busy shared CPU."""
    rollout_backend: Literal["hf", "vllm"] = "hf"
    """What generates rollouts: "hf" (transformers generate, KV cache) or "vllm" (optional, weights synced
    every step)."""
    vllm_gpu_memory_utilization: float = 0.6
    """Share of the GPU's memory vLLM may take (rollout_backend "vllm")."""
    rollout_batch_size: int = 64
    """Sequences per HF `generate` call (vLLM schedules its own batches)."""

    # --- sizes and schedule --------------------------------------------------------------
    total_steps: int = 1005
    """Training steps. trainer.total_training_steps (GRPO script; the PPO script uses 1005 upstream as well)."""
    questions_per_step: int = 512
    """Questions rolled out per step. data.train_batch_size."""
    group_size: int | None = None
    """Rollouts per question; None = 5 for GRPO, 16 for DAPO and REINFORCE++, 1 otherwise. rollout.n_agent;
    16 is DAPO's n and R1-Searcher's N_SAMPLES."""
    mini_batch_size: int = 256
    """Trajectories per optimizer update: updates per step = questions_per_step * group_size / this.
    actor.ppo_mini_batch_size, in trajectories; Search-R1's verl does not multiply it by n_agent
    (only by rollout.n, 1 there), so its GRPO run makes 512 x 5 / 256 = 10 updates per step."""
    micro_batch_size: int = 8
    """Trajectories per forward/backward (gradient accumulation inside a mini-batch)."""
    ppo_epochs: int = 1
    """Passes over each step's rollouts (actor.ppo_epochs)."""

    # --- optimisation ------------------------------------------------------------------
    actor_lr: float = 1e-6
    """AdamW learning rate of the policy (actor.optim.lr)."""
    critic_lr: float = 1e-5
    """AdamW learning rate of the PPO critic (critic.optim.lr)."""
    actor_warmup_ratio: float = 0.285
    """Share of the steps over which the policy's lr rises linearly from 0, constant after.
    actor.optim.lr_warmup_steps_ratio."""
    critic_warmup_ratio: float = 0.015
    """Share of the steps over which the critic's lr rises linearly from 0. critic.optim.lr_warmup_steps_ratio in
    Search-R1's PPO scripts."""
    weight_decay: float = 0.01
    """AdamW weight decay (verl's default)."""
    grad_clip: float = 1.0
    """Gradients are clipped to this global norm."""

    # --- losses ---------------------------------------------------------------------------
    clip_ratio: float = 0.2
    """Epsilon of the clipped surrogate (DAPO's eps_low)."""
    clip_ratio_high: float | None = None
    """Upper epsilon of the surrogate (DAPO's clip-higher eps_high); None = 0.28 for DAPO (its recipe),
    clip_ratio otherwise."""
    value_clip: float = 0.5
    """Clip range of the PPO critic's value updates (critic.cliprange_value)."""
    entropy_coef: float | None = None
    """Entropy bonus coefficient; None = 0.001 for GRPO/PPO, 0 for DAPO and REINFORCE++. actor.entropy_coeff:
    0.001 is verl's default, used by Search-R1; DAPO's recipe and OpenRLHF (REINFORCE++) have no entropy bonus."""
    kl_coef: float | None = None
    """KL coefficient against the initial policy; None = 0.001 for GRPO/PPO (Search-R1), 0 for DAPO and REINFORCE++.
    GRPO/DAPO: actor.kl_loss_coef (k3 'low_var_kl' in the loss). PPO/REINFORCE++: the k1 penalty in the
    reward. DAPO's paper drops the KL; R1-Searcher's scripts set --init_kl_coef 0.0."""
    loss_agg_mode: LossAggMode | None = None
    """How the loss averages over tokens; None = "seq-mean-token-mean" for REINFORCE++, "token-mean" otherwise.
    "token-mean" (a mean over every trained token of the mini-batch: verl, DAPO's token-level loss) or
    "seq-mean-token-mean" (each episode's token mean, then a mean over episodes: OpenRLHF, as in
    R1-Searcher's REINFORCE++)."""
    dynamic_sampling: bool | None = None
    """DAPO's dynamic sampling; None = on for DAPO only. Drop the groups whose episodes all score the same and
    roll out more questions until questions_per_step informative groups are kept."""
    max_gen_batches: int = 10
    """Rollout rounds per step at most under dynamic sampling (<= 0: no limit). filter_groups.max_num_gen_batches;
    past it the step trains on the informative groups it has."""
    overlong_buffer_len: int | None = None
    """Tokens before the length limit where DAPO's soft overlong penalty starts; None = a fifth of the limit for
    DAPO, 0 (off) otherwise. Episodes whose policy tokens exceed max_turns * max_response_length - this are
    penalised linearly, down to -overlong_penalty_factor at the limit (DAPO: 4096 of 20480)."""
    overlong_penalty_factor: float = 1.0
    """The overlong penalty at the length limit (see overlong_buffer_len)."""
    task_curriculum: str | None = None
    """Train in stages by this task metadata key's increasing values (e.g. "mask_count"); None = every question
    at every step. Each stage gets an equal share of total_steps: MaskSearch's curriculum over the number
    of masks of 'masksearch' tasks."""
    group_reward: str | None = None
    """A reward over each question's group of rollouts, added to the env's reward; None = none. From
    `search_envs.rewards.GROUP_REWARDS`: "r1_searcher_pp" (R1-Searcher++: the correct rollouts with
    the fewest searches get a bonus; pair it with reward "r1_searcher_pp")."""
    reinforce_baseline: bool = True
    """REINFORCE++: subtract the group's mean score. OpenRLHF `reinforce_baseline`, as R1-Searcher's scripts;
    False = the original REINFORCE++ (`reinforce`: raw scores, batch whitening only)."""
    gamma: float = 1.0
    """Discount of the returns (PPO's GAE, REINFORCE++)."""
    lam: float = 1.0
    """GAE lambda (PPO)."""
    mask_retrieved_tokens: bool = True
    """Leave the retrieved (environment) tokens out of the loss. actor.state_masking=true; False is the
    ablation: environment tokens are trained on as if generated."""

    # --- rollouts ---------------------------------------------------------------------------
    temperature: float = 1.0
    """Sampling temperature of the rollouts (the scored log-probabilities use it too)."""
    top_p: float = 0.95
    """Nucleus sampling top-p of the rollouts. rollout.top_p: Search-R1's train_grpo.sh and train_ppo.sh leave
    verl's yaml default, 0.95 (its later scripts under scripts/nq_hotpotqa set 1.0)."""
    max_turns: int = 3
    """Actions per episode (the env's max_turns): Search-R1's max_turns=2 search rounds plus its final answer turn."""
    max_start_length: int = 2048
    """Prompts longer than this (in tokens) are cut from the left (data.max_start_length)."""
    max_response_length: int = 500
    """New tokens per turn (data.max_response_length)."""
    max_obs_length: int = 500
    """Observation tokens kept per turn (data.max_obs_length)."""
    max_total_length: int = 4096
    """Tokens of the whole context: an episode that would exceed it ends with reward 0 (data.max_prompt_length)."""

    # --- evaluation, logging, checkpoints -----------------------------------------------------
    eval_tasks: str | None = "ramp:test"
    """Held-out task spec for EM/F1 during training (greedy decoding); None disables."""
    eval_episodes: int = 32
    """Held-out episodes per evaluation (data.val_batch_size is 256 upstream)."""
    eval_clean: bool = True
    """Evaluate without the noise curriculum and, for a simulated engine, without the gold answer in the
    simulator's prompt. ZeroSearch validates on real, noise-free search; False evaluates with the
    training env's settings."""
    eval_every: int = 50
    """Steps between held-out evaluations (trainer.test_freq)."""
    save_every: int = 100
    """Steps between checkpoints (trainer.save_freq)."""
    output_dir: str = "runs/search-agent"
    """Folder of the logs, checkpoints and the plot of the curves."""
    resume: bool = False
    """Continue from output_dir's latest checkpoint."""
    seed: int = 0
    """Random seed (task draws, sampling, initialisation)."""
    progress: bool = True
    """Show progress bars."""

    @classmethod
    def choices(cls, name: str) -> tuple[str, ...] | None:
        """The values field `name` accepts when they form a closed set (its `Literal`, or the
        registry group_reward names), else None: what `--help` lists and `__post_init__` checks."""
        if name == "group_reward":
            from search_envs.rewards import GROUP_REWARDS

            return tuple(sorted(GROUP_REWARDS))
        hint = _type_hints(cls)[name]
        for arg in (hint, *get_args(hint)):  # Literal[...] or Literal[...] | None
            if get_origin(arg) is Literal:
                return get_args(arg)
        return None

    def __post_init__(self) -> None:
        for f in fields(self):
            allowed, value = self.choices(f.name), getattr(self, f.name)
            if allowed is not None and value is not None and value not in allowed:
                raise ValueError(f"{f.name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
        self._resolve_algo_defaults()
        if self.algo == "sft" and not self.data:
            raise ValueError("algo 'sft' needs data: a trajectories JSONL from `search-envs collect`")
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
        if self.dynamic_sampling is None:
            self.dynamic_sampling = self.algo == "dapo"
        if self.overlong_buffer_len is None:
            self.overlong_buffer_len = self.max_turns * self.max_response_length // 5 if self.algo == "dapo" else 0
        if not 0 <= self.overlong_buffer_len <= self.max_turns * self.max_response_length:
            raise ValueError("overlong_buffer_len must be in [0, max_turns * max_response_length]")
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
