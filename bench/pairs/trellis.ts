/**
 * Our pair: two `trellis proxy run --config FILE` processes from the built CLI. The client sidecar has
 * explicit outbound listeners (one for the upstream's tcp port, one for its http port) that carry every
 * connection or request over its pooled mTLS tunnel sessions to the server sidecar's tunnel port, which
 * authorizes it against a policy allowing exactly the load generator's identity and delivers it to the
 * backend. No access log and logs at `warn`: the HAProxy pair logs nothing either, and a log line per
 * request is not what this compares. Pool and limits are the defaults a user gets, and each process is
 * started with the heap sizing every sidecar launcher uses (`SIDECAR_NODE_FLAGS`, proxy/runtime-flags.ts).
 */
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { stringify } from 'yaml';
import { LOOPBACK, freePorts } from '../ports.js';
import { waitForPorts, type ManagedProcess } from '../processes.js';
import type { PairContext, PairFactory, RunningPair } from '../pair.js';
import { POLICY_API_VERSION, POLICY_KIND } from '../../policy/types.js';
import { SIDECAR_NODE_FLAGS } from '../../proxy/runtime-flags.js';

const ZONE = 'bench';
/** Service ports of the backend as callers name them; the listeners stand for these. */
const TCP_SERVICE_PORT = 80;
const HTTP_SERVICE_PORT = 81;
const HTTP2_SERVICE_PORT = 82;
const GRPC_SERVICE_PORT = 83;
const READY_TIMEOUT_MS = 20_000;

export interface TrellisPorts {
  readonly clientTcp: number;
  readonly clientHttp: number;
  readonly clientH2: number;
  /** The grpc port's listener (streaming scenarios); pairs built on this one without it serve no grpc port. */
  readonly clientGrpc?: number;
  readonly clientTunnel: number;
  readonly clientAdmin: number;
  readonly serverTunnel: number;
  readonly serverAdmin: number;
}

/** What both sidecars' configs share: identity, loopback tunnel and admin ports; no access log, warnings only. */
function sidecarBase(context: PairContext, side: 'server' | 'client', tunnelPort: number, adminPort: number): Record<string, unknown> {
  const { pki } = context;
  return {
    service: pki[side].service,
    namespace: pki.namespace,
    trustDomain: pki.trustDomain,
    zone: ZONE,
    identity: { certificate: pki[side].certFile, key: pki[side].keyFile, trustBundle: pki.bundleFile },
    tunnel: { address: LOOPBACK, port: tunnelPort },
    admin: { address: LOOPBACK, port: adminPort },
    accessLog: false,
    logLevel: 'warn',
  };
}

export function trellisServerConfig(context: PairContext, ports: TrellisPorts, policyFile: string): Record<string, unknown> {
  const { backend } = context;
  return {
    ...sidecarBase(context, 'server', ports.serverTunnel, ports.serverAdmin),
    inbound: {
      mode: 'strict',
      appPorts: [
        { port: backend.tcp.port, protocol: 'tcp', host: backend.tcp.host },
        { port: backend.http.port, protocol: 'http', host: backend.http.host },
        { port: backend.http2.port, protocol: 'http2', host: backend.http2.host },
        { port: backend.grpc.port, protocol: 'grpc', host: backend.grpc.host },
      ],
    },
    policy: [policyFile],
  };
}

export function trellisClientConfig(context: PairContext, ports: TrellisPorts): Record<string, unknown> {
  const { pki, backend } = context;
  return {
    ...sidecarBase(context, 'client', ports.clientTunnel, ports.clientAdmin),
    upstreams: [
      {
        name: pki.server.service,
        namespace: pki.namespace,
        ports: [
          { port: TCP_SERVICE_PORT, targetPort: backend.tcp.port, protocol: 'tcp' },
          { port: HTTP_SERVICE_PORT, targetPort: backend.http.port, protocol: 'http' },
          { port: HTTP2_SERVICE_PORT, targetPort: backend.http2.port, protocol: 'http2' },
          { port: GRPC_SERVICE_PORT, targetPort: backend.grpc.port, protocol: 'grpc' },
        ],
        endpoints: [{ address: LOOPBACK, tunnelPort: ports.serverTunnel, zone: ZONE }],
      },
    ],
    listeners: [
      { bindAddress: LOOPBACK, localPort: ports.clientTcp, service: pki.server.service, namespace: pki.namespace, port: TCP_SERVICE_PORT },
      { bindAddress: LOOPBACK, localPort: ports.clientHttp, service: pki.server.service, namespace: pki.namespace, port: HTTP_SERVICE_PORT },
      { bindAddress: LOOPBACK, localPort: ports.clientH2, service: pki.server.service, namespace: pki.namespace, port: HTTP2_SERVICE_PORT },
      ...(ports.clientGrpc === undefined ? [] : [{ bindAddress: LOOPBACK, localPort: ports.clientGrpc, service: pki.server.service, namespace: pki.namespace, port: GRPC_SERVICE_PORT }]),
    ],
  };
}

/** Allows the load generator's service, and only it, to call the backend. */
export function benchPolicy(context: PairContext): Record<string, unknown> {
  return {
    apiVersion: POLICY_API_VERSION,
    kind: POLICY_KIND,
    metadata: { name: 'bench-loadgen', namespace: context.pki.namespace },
    spec: { destination: context.pki.server.service, mode: 'enforce', rules: [{ action: 'allow', from: [context.pki.client.service] }] },
  };
}

export async function waitUntilReady(proc: ManagedProcess, adminPort: number): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let last = 'no answer';
  while (Date.now() < deadline) {
    if (!proc.running) throw new Error(`${proc.name} stopped before it was ready: ${proc.describeExit()}`);
    try {
      const res = await fetch(`http://${LOOPBACK}:${adminPort}/ready`, { signal: AbortSignal.timeout(1_000) });
      last = `${res.status} ${(await res.text()).trim().slice(0, 200)}`;
      if (res.status === 200) return;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${proc.name} was not ready within ${READY_TIMEOUT_MS} ms (last /ready: ${last}): ${proc.describeExit()}`);
}

export const trellisPair: PairFactory = {
  name: 'trellis',
  start: (context) => startTrellisPair(context, 'trellis', context.trellisCli),
};

/** The same pair from another build (`--compare PATH`), so a change is measured against its base in one run. */
export const trellisComparePair: PairFactory = {
  name: 'trellis-b',
  start: (context) => {
    if (context.compareCli === undefined) throw new Error('the trellis-b pair needs --compare PATH');
    return startTrellisPair(context, 'trellis-b', context.compareCli);
  },
};

/** The node flags another build starts its sidecars with: its own `SIDECAR_NODE_FLAGS`, next to its CLI. */
async function buildNodeFlags(cli: string): Promise<readonly string[]> {
  const flagsModule = join(dirname(cli), '..', 'proxy', 'runtime-flags.js');
  const loaded = (await import(pathToFileURL(flagsModule).href)) as { SIDECAR_NODE_FLAGS?: unknown };
  const flags = loaded.SIDECAR_NODE_FLAGS;
  if (!Array.isArray(flags) || !flags.every((f) => typeof f === 'string')) throw new Error(`${flagsModule} exports no SIDECAR_NODE_FLAGS`);
  return flags as string[];
}

async function startTrellisPair(context: PairContext, name: 'trellis' | 'trellis-b', cli: string): Promise<RunningPair> {
  if (!existsSync(cli)) throw new Error(`the Trellis pair runs the built CLI ${cli}, which does not exist: run \`npm run build\` first`);
  const [clientTcp, clientHttp, clientH2, clientGrpc, clientTunnel, clientAdmin, serverTunnel, serverAdmin] = (await freePorts(8)) as [number, number, number, number, number, number, number, number];
  const ports: TrellisPorts = { clientTcp, clientHttp, clientH2, clientGrpc, clientTunnel, clientAdmin, serverTunnel, serverAdmin };
  const policyFile = join(context.dir, 'policy.yaml');
  const serverConfig = join(context.dir, 'trellis-server.yaml');
  const clientConfig = join(context.dir, 'trellis-client.yaml');
  await writeFile(policyFile, stringify(benchPolicy(context)));
  await writeFile(serverConfig, stringify(trellisServerConfig(context, ports, policyFile)));
  await writeFile(clientConfig, stringify(trellisClientConfig(context, ports)));
  const flags = name === 'trellis' ? SIDECAR_NODE_FLAGS : await buildNodeFlags(cli);
  const start = (role: string, config: string): ManagedProcess =>
    context.processes.start({ name: `${name} ${role}`, command: process.execPath, args: [...flags, cli, 'proxy', 'run', '--config', config] });
  const server = start('server', serverConfig);
  const client = start('client', clientConfig);
  const processes = [client, server];
  try {
    // The tunnel port is not probed with a bare TCP connect: the server would log and count it as a
    // failed handshake. Its admin /ready says when it listens.
    await waitForPorts(server, [serverAdmin], READY_TIMEOUT_MS);
    await waitUntilReady(server, serverAdmin);
    await waitForPorts(client, [clientTcp, clientHttp, clientH2, clientGrpc], READY_TIMEOUT_MS);
    await waitUntilReady(client, clientAdmin);
  } catch (err) {
    await Promise.all(processes.map((p) => p.stop()));
    throw err;
  }
  return {
    name,
    entry: { tcp: { host: LOOPBACK, port: clientTcp }, http: { host: LOOPBACK, port: clientHttp }, http2: { host: LOOPBACK, port: clientH2 }, grpc: { host: LOOPBACK, port: clientGrpc } },
    sidecars: [
      { role: 'client', pid: client.pid },
      { role: 'server', pid: server.pid },
    ],
    description: `${cli}: Trellis pair, one Node ${process.version} process per side (node ${flags.join(' ')} trellis proxy run), pooled HTTP/2 mTLS tunnel, TLS 1.3`,
    assertAlive(): void {
      for (const p of processes) if (!p.running) throw new Error(p.describeExit());
    },
    async stop(): Promise<void> {
      await Promise.all(processes.map((p) => p.stop()));
    },
  };
}
