/**
 * A C data plane at L4: two nginx processes (Debian's nginx-light 1.22 with libnginx-mod-stream), one per
 * side, each a single process (`master_process off`, `daemon off`) so the pid the runner measures is the
 * one running the event loop, as HAProxy's `-db` gives. The `stream` module forwards bytes: the client
 * side takes plain TCP and opens one TLS 1.3 connection to the server side per app connection (sessions
 * resumed with `proxy_ssl_session_reuse on`), presenting the same SPIFFE ECDSA P-256 chain as the other
 * pairs; the server side requires and verifies that client certificate against the mesh bundle. nginx
 * cannot speak HTTP/2 to an upstream, and its stream module knows nothing of HTTP, so the http-port
 * scenarios go through the same L4 path (one TLS connection per app connection) to the backend's http
 * port.
 *
 * What the client side does NOT check: the server's certificate. `proxy_ssl_verify on` always checks a
 * host name (`proxy_ssl_name`, 127.0.0.1 by default) with X509_check_host after the chain, and a SPIFFE
 * leaf has an empty subject and one URI SAN, so no name can match ("upstream SSL certificate does not
 * match"); nginx 1.22 has no chain-only mode. The client side therefore runs with `proxy_ssl_verify off`
 * and authenticates nobody, where HAProxy's `verify required` checks the server's chain (chain only, no
 * name either). The server side's check is the same as HAProxy's: chain to the bundle, TLS 1.3 only.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { LOOPBACK, freePorts, type Address } from '../ports.js';
import type { ManagedProcess } from '../processes.js';
import { startTwoSidedPair } from './two-sides.js';
import type { PairContext, PairFactory, PortKind, RunningPair } from '../pair.js';
import type { BenchPki } from '../pki.js';

/** Where Debian's libnginx-mod-stream puts the dynamic module. */
export const NGINX_STREAM_MODULE = '/usr/lib/nginx/modules/ngx_stream_module.so';

// Each proxied connection holds two descriptors; the same bound as the HAProxy pair's maxconn 8,000.
const WORKER_CONNECTIONS = 16_000;

export interface NginxStreamPorts {
  readonly clientTcp: number;
  readonly clientHttp: number;
  readonly serverTcp: number;
  readonly serverHttp: number;
}

function main(dir: string, role: string, streamBody: string): string {
  return `# Trellis benchmark, nginx stream pair, ${role} side (generated)
load_module ${NGINX_STREAM_MODULE};
# One process that does the work: no master, so the pid the benchmark measures is the event loop's.
master_process off;
daemon off;
worker_processes 1;
pid ${join(dir, `nginx-${role}.pid`)};
error_log stderr warn;
events {
    worker_connections ${WORKER_CONNECTIONS};
}
stream {
    # The HAProxy pair's timeouts.
    proxy_connect_timeout 5s;
    proxy_timeout 60s;
${streamBody}}
`;
}

/** The caller's side: plain TCP in from the app, one mTLS connection out to the server side per connection. */
export function nginxStreamClientConfig(dir: string, pki: BenchPki, ports: NginxStreamPorts): string {
  const server = (listen: number, peer: number): string => `    server {
        listen ${LOOPBACK}:${listen} backlog=4096;
        proxy_pass ${LOOPBACK}:${peer};
        proxy_ssl on;
        proxy_ssl_protocols TLSv1.3;
        # Leaf then intermediate, and its key: the server side verifies this chain.
        proxy_ssl_certificate ${pki.client.certFile};
        proxy_ssl_certificate_key ${pki.client.keyFile};
        proxy_ssl_session_reuse on;
        # Not "on": nginx then also matches proxy_ssl_name against the leaf's DNS names or subject CN, and
        # a SPIFFE leaf has neither (one URI SAN), so every handshake would fail. The server's certificate
        # is not checked at all on this side (see the head of bench/pairs/nginx-stream.ts).
        proxy_ssl_verify off;
    }
`;
  return main(dir, 'client', server(ports.clientTcp, ports.serverTcp) + server(ports.clientHttp, ports.serverHttp));
}

/** The destination's side: mTLS in (client certificate required and verified), plain TCP out to the backend. */
export function nginxStreamServerConfig(dir: string, pki: BenchPki, ports: NginxStreamPorts, backend: Readonly<Record<PortKind, Address>>): string {
  const server = (listen: number, app: Address): string => `    server {
        listen ${LOOPBACK}:${listen} ssl backlog=4096;
        ssl_protocols TLSv1.3;
        ssl_certificate ${pki.server.certFile};
        ssl_certificate_key ${pki.server.keyFile};
        ssl_verify_client on;
        ssl_client_certificate ${pki.bundleFile};
        # leaf -> zone intermediate -> root
        ssl_verify_depth 2;
        proxy_pass ${app.host}:${app.port};
    }
`;
  return main(dir, 'server', server(ports.serverTcp, backend.tcp) + server(ports.serverHttp, backend.http));
}

function startNginx(context: PairContext, role: string, configPath: string): ManagedProcess {
  return context.processes.start({ name: `nginx-stream ${role}`, command: 'nginx', args: ['-p', context.dir, '-c', configPath, '-e', 'stderr'] });
}

export interface RunningNginxStreamPair extends RunningPair {
  readonly ports: NginxStreamPorts;
}

export async function startNginxStreamPair(context: PairContext): Promise<RunningNginxStreamPair> {
  if (!existsSync(NGINX_STREAM_MODULE)) {
    throw new Error(`the nginx stream pair needs ${NGINX_STREAM_MODULE}, which does not exist: install libnginx-mod-stream (Debian)`);
  }
  const [clientTcp, clientHttp, serverTcp, serverHttp] = (await freePorts(4)) as [number, number, number, number];
  const ports: NginxStreamPorts = { clientTcp, clientHttp, serverTcp, serverHttp };
  return startTwoSidedPair(context, {
    name: 'nginx-stream',
    ports,
    configs: {
      server: { file: 'nginx-stream-server.conf', text: nginxStreamServerConfig(context.dir, context.pki, ports, context.backend) },
      client: { file: 'nginx-stream-client.conf', text: nginxStreamClientConfig(context.dir, context.pki, ports) },
    },
    start: (role, configPath) => startNginx(context, role, configPath),
    listens: { server: [serverTcp, serverHttp], client: [clientTcp, clientHttp] },
    entry: { tcp: clientTcp, http: clientHttp },
    description:
      'nginx stream pair (nginx 1.22 + libnginx-mod-stream), one process per side (master_process off), TLS 1.3 mTLS at L4 for BOTH port kinds ' +
      '(http-port scenarios also go through stream: nginx cannot speak h2 upstream), one TLS connection per app connection, session reuse on; ' +
      'server side verifies the client chain (ssl_verify_client on); client side does NOT verify the server (proxy_ssl_verify needs a DNS/CN name, SPIFFE leaves have only a URI SAN)',
  });
}

export const nginxStreamPair: PairFactory = { name: 'nginx-stream', start: startNginxStreamPair };
