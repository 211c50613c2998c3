/**
 * A Go data plane: two Caddy processes (Debian's caddy 2.6), one per side, `GOMAXPROCS=1` each to match
 * HAProxy's `nbthread 1` (Go still runs its garbage collector and runtime threads, all measured in the
 * same pid). Each side reads a JSON config written here (no Caddyfile, so every TLS setting is explicit):
 * admin endpoint off, automatic HTTPS off, no config persisted, storage and XDG directories inside the
 * pair's temporary directory. The client side takes plain HTTP/1.1 from the app and reverse-proxies over
 * HTTP/2 with TLS 1.3 and the client's SPIFFE chain to the server side, which requires and verifies the
 * client certificate against the mesh bundle (`require_and_verify`) and reverse-proxies to the backend's
 * http port. Debian's Caddy has no L4 proxy (no caddy-l4 module), so this pair serves the http-port
 * scenarios only; the tcp-port ones are "n/a".
 *
 * What the client side does NOT check: the server's certificate. Go's TLS client verifies the chain and
 * the host name together (DNS or IP SANs; a SPIFFE leaf has one URI SAN, so "doesn't contain any IP SANs"
 * fails every request), and Caddy 2.6 offers no chain-only mode, so the client side runs with
 * `insecure_skip_verify`, where HAProxy's `verify required` checks the server's chain (chain only). The
 * server side's check is the same as HAProxy's: chain to the bundle, TLS 1.3 only. It also runs with
 * `strict_sni_host: false`: Caddy turns that on when client auth is configured and then answers 421 to a
 * request whose Host differs from the SNI, and a Go client sends no SNI to an IP address. The listener has
 * one TLS policy, client certificate required, so there is no weaker policy a client could pick with SNI.
 */
import { execFileSync } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { LOOPBACK, freePorts, type Address } from '../ports.js';
import type { ManagedProcess } from '../processes.js';
import { startTwoSidedPair } from './two-sides.js';
import type { PairContext, PairFactory, RunningPair } from '../pair.js';
import type { BenchPki } from '../pki.js';

/** HTTP versions between the two sides: h2 over TLS, as the HAProxy pair's http mode and our tunnel. */
export const CADDY_TUNNEL_VERSIONS = ['2'] as const;

export interface CaddyPorts {
  readonly clientHttp: number;
  readonly serverHttp: number;
}

function common(storageDir: string, servers: Record<string, unknown>, tls?: Record<string, unknown>): Record<string, unknown> {
  return {
    admin: { disabled: true, config: { persist: false } },
    // Errors only: a log line per request is not what this compares (HAProxy logs nothing).
    logging: { logs: { default: { level: 'WARN' } } },
    storage: { module: 'file_system', root: storageDir },
    apps: {
      http: { grace_period: '1s', servers },
      ...(tls === undefined ? {} : { tls }),
    },
  };
}

/** The caller's side: plain HTTP in from the app, HTTP/2 over mTLS out to the server side. */
export function caddyClientConfig(dir: string, pki: BenchPki, ports: CaddyPorts): Record<string, unknown> {
  return common(join(dir, 'caddy-client-storage'), {
    app: {
      listen: [`${LOOPBACK}:${ports.clientHttp}`],
      automatic_https: { disable: true },
      protocols: ['h1'],
      routes: [
        {
          handle: [
            {
              handler: 'reverse_proxy',
              upstreams: [{ dial: `${LOOPBACK}:${ports.serverHttp}` }],
              transport: {
                protocol: 'http',
                versions: [...CADDY_TUNNEL_VERSIONS],
                tls: {
                  // Leaf then intermediate, and its key: the server side verifies this chain.
                  client_certificate_file: pki.client.certFile,
                  client_certificate_key_file: pki.client.keyFile,
                  root_ca_pem_files: [pki.bundleFile],
                  // Go would check a DNS/IP name the SPIFFE leaf does not have, and Caddy 2.6 cannot check
                  // the chain alone: the server is not authenticated on this side (see the file's head).
                  insecure_skip_verify: true,
                },
              },
            },
          ],
        },
      ],
    },
  });
}

/** The destination's side: mTLS in (client certificate required and verified), plain HTTP out to the backend. */
export function caddyServerConfig(dir: string, pki: BenchPki, ports: CaddyPorts, backendHttp: Address): Record<string, unknown> {
  const tag = 'mesh';
  return common(
    join(dir, 'caddy-server-storage'),
    {
      tunnel: {
        listen: [`${LOOPBACK}:${ports.serverHttp}`],
        automatic_https: { disable: true },
        protocols: ['h1', 'h2'],
        strict_sni_host: false,
        tls_connection_policies: [
          {
            certificate_selection: { any_tag: [tag] },
            protocol_min: 'tls1.3',
            protocol_max: 'tls1.3',
            client_authentication: { mode: 'require_and_verify', trusted_ca_certs_pem_files: [pki.bundleFile] },
          },
        ],
        routes: [{ handle: [{ handler: 'reverse_proxy', upstreams: [{ dial: `${backendHttp.host}:${backendHttp.port}` }] }] }],
      },
    },
    { certificates: { load_files: [{ certificate: pki.server.certFile, key: pki.server.keyFile, tags: [tag] }] } },
  );
}

/** `caddy version`'s first word, or undefined when caddy is not installed. */
export function caddyVersion(): string | undefined {
  try {
    return execFileSync('caddy', ['version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim().split(/\s+/)[0];
  } catch {
    return undefined;
  }
}

function startCaddy(context: PairContext, role: string, configPath: string): ManagedProcess {
  const home = join(context.dir, `caddy-${role}-home`);
  // `env` execs caddy, so the pid the runner measures is caddy's own.
  return context.processes.start({
    name: `caddy ${role}`,
    command: 'env',
    args: [`GOMAXPROCS=1`, `HOME=${home}`, `XDG_CONFIG_HOME=${join(home, 'config')}`, `XDG_DATA_HOME=${join(home, 'data')}`, 'caddy', 'run', '--config', configPath],
  });
}

export interface RunningCaddyPair extends RunningPair {
  readonly ports: CaddyPorts;
}

export async function startCaddyPair(context: PairContext): Promise<RunningCaddyPair> {
  const version = caddyVersion();
  if (version === undefined) throw new Error('the Caddy pair needs `caddy` on PATH: install caddy (Debian)');
  const [clientHttp, serverHttp] = (await freePorts(2)) as [number, number];
  const ports: CaddyPorts = { clientHttp, serverHttp };
  for (const role of ['client', 'server']) await mkdir(join(context.dir, `caddy-${role}-home`), { recursive: true });
  const json = (config: Record<string, unknown>): string => `${JSON.stringify(config, null, 2)}\n`;
  return startTwoSidedPair(context, {
    name: 'caddy',
    ports,
    configs: {
      server: { file: 'caddy-server.json', text: json(caddyServerConfig(context.dir, context.pki, ports, context.backend.http)) },
      client: { file: 'caddy-client.json', text: json(caddyClientConfig(context.dir, context.pki, ports)) },
    },
    start: (role, configPath) => startCaddy(context, role, configPath),
    listens: { server: [serverHttp], client: [clientHttp] },
    entry: { http: clientHttp },
    description:
      `Caddy pair (caddy ${version}), GOMAXPROCS=1 per side, reverse_proxy over TLS 1.3 mTLS with HTTP/${CADDY_TUNNEL_VERSIONS.join(',')} between sides; ` +
      'http ports only (no L4 proxy in Debian\'s Caddy: tcp-port scenarios n/a); server side verifies the client chain (require_and_verify); ' +
      'client side does NOT verify the server (Go checks a DNS/IP name SPIFFE leaves lack; Caddy 2.6 has no chain-only mode)',
  });
}

export const caddyPair: PairFactory = { name: 'caddy', start: startCaddyPair };
