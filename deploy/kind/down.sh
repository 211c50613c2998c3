#!/usr/bin/env bash
# Deletes the kind clusters made by deploy/kind/up.sh. The mesh root CA in $TRELLIS_KIND_DIR
# (default .trellis-kind) is kept, so the next up.sh reuses it; delete that directory to start afresh.
set -euo pipefail
command -v kind >/dev/null 2>&1 || { echo "error: kind is required" >&2; exit 1; }
for cluster in ${TRELLIS_ZONES:-east west} global; do
  if kind get clusters | grep -qx "trellis-$cluster"; then
    kind delete cluster --name "trellis-$cluster"
  fi
done
