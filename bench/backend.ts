/**
 * The backend every pair forwards to: nginx (Debian's nginx-light), one worker, keep-alive on, no access
 * log, serving a small response at `/` and a 1 MiB file at `/1mib`. A native server keeps the backend
 * from being the bottleneck on a 2-core machine that also runs the load generator and two sidecars; the
 * same backend for every pair means the differences between pairs are the proxies'.
 */
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { LOOPBACK, freePorts, type Address } from './ports.js';
import { waitForPorts, type ManagedProcess, type ProcessGroup } from './processes.js';
import type { PortKind } from './pair.js';
import { grpcServerScript } from './grpc-stream-run.js';

export const SMALL_PATH = '/';
export const LARGE_PATH = '/1mib';
export const SMALL_BODY = 'hello from the trellis benchmark backend\n';
export const LARGE_BODY_BYTES = 1024 * 1024;
/**
 * The gRPC unary scenario's method on the backend: nginx answers every call as a gRPC Trailers-Only
 * success (`grpc-status: 0`), so the figures are the proxies' cost per call, not a gRPC server's.
 */
export const GRPC_PATH = '/bench.Echo/Unary';

export interface Backend {
  /**
   * Three listening ports serving the same content: a sidecar declares each app port as `tcp`, `http` or
   * `http2` (h2c with prior knowledge, nginx's `listen … http2` without TLS), so each kind needs its own.
   */
  readonly address: Readonly<Record<PortKind, Address>>;
  readonly process: ManagedProcess;
  /** The grpc-js server of the `grpc` port (streaming scenarios): nginx cannot stream gRPC messages. */
  readonly grpcProcess: ManagedProcess;
}

export function nginxConfig(dir: string, ports: readonly number[], h2cPorts: readonly number[] = []): string {
  const body = SMALL_BODY.replace(/\n/g, '\\n');
  return `# Trellis benchmark backend (generated)
worker_processes 1;
daemon off;
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'nginx-error.log')} warn;
events {
    worker_connections 16384;
}
http {
    access_log off;
    server_tokens off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 75s;
    # nginx closes a kept-alive connection after 1000 requests by default, which would turn the keep-alive
    # scenarios into a slow trickle of reconnects through the sidecars.
    keepalive_requests 100000000;
    client_body_temp_path ${join(dir, 'client-body')};
    proxy_temp_path ${join(dir, 'proxy')};
    fastcgi_temp_path ${join(dir, 'fastcgi')};
    uwsgi_temp_path ${join(dir, 'uwsgi')};
    scgi_temp_path ${join(dir, 'scgi')};
    server {
${ports.map((port) => `        listen ${LOOPBACK}:${port} backlog=4096;\n`).join('')}${h2cPorts.map((port) => `        listen ${LOOPBACK}:${port} http2 backlog=4096;\n`).join('')}        # h2c clients open many streams per connection; nginx's default of 128 would refuse some of h2load's.
        http2_max_concurrent_streams 512;
        root ${join(dir, 'www')};
        location = ${SMALL_PATH} {
            default_type text/plain;
            return 200 "${body}";
        }
        location = ${LARGE_PATH} {
            default_type application/octet-stream;
        }
        location = ${GRPC_PATH} {
            default_type application/grpc;
            add_header grpc-status 0 always;
            return 200;
        }
    }
}
`;
}

/** Writes the config and content under `dir` and starts nginx; resolves when it accepts connections. */
export async function startBackend(dir: string, group: ProcessGroup): Promise<Backend> {
  await mkdir(join(dir, 'www'), { recursive: true });
  // nginx workers drop to an unprivileged user when started as root: the content must be readable to them.
  await chmod(dir, 0o755);
  await writeFile(join(dir, 'www', LARGE_PATH.slice(1)), randomBytes(LARGE_BODY_BYTES), { mode: 0o644 });
  const [tcpPort, httpPort, h2Port, grpcPort] = (await freePorts(4)) as [number, number, number, number];
  const configPath = join(dir, 'nginx.conf');
  await writeFile(configPath, nginxConfig(dir, [tcpPort, httpPort], [h2Port]));
  const proc = group.start({ name: 'nginx backend', command: 'nginx', args: ['-p', dir, '-c', configPath, '-e', join(dir, 'nginx-error.log')] });
  await waitForPorts(proc, [tcpPort, httpPort, h2Port]);
  const grpcProcess = group.start({ name: 'grpc-js backend', command: process.execPath, args: [grpcServerScript(), String(grpcPort)] });
  await waitForPorts(grpcProcess, [grpcPort]);
  return {
    address: { tcp: { host: LOOPBACK, port: tcpPort }, http: { host: LOOPBACK, port: httpPort }, http2: { host: LOOPBACK, port: h2Port }, grpc: { host: LOOPBACK, port: grpcPort } },
    process: proc,
    grpcProcess,
  };
}
