#!/usr/bin/env bash
# Submit an indexing run to a running Ray cluster (ray up infra/cluster.yaml).
#   RAY_ADDRESS=http://<head>:8265 infra/submit.sh s3://videos/2026/ s3://index/kinetics/ s3://models/xclip-base-patch32 [FLAGS...]
# Extra FLAGS go to `xclip-index run` after --config job.toml, so they override it (e.g. --precision fp32).
# Ray 2.60 clusters use token auth: export RAY_AUTH_TOKEN (or have ~/.ray/auth_token) for the submit.
set -euo pipefail
INPUT=${1:?input uri}; OUTPUT=${2:?output uri}; MODEL=${3:?model source}
: "${RAY_ADDRESS:?set RAY_ADDRESS=http://<head>:8265}"
# Only non-secret settings travel in the runtime env; credentials come from the nodes' instance role.
submit() {  # the job; "$@" are this script's arguments
  ray job submit --address "$RAY_ADDRESS" \
    --working-dir "$(dirname "$0")" \
    --runtime-env-json '{"env_vars": {"AWS_REGION": "'"${AWS_REGION:-us-east-1}"'"}}' \
    -- xclip-index run --input "$INPUT" --output "$OUTPUT" --model "$MODEL" --config job.toml "${@:4}"
}
# A head that has just started may answer "No available agent to submit job, please try again
# later" (HTTP 500: nothing was submitted): that answer alone is retried, up to 6 tries, 5 s apart.
log=$(mktemp); trap 'rm -f "$log"' EXIT
for try in 1 2 3 4 5 6; do
  set +e
  submit "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  set -e
  if [ "$rc" -ne 0 ] && [ "$try" -lt 6 ] && grep -q "No available agent to submit job" "$log"; then
    echo "submit.sh: the head's job agent is not up yet; retrying in 5 s (try $try of 6)" >&2
    sleep 5
    continue
  fi
  exit "$rc"
done
