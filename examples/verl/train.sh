#!/usr/bin/env bash
# Search-R1's GRPO or PPO run on verl, with the search_envs agent loop.
#   examples/verl/train.sh grpo|ppo [extra verl overrides...]
# Environment: BASE_MODEL (Qwen/Qwen2.5-3B), TASKS / TEST_TASKS (task specs, see docs/tasks.md),
# ENV_ID (SearchEnvs/WikiBM25-v0), INDEX (a built index for the retrieval server; default: BM25
# over the embedded Wikipedia), PORT (8000), DATA_DIR (data/verl), GPUS_PER_NODE, NNODES,
# RETRIEVER_URL (a running server to use instead of starting one on this machine), PYTHON
# (python3), DRY_RUN=1 (serve and export, then print the verl command instead of running it).
# On a Ray cluster, run it on the head node after `ray start` on every node, with
# RETRIEVER_URL reachable from every node (docs/verl.md).
set -euo pipefail
ALGO="${1:?usage: train.sh grpo|ppo [overrides...]}"
shift
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BASE_MODEL="${BASE_MODEL:-Qwen/Qwen2.5-3B}"
TASKS="${TASKS:-ramp:train}"
TEST_TASKS="${TEST_TASKS:-ramp:test}"
ENV_ID="${ENV_ID:-SearchEnvs/WikiBM25-v0}"
PORT="${PORT:-8000}"
DATA_DIR="${DATA_DIR:-data/verl}"
PYTHON="${PYTHON:-python3}"
EXPERIMENT="${EXPERIMENT:-search-r1-$ALGO-$(basename "$BASE_MODEL")}"

# 1. The retrieval server, as Search-R1 runs its retrieval_server.py: one process serving
#    POST /retrieve to every rollout worker (micro-batched). With RETRIEVER_URL set (a server
#    already running where every node of a cluster reaches it), none is started here.
if [[ -z "${RETRIEVER_URL:-}" ]]; then
    SERVE_ARGS=(--port "$PORT" --log-level warning)
    if [[ -n "${INDEX:-}" ]]; then SERVE_ARGS+=(--index "$INDEX"); fi
    "$PYTHON" -m search_envs.cli serve "${SERVE_ARGS[@]}" &
    SERVER_PID=$!
    trap 'kill "$SERVER_PID" 2>/dev/null || true' EXIT
    RETRIEVER_URL="http://127.0.0.1:$PORT"
    for _ in $(seq 600); do
        if curl -sf "$RETRIEVER_URL/health" >/dev/null; then break; fi
        kill -0 "$SERVER_PID" 2>/dev/null || { echo "the retrieval server exited" >&2; exit 1; }
        sleep 1
    done
fi
URL="${RETRIEVER_URL%/retrieve}"

# 2. The data: one row per question, each naming the env (searching through the server),
#    Search-R1's protocol and exact-match reward, 3 actions (2 searches + the answer), top-3.
ENV_KWARGS="{\"engine\": \"$URL/retrieve\", \"protocol\": \"search_r1\", \"reward\": \"search_r1\", \"max_turns\": 3, \"top_k\": 3}"
"$PYTHON" -m search_envs.cli data export-verl --tasks "$TASKS" --test-tasks "$TEST_TASKS" --env "$ENV_ID" \
    --env-kwargs "$ENV_KWARGS" --out "$DATA_DIR" >&2

# 3. verl.
source "$HERE/common.sh"
case "$ALGO" in
    grpo) ALGO_ARGS=("${GRPO_ARGS[@]}") ;;
    ppo) ALGO_ARGS=("${PPO_ARGS[@]}") ;;
    *) echo "unknown algorithm $ALGO: grpo or ppo" >&2; exit 2 ;;
esac
CMD=("$PYTHON" -m verl.trainer.main_ppo "${COMMON_ARGS[@]}" "${ALGO_ARGS[@]}"
     trainer.experiment_name="$EXPERIMENT" trainer.default_local_dir="checkpoints/$EXPERIMENT" "$@")
if [[ "${DRY_RUN:-0}" == 1 ]]; then
    printf '%s\n' "${CMD[@]}"
    exit 0
fi
PYTHONUNBUFFERED=1 "${CMD[@]}"
