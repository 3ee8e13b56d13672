#!/usr/bin/env bash
# The full default test suite (8 fake CPU devices; tests marked slow are left out).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
python -m pytest tests -m "not slow" -q -p no:randomly "$@"
echo "suite time: $(( $(date +%s) - start )) s"
