#!/usr/bin/env bash
# Deletes the kind clusters made by deploy/kind/up.sh (the global's and every zone's), which removes all
# that was installed in them. The mesh root CA in $TRELLIS_KIND_DIR (default .trellis-kind) is kept, so the
# next up.sh reuses it; `down.sh --purge` deletes that directory too (the root CA, the injector
# intermediates, the spent zone tokens). The image (TRELLIS_IMAGE, default trellis:dev) is left to docker.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WORK="${TRELLIS_KIND_DIR:-$ROOT/.trellis-kind}"
purge=0
case "${1:-}" in
  "") ;;
  --purge) purge=1 ;;
  *) echo "usage: deploy/kind/down.sh [--purge]" >&2; exit 2 ;;
esac
command -v kind >/dev/null 2>&1 || { echo "error: kind is required" >&2; exit 1; }
for cluster in ${TRELLIS_ZONES:-east west} global; do
  if kind get clusters | grep -qx "trellis-$cluster"; then
    kind delete cluster --name "trellis-$cluster"
  fi
done
if [ "$purge" = 1 ] && [ -d "$WORK" ]; then
  rm -rf -- "$WORK"
  echo "deleted $WORK"
fi
