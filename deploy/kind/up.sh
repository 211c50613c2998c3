#!/usr/bin/env bash
# Three kind clusters: the global control plane (trellis-global), and zones "east" and "west", each with
# the zone control plane joined to the global, the injector (CNI capture: meshed pods pass Pod Security
# "restricted"), the CNI node agent and the sample services in the injected namespace "shop"; then an
# allowed call and a denied call.
#
#   deploy/kind/up.sh            build the image, create both clusters, install, run the demo calls
#   deploy/kind/down.sh          delete both clusters
#
# Needs docker, kind (v0.20 or later) and kubectl. One mesh root CA is made offline (with the image
# itself) under $TRELLIS_KIND_DIR and shared by both zones; each injector gets its own intermediate.
# Environment: TRELLIS_IMAGE (default trellis:dev), TRELLIS_KIND_DIR (default .trellis-kind),
# KIND_NODE_IMAGE (a kindest/node image, 1.29 or later, e.g. kindest/node:v1.31.0), TRELLIS_ZONES
# (default "east west"), TRELLIS_SKIP_BUILD=1 to reuse an image already built.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
IMAGE="${TRELLIS_IMAGE:-trellis:dev}"
WORK="${TRELLIS_KIND_DIR:-$ROOT/.trellis-kind}"
ZONES="${TRELLIS_ZONES:-east west}"
TRUST_DOMAIN="mesh.local"

say() { printf '\n== %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is required (see the README, section Kubernetes)"
done

# Runs `trellis` from the image, as the current user, with $WORK mounted at /work.
trellis() {
  docker run --rm --user "$(id -u):$(id -g)" -v "$WORK:/work" "$IMAGE" "$@"
}

if [ "${TRELLIS_SKIP_BUILD:-0}" != "1" ]; then
  say "building $IMAGE"
  docker build -f "$ROOT/deploy/Dockerfile" -t "$IMAGE" "$ROOT"
fi

mkdir -p "$WORK"
if [ ! -f "$WORK/root/ca.key" ]; then
  say "making the mesh root CA ($TRUST_DOMAIN) in $WORK/root"
  trellis ca init --dir /work/root --trust-domain "$TRUST_DOMAIN"
fi

say "global control plane: cluster trellis-global"
gctx="kind-trellis-global"
if ! kind get clusters | grep -qx "trellis-global"; then
  kind create cluster --config "$ROOT/deploy/kind/global.yaml" ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"} --wait 120s
fi
kind load docker-image "$IMAGE" --name trellis-global
kubectl --context "$gctx" apply -k "$ROOT/deploy/kubernetes/overlays/global"
kubectl --context "$gctx" -n trellis-global create secret generic trellis-root-ca \
  --from-file=ca.crt="$WORK/root/ca.crt" --from-file=ca.key="$WORK/root/ca.key" --from-file=bundle.pem="$WORK/root/bundle.pem" \
  --dry-run=client -o yaml | kubectl --context "$gctx" apply -f -
kubectl --context "$gctx" -n trellis-global rollout status deploy/trellis-global --timeout 180s
# The zones dial the global's node port on the kind Docker network.
global_ip="$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' trellis-global-control-plane)"
global_url="https://$global_ip:30020"
kubectl --context "$gctx" -n trellis-global exec deploy/trellis-global -- cat /var/lib/trellis/trust-bundle.pem > "$WORK/global-trust-bundle.pem"

for zone in $ZONES; do
  cluster="trellis-$zone"
  ctx="kind-$cluster"
  say "zone $zone: cluster $cluster"
  if ! kind get clusters | grep -qx "$cluster"; then
    kind create cluster --config "$ROOT/deploy/kind/$zone.yaml" ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"} --wait 120s
  fi
  kind load docker-image "$IMAGE" --name "$cluster"

  version="$(kubectl --context "$ctx" version -o json | sed -n 's/.*"minor": *"\([0-9]*\).*/\1/p' | tail -n 1)"
  if [ "${version:-0}" -lt 29 ]; then
    echo "note: Kubernetes 1.$version has no native sidecars; the injector uses the classic layout"
  fi

  if [ ! -f "$WORK/$zone-injector/ca.key" ]; then
    trellis ca intermediate --dir /work/root --out "/work/$zone-injector" --name "Trellis injector $zone"
  fi

  say "zone $zone: installing Trellis"
  kubectl --context "$ctx" apply -f "$ROOT/deploy/kubernetes/base/namespace.yaml"
  kubectl --context "$ctx" apply -f "$ROOT/deploy/kubernetes/base/crds/"
  kubectl --context "$ctx" wait --for condition=established --timeout 60s crd/trafficpermissions.trellis.dev \
    crd/trafficroutes.trellis.dev crd/retrypolicies.trellis.dev crd/timeoutpolicies.trellis.dev crd/outlierdetections.trellis.dev crd/circuitbreakers.trellis.dev crd/zonefailovers.trellis.dev
  kubectl --context "$ctx" -n trellis-system create secret generic trellis-root-ca \
    --from-file=ca.crt="$WORK/root/ca.crt" --from-file=ca.key="$WORK/root/ca.key" --from-file=bundle.pem="$WORK/root/bundle.pem" \
    --dry-run=client -o yaml | kubectl --context "$ctx" apply -f -
  kubectl --context "$ctx" -n trellis-system create secret generic trellis-injector-ca \
    --from-file=ca.crt="$WORK/$zone-injector/ca.crt" --from-file=ca.key="$WORK/$zone-injector/ca.key" --from-file=bundle.pem="$WORK/$zone-injector/bundle.pem" \
    --dry-run=client -o yaml | kubectl --context "$ctx" apply -f -
  # A single-use token admits this zone at its first join; afterwards it keeps its identity in its data dir.
  kubectl --context "$gctx" -n trellis-global exec deploy/trellis-global -- \
    trellis zone token create --zone "$zone" --ttl 1h --data-dir /var/lib/trellis > "$WORK/$zone-zone-token"
  kubectl --context "$ctx" -n trellis-system create secret generic trellis-global \
    --from-file=trust-bundle.pem="$WORK/global-trust-bundle.pem" --from-file=zone-token="$WORK/$zone-zone-token" \
    --dry-run=client -o yaml | kubectl --context "$ctx" apply -f -
  kubectl --context "$ctx" apply -k "$ROOT/deploy/kind/overlays/$zone"
  kubectl --context "$ctx" -n trellis-system patch configmap trellis-mesh --type merge -p "{\"data\":{\"globalUrl\":\"$global_url\"}}"
  kubectl --context "$ctx" -n trellis-system rollout restart deploy/trellis-control
  kubectl --context "$ctx" -n trellis-cni rollout status ds/trellis-cni --timeout 180s
  kubectl --context "$ctx" -n trellis-system rollout status deploy/trellis-control --timeout 180s
  # The injector turns ready once the webhook configuration trusts its certificate.
  kubectl --context "$ctx" -n trellis-system rollout status deploy/trellis-injector --timeout 180s

  say "zone $zone: sample services in namespace shop (injected with CNI capture; Pod Security baseline, which refuses the init-container capture)"
  kubectl --context "$ctx" apply -f "$ROOT/deploy/kind/samples/shop.yaml"
  kubectl --context "$ctx" label namespace shop pod-security.kubernetes.io/enforce=baseline --overwrite
  if [ "$zone" = "east" ]; then
    kubectl --context "$ctx" apply -f "$ROOT/deploy/kind/samples/frontend.yaml"
  fi
  kubectl --context "$ctx" apply -f "$ROOT/deploy/kind/samples/policy.yaml"
  kubectl --context "$ctx" -n shop rollout status deploy --timeout 180s
done

case " $ZONES " in
  *" east "*) ;;
  *) say "done (the demo calls run in zone east)"; exit 0 ;;
esac

ctx="kind-trellis-east"
call() {
  kubectl --context "$ctx" -n shop exec deploy/frontend -c frontend -- node -e "
    fetch('$1', { method: '$2' }).then(async (r) => { console.log(r.status, (await r.text()).trim()); process.exit(r.status < 400 ? 0 : 3); },
      (e) => { console.log('failed:', e.cause ?? e); process.exit(4); });"
}

say "frontend -> orders (allowed by shop/orders; orders then POSTs to payments, allowed by shop/payments)"
allowed="$(call http://orders.shop.svc.cluster.local:8080/ GET || true)"
echo "$allowed"
case "$allowed" in
  "200 orders from "*"payments said 200") ;;
  *) die "expected 200 from orders, which got 200 from payments" ;;
esac

say "frontend -> payments (no policy allows it: the payments sidecar answers 403)"
denied="$(call http://payments.shop.svc.cluster.local:8080/pay POST || true)"
echo "$denied"
case "$denied" in
  403*) ;;
  *) die "expected 403: frontend may not call payments" ;;
esac

say "injected pods"
kubectl --context "$ctx" -n shop get pods -o custom-columns='POD:.metadata.name,INIT:.spec.initContainers[*].name,CONTAINERS:.spec.containers[*].name'
echo
echo "Both zones are up, joined to the global control plane. Contexts: kind-trellis-global $(for z in $ZONES; do printf 'kind-trellis-%s ' "$z"; done)"
echo "Check them with: trellis check --kubeconfig ~/.kube/config --context kind-trellis-east"
echo "Remove everything with deploy/kind/down.sh"
