/**
 * The zone ingress pairs: the Trellis pair with a zone ingress between its two sidecars, three processes.
 *
 * - `trellis-ingress`: Trellis's own ingress (bench/ingress-proc.ts runs proxy/ingress/): the client
 *   sidecar keeps one mTLS session to it as itself, each inner session is a CONNECT stream on it, and the
 *   client's TLS with the server sidecar runs inside (nested TLS, the ingress sees ciphertext).
 * - `haproxy-sni-ingress`: the anchors' design, HAProxy in `mode tcp` routing by SNI without decrypting
 *   (`req.ssl_sni`, as Kuma's and Istio's ingresses): the client sidecar dials it directly, its TLS with
 *   the server sidecar passes through, and the ingress cannot tell who calls.
 * The sidecars are the Trellis pair's (bench/pairs/trellis.ts), with the backend endpoint "in zone west".
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { SIDECAR_NODE_FLAGS } from '../../proxy/runtime-flags.js';
import { LOOPBACK, freePorts } from '../ports.js';
import { waitForPorts, type ManagedProcess } from '../processes.js';
import type { PairContext, PairFactory, PairName, RunningPair } from '../pair.js';
import { benchPolicy, trellisClientConfig, trellisServerConfig, waitUntilReady, type TrellisPorts } from './trellis.js';

const REMOTE_ZONE = 'west';
const READY_TIMEOUT_MS = 20_000;

/** HAProxy as an SNI-routing zone ingress: TLS passes through to the server sidecar's tunnel port. */
export function haproxySniIngressConfig(ingressPort: number, serverTunnel: number): string {
  return `global
    nbthread 1
    maxconn 8000

defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s

frontend zone_ingress
    bind ${LOOPBACK}:${ingressPort}
    tcp-request inspect-delay 5s
    tcp-request content accept if { req_ssl_hello_type 1 }
    use_backend west_backend if { req.ssl_sni -m end .${REMOTE_ZONE}.v1.trellis }

backend west_backend
    server backend ${LOOPBACK}:${serverTunnel}
`;
}

async function startIngressPair(context: PairContext, name: Extract<PairName, 'trellis-ingress' | 'haproxy-sni-ingress'>): Promise<RunningPair> {
  const [clientTcp, clientHttp, clientH2, clientTunnel, clientAdmin, serverTunnel, serverAdmin, ingressPort] = (await freePorts(8)) as [number, number, number, number, number, number, number, number];
  const ports: TrellisPorts = { clientTcp, clientHttp, clientH2, clientTunnel, clientAdmin, serverTunnel, serverAdmin };
  const policyFile = join(context.dir, `${name}-policy.yaml`);
  await writeFile(policyFile, stringify(benchPolicy(context)));
  const clientConfig = trellisClientConfig(context, ports) as { upstreams: { endpoints: unknown[] }[] };
  // The backend is in another zone, reached at the ingress: nested (ingressPort) or passthrough (tunnelPort).
  clientConfig.upstreams[0]!.endpoints = [name === 'trellis-ingress' ? { address: LOOPBACK, tunnelPort: ingressPort, ingressPort, zone: REMOTE_ZONE } : { address: LOOPBACK, tunnelPort: ingressPort, zone: REMOTE_ZONE }];
  const files = { server: join(context.dir, `${name}-server.yaml`), client: join(context.dir, `${name}-client.yaml`), ingress: join(context.dir, `${name}-ingress.conf`) };
  await writeFile(files.server, stringify(trellisServerConfig(context, ports, policyFile)));
  await writeFile(files.client, stringify(clientConfig));
  const { pki } = context;
  if (name === 'trellis-ingress') {
    const server = { name: pki.server.service, namespace: pki.namespace, ports: [], endpoints: [{ address: LOOPBACK, tunnelPort: serverTunnel, zone: REMOTE_ZONE, healthy: true }] };
    const targetPorts = (clientConfig as unknown as { upstreams: { ports: { port: number; targetPort: number; protocol: string }[] }[] }).upstreams[0]!.ports;
    await writeFile(files.ingress, JSON.stringify({ trustDomain: pki.trustDomain, certFile: pki.ingress.certFile, keyFile: pki.ingress.keyFile, bundleFile: pki.bundleFile, port: ingressPort, zone: REMOTE_ZONE, upstreams: [{ ...server, ports: targetPorts }] }));
  } else {
    await writeFile(files.ingress, haproxySniIngressConfig(ingressPort, serverTunnel));
  }
  const sidecar = (role: string, config: string): ManagedProcess =>
    context.processes.start({ name: `${name} ${role}`, command: process.execPath, args: [...SIDECAR_NODE_FLAGS, context.trellisCli, 'proxy', 'run', '--config', config] });
  const serverProc = sidecar('server', files.server);
  const ingressProc =
    name === 'trellis-ingress'
      ? context.processes.start({ name: `${name} ingress`, command: process.execPath, args: [...SIDECAR_NODE_FLAGS, join(context.trellisCli, '..', '..', 'bench', 'ingress-proc.js'), files.ingress] })
      : context.processes.start({ name: `${name} ingress`, command: 'haproxy', args: ['-db', '-f', files.ingress] });
  let clientProc: ManagedProcess | undefined;
  const processes = (): ManagedProcess[] => [...(clientProc === undefined ? [] : [clientProc]), ingressProc, serverProc];
  try {
    await waitForPorts(serverProc, [serverAdmin], READY_TIMEOUT_MS);
    await waitUntilReady(serverProc, serverAdmin);
    // A bare connect to the ingress port: the Trellis ingress counts it as a failed handshake, nothing more.
    await waitForPorts(ingressProc, [ingressPort], READY_TIMEOUT_MS);
    clientProc = sidecar('client', files.client);
    await waitForPorts(clientProc, [clientTcp, clientHttp, clientH2], READY_TIMEOUT_MS);
    await waitUntilReady(clientProc, clientAdmin);
  } catch (err) {
    await Promise.all(processes().map((p) => p.stop()));
    throw err;
  }
  const client = clientProc;
  const all = processes();
  return {
    name,
    entry: { tcp: { host: LOOPBACK, port: clientTcp }, http: { host: LOOPBACK, port: clientHttp }, http2: { host: LOOPBACK, port: clientH2 } },
    sidecars: [
      { role: 'client', pid: client.pid },
      { role: 'ingress', pid: ingressProc.pid },
      { role: 'server', pid: serverProc.pid },
    ],
    description:
      name === 'trellis-ingress'
        ? 'Trellis pair through a Trellis zone ingress: nested TLS (client session to the ingress, end-to-end TLS to the server sidecar inside a CONNECT stream), one Node process each'
        : 'Trellis pair through HAProxy as an SNI-routing zone ingress (mode tcp, req.ssl_sni, TLS passes through, nbthread 1)',
    assertAlive(): void {
      for (const p of all) if (!p.running) throw new Error(p.describeExit());
    },
    async stop(): Promise<void> {
      await Promise.all(all.map((p) => p.stop()));
    },
  };
}

export const trellisIngressPair: PairFactory = { name: 'trellis-ingress', start: (context) => startIngressPair(context, 'trellis-ingress') };
export const haproxySniIngressPair: PairFactory = { name: 'haproxy-sni-ingress', start: (context) => startIngressPair(context, 'haproxy-sni-ingress') };
