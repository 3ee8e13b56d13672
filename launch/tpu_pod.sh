#!/usr/bin/env bash
# Create / run / delete a TPU VM pod slice. Usage:
#   launch/tpu_pod.sh create NAME ZONE ACCELERATOR   # e.g. my-pod us-central2-b v4-32
#   launch/tpu_pod.sh sync   NAME ZONE               # copy this checkout to every worker
#   launch/tpu_pod.sh run    NAME ZONE --config=configs/biggan_dgl.py:imagenet128 --workdir=gs://B/r
#   launch/tpu_pod.sh delete NAME ZONE
set -euo pipefail
cmd=$1 name=$2 zone=$3; shift 3
case "$cmd" in
  create) gcloud compute tpus tpu-vm create "$name" --zone="$zone" --accelerator-type="$1" \
            --version="${TPU_SOFTWARE_VERSION:-tpu-ubuntu2204-base}" ;;
  sync)   gcloud compute tpus tpu-vm scp --recurse --zone="$zone" --worker=all \
            "$(git rev-parse --show-toplevel)" "$name":~/jaxpapers ;;
  run)    gcloud compute tpus tpu-vm ssh "$name" --zone="$zone" --worker=all \
            --command="bash ~/jaxpapers/launch/tpu_vm.sh $(printf '%q ' "$@")" ;;
  delete) gcloud compute tpus tpu-vm delete "$name" --zone="$zone" --quiet ;;
  *) echo "unknown command $cmd (create|sync|run|delete)" >&2; exit 2 ;;
esac
