#!/usr/bin/env bash
# Create / run / delete a TPU VM pod slice. Usage:
#   launch/tpu_pod.sh create NAME ZONE ACCELERATOR   # e.g. my-pod us-central2-b v4-32
#   launch/tpu_pod.sh sync   NAME ZONE               # copy this checkout's source to every worker
#   launch/tpu_pod.sh run    NAME ZONE --config=configs/biggan_dgl.py:imagenet128 --workdir=gs://B/r
#   launch/tpu_pod.sh delete NAME ZONE
set -euo pipefail
cmd=$1 name=$2 zone=$3; shift 3
# Never shipped to the workers: virtual environments, run outputs, caches, build outputs.
SKIP='(^|/)(\.?venv[^/]*|runs|__pycache__|\.cache|\.pytest_cache|\.ruff_cache|\.ipynb_checkpoints|build|dist|[^/]*\.egg-info)(/|$)'
case "$cmd" in
  create) gcloud compute tpus tpu-vm create "$name" --zone="$zone" --accelerator-type="$1" \
            --version="${TPU_SOFTWARE_VERSION:-tpu-ubuntu2204-base}" ;;
  sync)   top=$(git rev-parse --show-toplevel)
          tgz=$(mktemp --suffix=.tgz)
          trap 'rm -f "$tgz"' EXIT
          # Tracked and new (not ignored) files that exist, minus $SKIP.
          (cd "$top" && git ls-files -z --cached --others --exclude-standard \
            | grep -zvE "$SKIP" | tar --null -T - --ignore-failed-read -czf "$tgz" 2>/dev/null)
          gcloud compute tpus tpu-vm scp --zone="$zone" --worker=all "$tgz" "$name":~/jaxpapers.tgz
          gcloud compute tpus tpu-vm ssh "$name" --zone="$zone" --worker=all \
            --command='mkdir -p ~/jaxpapers && tar -xzf ~/jaxpapers.tgz -C ~/jaxpapers && rm ~/jaxpapers.tgz' ;;
  run)    gcloud compute tpus tpu-vm ssh "$name" --zone="$zone" --worker=all \
            --command="bash ~/jaxpapers/launch/tpu_vm.sh $(printf '%q ' "$@")" ;;
  delete) gcloud compute tpus tpu-vm delete "$name" --zone="$zone" --quiet ;;
  *) echo "unknown command $cmd (create|sync|run|delete)" >&2; exit 2 ;;
esac
