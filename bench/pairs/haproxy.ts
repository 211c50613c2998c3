/**
 * The pair we compete with: two HAProxy processes (Debian's 2.6), one per side, `nbthread 1` each, with
 * the same ECDSA P-256 SPIFFE certificates as the Trellis pair, TLS 1.3 only and client certificates
 * verified on the server side. Each side has two frontends: `mode tcp` for the TCP scenarios (one TLS
 * connection per app connection, as HAProxy does it) and `mode http` with `http-reuse always` for the
 * http-port scenarios (requests ride reused TLS connections, HTTP/2 between the two sides like our tunnel).
 */
import { LOOPBACK, freePorts, type Address } from '../ports.js';
import type { ManagedProcess } from '../processes.js';
import { startTwoSidedPair } from './two-sides.js';
import type { PairContext, PairFactory, PortKind, RunningPair } from '../pair.js';
import type { BenchPki } from '../pki.js';

/** ALPN between the two HAProxy sides in http mode; h2 multiplexes requests as our tunnel does. */
export const HAPROXY_TUNNEL_ALPN = 'h2';

const GLOBAL = (maxconn: number): string => `global
    nbthread 1
    maxconn ${maxconn}
    ssl-default-bind-options ssl-min-ver TLSv1.3
    ssl-default-server-options ssl-min-ver TLSv1.3
    ssl-server-verify required

defaults
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-request 10s
    timeout http-keep-alive 60s
    maxconn ${maxconn}
`;

// Each connection costs HAProxy two descriptors; 8,000 stays under the 20,000 descriptors a shell gets here.
const MAXCONN = 8_000;

export interface HaproxyPorts {
  readonly clientTcp: number;
  readonly clientHttp: number;
  readonly serverTcp: number;
  readonly serverHttp: number;
  /** h2c in from the app (`proto h2`), HTTP/2 over mTLS between the sides, h2c to the backend. */
  readonly clientH2?: number;
  readonly serverH2?: number;
  /** The same for the grpc port (the grpc-js backend of the streaming scenarios). */
  readonly clientGrpc?: number;
  readonly serverGrpc?: number;
}

/** The caller's side: plain TCP/HTTP in from the app, mTLS out to the server side. */
export function haproxyClientConfig(pki: BenchPki, ports: HaproxyPorts): string {
  const tls = `ssl crt ${pki.client.combinedFile} ca-file ${pki.bundleFile} verify required`;
  return `${GLOBAL(MAXCONN)}
frontend app_tcp
    mode tcp
    bind ${LOOPBACK}:${ports.clientTcp}
    default_backend mesh_tcp

backend mesh_tcp
    mode tcp
    server peer ${LOOPBACK}:${ports.serverTcp} ${tls}

frontend app_http
    mode http
    bind ${LOOPBACK}:${ports.clientHttp}
    # A response that crossed the HTTP/2 hop has no reason phrase, and HAProxy sends "HTTP/1.1 200 "
    # to the app: legal, but h2load 1.52 counts it as a failed request. Restoring "OK" costs one
    # comparison per response.
    http-response set-status 200 reason OK if { status 200 }
    default_backend mesh_http

backend mesh_http
    mode http
    http-reuse always
    server peer ${LOOPBACK}:${ports.serverHttp} ${tls} alpn ${HAPROXY_TUNNEL_ALPN}
${clientH2Section('h2', ports.clientH2, ports.serverH2, tls)}${clientH2Section('grpc', ports.clientGrpc, ports.serverGrpc, tls)}`;
}

/** An h2c frontend (`proto h2`) on the caller's side, HTTP/2 over mTLS to the server side's `serverPort`. */
function clientH2Section(name: string, clientPort: number | undefined, serverPort: number | undefined, tls: string): string {
  if (clientPort === undefined || serverPort === undefined) return '';
  return `
frontend app_${name}
    mode http
    bind ${LOOPBACK}:${clientPort} proto h2
    default_backend mesh_${name}

backend mesh_${name}
    mode http
    http-reuse always
    server peer ${LOOPBACK}:${serverPort} ${tls} alpn ${HAPROXY_TUNNEL_ALPN}
`;
}

/** HTTP/2 over mTLS in on the server side, h2c (`proto h2`) out to the app at `app`. */
function serverH2Section(name: string, serverPort: number | undefined, app: Address, tls: string): string {
  if (serverPort === undefined) return '';
  return `
frontend tunnel_${name}
    mode http
    bind ${LOOPBACK}:${serverPort} ${tls} alpn h2
    default_backend app_${name}

backend app_${name}
    mode http
    http-reuse always
    server app ${app.host}:${app.port} proto h2
`;
}

/** The destination's side: mTLS in (client certificate required), plain out to the backend. */
export function haproxyServerConfig(pki: BenchPki, ports: HaproxyPorts, backend: Readonly<Record<PortKind, Address>>): string {
  const tls = `ssl crt ${pki.server.combinedFile} ca-file ${pki.bundleFile} verify required`;
  return `${GLOBAL(MAXCONN)}
frontend tunnel_tcp
    mode tcp
    bind ${LOOPBACK}:${ports.serverTcp} ${tls}
    default_backend app_tcp

backend app_tcp
    mode tcp
    server app ${backend.tcp.host}:${backend.tcp.port}

frontend tunnel_http
    mode http
    bind ${LOOPBACK}:${ports.serverHttp} ${tls} alpn h2,http/1.1
    default_backend app_http

backend app_http
    mode http
    http-reuse always
    server app ${backend.http.host}:${backend.http.port}
${serverH2Section('h2', ports.serverH2, backend.http2, tls)}${serverH2Section('grpc', ports.serverGrpc, backend.grpc, tls)}`;
}

function startHaproxy(context: PairContext, role: string, configPath: string): ManagedProcess {
  // -db: stay in the foreground (the group stops it); no master process, so the pid is the worker's.
  return context.processes.start({ name: `haproxy ${role}`, command: 'haproxy', args: ['-db', '-f', configPath] });
}

export interface RunningHaproxyPair extends RunningPair {
  readonly ports: HaproxyPorts;
}

export async function startHaproxyPair(context: PairContext): Promise<RunningHaproxyPair> {
  const [clientTcp, clientHttp, serverTcp, serverHttp, clientH2, serverH2, clientGrpc, serverGrpc] = (await freePorts(8)) as [number, number, number, number, number, number, number, number];
  const ports: HaproxyPorts = { clientTcp, clientHttp, serverTcp, serverHttp, clientH2, serverH2, clientGrpc, serverGrpc };
  return startTwoSidedPair(context, {
    name: 'haproxy',
    ports,
    configs: {
      server: { file: 'haproxy-server.cfg', text: haproxyServerConfig(context.pki, ports, context.backend) },
      client: { file: 'haproxy-client.cfg', text: haproxyClientConfig(context.pki, ports) },
    },
    start: (role, configPath) => startHaproxy(context, role, configPath),
    listens: { server: [serverTcp, serverHttp, serverH2, serverGrpc], client: [clientTcp, clientHttp, clientH2, clientGrpc] },
    entry: { tcp: clientTcp, http: clientHttp, http2: clientH2, grpc: clientGrpc },
    description: `HAProxy pair, nbthread 1 each, TLS 1.3 mTLS, mode tcp / mode http + http-reuse always (ALPN ${HAPROXY_TUNNEL_ALPN} between sides; proto h2 in and to the backend for http2 and grpc)`,
  });
}

export const haproxyPair: PairFactory = { name: 'haproxy', start: startHaproxyPair };
