#!/usr/bin/env bash
# Search-R1's GRPO or PPO run on verl, with the search_envs agent loop.
#   examples/verl/train.sh grpo|ppo [extra verl overrides...]
# Environment: BASE_MODEL (Qwen/Qwen2.5-3B), TASKS / TEST_TASKS (task specs, see docs/tasks.md),
# ENV_ID (SearchEnvs/WikiBM25-v0), INDEX (a built index for the retrieval server; default: BM25
# over the embedded Wikipedia), PORT (8000), DATA_DIR (data/verl), GPUS_PER_NODE, NNODES.
# On a Ray cluster, run it on the head node after `ray start` on every node (docs/verl.md);
# the retrieval server's URL must then be reachable from every node (RETRIEVER_HOST).
set -euo pipefail
ALGO="${1:?usage: train.sh grpo|ppo [overrides...]}"
shift
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BASE_MODEL="${BASE_MODEL:-Qwen/Qwen2.5-3B}"
TASKS="${TASKS:-ramp:train}"
TEST_TASKS="${TEST_TASKS:-ramp:test}"
ENV_ID="${ENV_ID:-SearchEnvs/WikiBM25-v0}"
PORT="${PORT:-8000}"
RETRIEVER_HOST="${RETRIEVER_HOST:-127.0.0.1}"
DATA_DIR="${DATA_DIR:-data/verl}"
EXPERIMENT="${EXPERIMENT:-search-r1-$ALGO-$(basename "$BASE_MODEL")}"

# 1. The retrieval server, as Search-R1 runs its retrieval_server.py: one process serving
#    POST /retrieve to every rollout worker (micro-batched). Bind 0.0.0.0 with an API key
#    for a cluster: search-envs serve --host 0.0.0.0 --api-key "$SEARCH_ENVS_API_KEY".
SERVE_ARGS=(--port "$PORT" --host "$RETRIEVER_HOST" --log-level warning)
if [[ -n "${INDEX:-}" ]]; then SERVE_ARGS+=(--index "$INDEX"); fi
search-envs serve "${SERVE_ARGS[@]}" &
SERVER_PID=$!
trap 'kill "$SERVER_PID" 2>/dev/null || true' EXIT
URL="http://$RETRIEVER_HOST:$PORT"
for _ in $(seq 600); do
    if curl -sf "$URL/health" >/dev/null; then break; fi
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "the retrieval server exited" >&2; exit 1; }
    sleep 1
done

# 2. The data: one row per question, each naming the env (searching through the server),
#    Search-R1's protocol and exact-match reward, 3 actions (2 searches + the answer), top-3.
ENV_KWARGS="{\"engine\": \"$URL/retrieve\", \"protocol\": \"search_r1\", \"reward\": \"search_r1\", \"max_turns\": 3, \"top_k\": 3}"
search-envs data export-verl --tasks "$TASKS" --test-tasks "$TEST_TASKS" --env "$ENV_ID" \
    --env-kwargs "$ENV_KWARGS" --out "$DATA_DIR"

# 3. verl.
source "$HERE/common.sh"
case "$ALGO" in
    grpo) ALGO_ARGS=("${GRPO_ARGS[@]}") ;;
    ppo) ALGO_ARGS=("${PPO_ARGS[@]}") ;;
    *) echo "unknown algorithm $ALGO: grpo or ppo" >&2; exit 2 ;;
esac
PYTHONUNBUFFERED=1 python3 -m verl.trainer.main_ppo "${COMMON_ARGS[@]}" "${ALGO_ARGS[@]}" \
    trainer.experiment_name="$EXPERIMENT" trainer.default_local_dir="checkpoints/$EXPERIMENT" "$@"
