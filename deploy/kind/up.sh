#!/usr/bin/env bash
# The two-zone demo on kind: three clusters, the global control plane (trellis-global) and zones "east"
# and "west", each with its zone control plane joined to the global, its zone ingress on node port 30443,
# the injector (CNI capture: meshed pods pass Pod Security "restricted"), the CNI node agent and the
# sample services in the injected namespace "shop": frontend in east, payments in west only, orders in
# both. Then, from frontend in east:
#   1. a call that crosses to west: frontend -> orders (east, its own zone first) -> payments (west, through
#      west's ingress), payments answering with the caller's SPIFFE ID as its own sidecar verified it;
#   2. a cross-zone call west's policy denies: frontend -> payments, 403 naming the rule;
#   3. failover: east's orders scaled to 0, frontend's calls answered by west's orders (the time printed),
#      then east's orders scaled back.
#
#   deploy/kind/up.sh            build the image, create the clusters, install, run the demo calls
#   deploy/kind/down.sh          delete the clusters (--purge: also the CA and tokens in $TRELLIS_KIND_DIR)
#
# Needs docker, kind (v0.20 or later) and kubectl. One mesh root CA is made offline (with the image
# itself) under $TRELLIS_KIND_DIR and shared by all clusters; each injector gets its own intermediate.
# Environment: TRELLIS_IMAGE (default trellis:dev), TRELLIS_KIND_DIR (default .trellis-kind),
# KIND_NODE_IMAGE (a kindest/node image, 1.29 or later, e.g. kindest/node:v1.31.0), TRELLIS_ZONES
# (default "east west"), TRELLIS_SKIP_BUILD=1 to reuse an image already built.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
IMAGE="${TRELLIS_IMAGE:-trellis:dev}"
WORK="${TRELLIS_KIND_DIR:-$ROOT/.trellis-kind}"
ZONES="${TRELLIS_ZONES:-east west}"
TRUST_DOMAIN="mesh.local"
# The node ports other clusters dial on the kind Docker network (deploy/kubernetes/global, deploy/kind/components).
GLOBAL_NODE_PORT=30020
INGRESS_NODE_PORT=30443
# How long the first cross-zone call may take: each zone's exports reach the other through the global.
CROSS_ZONE_WAIT_S=180
FAILOVER_WAIT_S=90

say() { printf '\n== %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is required (see the README, section Kubernetes)"
done

# Runs `trellis` from the image, as the current user, with $WORK mounted at /work.
trellis() {
  docker run --rm --user "$(id -u):$(id -g)" -v "$WORK:/work" "$IMAGE" "$@"
}

# The address of a kind node on the kind Docker network, where the other clusters reach its node ports.
node_ip() {
  docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$1-control-plane"
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
global_url="https://$(node_ip trellis-global):$GLOBAL_NODE_PORT"
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
  # The ingress's --ca-file: the roots the zone control plane serves under (with --ca-dir, its trust bundle
  # is the CA directory's bundle.pem). Public certificates only; the ingress never sees a CA key.
  kubectl --context "$ctx" -n trellis-system create configmap trellis-trust-bundle \
    --from-file=ca.pem="$WORK/root/bundle.pem" \
    --dry-run=client -o yaml | kubectl --context "$ctx" apply -f -
  # A single-use token admits this zone at its first join; afterwards it keeps its identity in its data dir.
  kubectl --context "$gctx" -n trellis-global exec deploy/trellis-global -- \
    trellis zone token create --zone "$zone" --ttl 1h --data-dir /var/lib/trellis > "$WORK/$zone-zone-token"
  kubectl --context "$ctx" -n trellis-system create secret generic trellis-global \
    --from-file=trust-bundle.pem="$WORK/global-trust-bundle.pem" --from-file=zone-token="$WORK/$zone-zone-token" \
    --dry-run=client -o yaml | kubectl --context "$ctx" apply -f -
  kubectl --context "$ctx" apply -k "$ROOT/deploy/kind/overlays/$zone"
  # Other zones reach this one's ingress at its node's address, node port 30443: the zone control plane
  # publishes that (--ingress-address) and the ingress registers it (--public-address). Both read it at start.
  ingress_address="$(node_ip "$cluster"):$INGRESS_NODE_PORT"
  kubectl --context "$ctx" -n trellis-system patch configmap trellis-mesh --type merge \
    -p "{\"data\":{\"globalUrl\":\"$global_url\",\"ingressAddress\":\"$ingress_address\"}}"
  kubectl --context "$ctx" -n trellis-system rollout restart deploy/trellis-control deploy/trellis-ingress
  kubectl --context "$ctx" -n trellis-cni rollout status ds/trellis-cni --timeout 180s
  kubectl --context "$ctx" -n trellis-system rollout status deploy/trellis-control --timeout 180s
  # The injector turns ready once the webhook configuration trusts its certificate.
  kubectl --context "$ctx" -n trellis-system rollout status deploy/trellis-injector --timeout 180s
  # The ingress turns ready with its first table from the zone control plane (it joined as trellis-system/trellis-ingress).
  kubectl --context "$ctx" -n trellis-system rollout status deploy/trellis-ingress --timeout 180s
  echo "zone $zone: ingress at $ingress_address, joined to the global at $global_url"

  say "zone $zone: sample services in namespace shop (deploy/kind/samples/$zone; injected with CNI capture, Pod Security baseline)"
  kubectl --context "$ctx" apply -k "$ROOT/deploy/kind/samples/$zone"
  # One at a time: `rollout status` refuses several objects at once.
  for deployment in $(kubectl --context "$ctx" -n shop get deploy -o name); do
    kubectl --context "$ctx" -n shop rollout status "$deployment" --timeout 180s
  done
done

case " $ZONES " in
  *" east "*" west "* | *" west "*" east "*) ;;
  *) say "done (the demo calls need both zones, east and west)"; exit 0 ;;
esac

ectx="kind-trellis-east"
wctx="kind-trellis-west"
ORDERS="http://orders.shop.svc.cluster.local:8080/"
PAYMENTS="http://payments.shop.svc.cluster.local:8080"
# One call from frontend's container (its sidecar captures it): prints "STATUS DENIED-BY BODY".
CALL='const [url, method] = process.argv.slice(1);
fetch(url, { method, signal: AbortSignal.timeout(10000) }).then(
  async (r) => console.log(r.status, r.headers.get("trellis-denied-by") ?? "-", (await r.text()).trim()),
  (e) => console.log(0, "-", "failed:", e.cause?.code ?? e.message));'
call() {
  kubectl --context "$ectx" -n shop exec deploy/frontend -c frontend -- node -e "$CALL" "$1" "$2"
}

say "1. frontend (east) -> orders (east, its own zone first) -> payments (west only, through west's ingress)"
deadline=$((SECONDS + CROSS_ZONE_WAIT_S))
while :; do
  allowed="$(call "$ORDERS" GET || true)"
  case "$allowed" in
    "200 - orders in east "*"-> payments: 200 payments in west "*"from spiffe://$TRUST_DOMAIN/ns/shop/sa/orders") break ;;
  esac
  [ "$SECONDS" -lt "$deadline" ] || die "no cross-zone answer within ${CROSS_ZONE_WAIT_S}s; last: $allowed"
  sleep 2
done
echo "$allowed"
echo "payments in west logged the caller's own identity (east's orders), not west's ingress:"
kubectl --context "$wctx" -n shop logs -l app=payments -c payments --prefix --tail 50 | grep "from spiffe://$TRUST_DOMAIN/ns/shop/sa/orders" | tail -n 3 \
  || die "payments in west logged no call from spiffe://$TRUST_DOMAIN/ns/shop/sa/orders"
echo "west's ingress relayed the streams (each replica's /metrics; the node port spreads callers over them):"
for pod in $(kubectl --context "$wctx" -n trellis-system get pods -l app.kubernetes.io/name=trellis-ingress -o name); do
  echo "  $pod"
  kubectl --context "$wctx" -n trellis-system exec "$pod" -- \
    node -e 'fetch("http://127.0.0.1:15000/metrics").then((r) => r.text()).then((t) => console.log(t.split("\n").filter((l) => l.startsWith("trellis_ingress_streams_total")).map((l) => "    " + l).join("\n")))'
done

say "2. frontend (east) -> payments (west): denied by west's policy, rule 1 of shop/payments-callers"
denied="$(call "$PAYMENTS/balance" GET || true)"
echo "$denied"
case "$denied" in
  "403 shop/payments-callers#1"*) ;;
  *) die "expected 403 with trellis-denied-by: shop/payments-callers#1" ;;
esac

say "3. failover: orders in east scaled to 0; frontend's calls go to orders in west"
# Calls orders every 100 ms and prints "MS STATUS ZONE" whenever the answer changes, then, at the first
# answer from west, "west MS CALLS FAILED" (FAILED: calls that got no 200 since the first line).
# shellcheck disable=SC2016 # JavaScript: its template literals are not the shell's to expand
PROBE='const url = process.argv[1]; const deadline = Date.now() + Number(process.argv[2]) * 1000;
let calls = 0, failed = 0, last = "";
(async () => {
  while (Date.now() < deadline) {
    calls++;
    const r = await fetch(url, { signal: AbortSignal.timeout(5000) }).then(async (r) => ({ status: r.status, body: await r.text() }), () => ({ status: 0, body: "" }));
    const zone = /^orders in (\S+)/.exec(r.body)?.[1] ?? "none";
    if (r.status !== 200) failed++;
    if (`${r.status} ${zone}` !== last) console.log(Date.now(), (last = `${r.status} ${zone}`));
    if (r.status === 200 && zone === "west") return console.log("west", Date.now(), calls, failed);
    await new Promise((s) => setTimeout(s, 100));
  }
  console.log("timeout", Date.now(), calls, failed);
})();'
probe_log="$WORK/failover.log"
kubectl --context "$ectx" -n shop exec deploy/frontend -c frontend -- node -e "$PROBE" "$ORDERS" "$FAILOVER_WAIT_S" > "$probe_log" &
probe=$!
until grep -q ' 200 east$' "$probe_log" 2>/dev/null; do
  kill -0 "$probe" 2>/dev/null || die "the probe in frontend stopped: $(cat "$probe_log")"
  sleep 0.2
done
# The start on the probe's own clock (the same container), taken before the scale: the time printed is
# never shorter than the real one.
t0="$(kubectl --context "$ectx" -n shop exec deploy/frontend -c frontend -- node -e 'console.log(Date.now())')"
kubectl --context "$ectx" -n shop scale deploy/orders --replicas 0
wait "$probe" || true
cat "$probe_log"
read -r outcome t1 calls failed < <(grep -E '^(west|timeout) ' "$probe_log") || die "the probe printed no outcome"
[ "$outcome" = "west" ] || die "frontend's calls were not answered by orders in west within ${FAILOVER_WAIT_S}s"
ms=$((t1 - t0))
printf 'failover: orders in west answered frontend %d.%03d s after the scale-down; %d of %d calls got no 200 meanwhile\n' \
  $((ms / 1000)) $((ms % 1000)) "$failed" "$calls"
kubectl --context "$ectx" -n shop scale deploy/orders --replicas 2
kubectl --context "$ectx" -n shop rollout status deploy/orders --timeout 180s

say "injected pods in east"
kubectl --context "$ectx" -n shop get pods -o custom-columns='POD:.metadata.name,INIT:.spec.initContainers[*].name,CONTAINERS:.spec.containers[*].name'
echo
echo "Both zones are up, joined to the global control plane. Contexts: kind-trellis-global $(for z in $ZONES; do printf 'kind-trellis-%s ' "$z"; done)"
echo "Check them with: trellis check --kubeconfig ~/.kube/config --context kind-trellis-east"
echo "Remove everything with deploy/kind/down.sh (--purge also deletes $WORK)"
