#!/usr/bin/env bash
# Makes the certificates that proxy-server.yaml and proxy-client.yaml name, with `trellis ca`: a root CA
# for example.org in certs/ca, and one workload certificate each for shop/api (the server side) and
# shop/web (the client side), plus certs/bundle.pem (the root).
#
#   deploy/examples/make-certs.sh
#   trellis proxy run --config deploy/examples/proxy-server.yaml     # app on 127.0.0.1:8080 / :8081
#   trellis proxy run --config deploy/examples/proxy-client.yaml     # then connect to 127.0.0.1:9080 / :9081
#
# The command is $TRELLIS if set, else `trellis` on PATH, else this checkout's build (node dist/cli/main.js).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [[ -n "${TRELLIS:-}" ]]; then
  read -r -a trellis <<<"$TRELLIS"
elif command -v trellis >/dev/null 2>&1; then
  trellis=(trellis)
else
  trellis=(node "$here/../../dist/cli/main.js")
fi
certs="$here/certs"
if [[ -e "$certs" ]]; then
  echo "make-certs.sh: $certs already exists; remove it to make new certificates" >&2
  exit 1
fi
mkdir -p "$certs"
"${trellis[@]}" ca init --dir "$certs/ca" --trust-domain example.org
for service in api web; do
  "${trellis[@]}" ca issue --dir "$certs/ca" --spiffe-id "spiffe://example.org/ns/shop/sa/$service" --out "$certs/$service" --ttl 7d
done
cp "$certs/ca/bundle.pem" "$certs/bundle.pem"
echo "make-certs.sh: certificates for shop/api and shop/web in $certs"
