#!/usr/bin/env bash
# Runs on EVERY worker of a TPU VM (pod slice) via `gcloud ... ssh --worker=all --command=...`.
# Idempotent: creates the environment if missing, installs the suite, switches jax.distributed on
# (TPU VMs discover the coordinator themselves) and runs the main job with the given flags.
#   bash launch/tpu_vm.sh --config=configs/stylegan2_dgl.py:ffhq256 --workdir=gs://BUCKET/runs/sg2
# A preempted run resumes by running the identical command again (auto-resume from the workdir).
set -euo pipefail
REPO_DIR="${JAXPAPERS_DIR:-$HOME/jaxpapers}"
cd "$REPO_DIR"
if [[ ! -d .venv ]]; then
  python3 -m venv .venv
fi
. .venv/bin/activate
if ! python -c "import jaxpapers" 2>/dev/null; then
  pip install -q -U pip
  pip install -q -c constraints.txt -e ".[video,face3d]" "jax[tpu]"
fi
export JAXPAPERS_DISTRIBUTED=1
exec python -m jaxpapers.main "$@"
