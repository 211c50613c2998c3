/**
 * The nginx stream and Caddy pairs: their generated configs (client certificates verified on the server
 * side, TLS 1.3 only, the mesh's certificate files, loopback only), the "n/a" handling of a pair that
 * serves no tcp port, and both pairs started for real on loopback with a request through each. The real
 * runs need nginx with libnginx-mod-stream and caddy: skipped with the reason where missing, failed in CI.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBackend, SMALL_BODY, type Backend } from '../../bench/backend.js';
import type { LoadSample } from '../../bench/load-sample.js';
import { parseBenchOptions } from '../../bench/options.js';
import { PAIR_NAMES, servedPortKinds, type PairName } from '../../bench/pair.js';
import { caddyClientConfig, caddyPair, caddyServerConfig, caddyVersion, startCaddyPair, type RunningCaddyPair } from '../../bench/pairs/caddy.js';
import { directPair } from '../../bench/pairs/direct.js';
import { NGINX_STREAM_MODULE, nginxStreamClientConfig, nginxStreamServerConfig, startNginxStreamPair, type RunningNginxStreamPair } from '../../bench/pairs/nginx-stream.js';
import { writeBenchPki, type BenchPki } from '../../bench/pki.js';
import { haproxySniIngressConfig } from '../../bench/pairs/ingress.js';
import { ProcessGroup } from '../../bench/processes.js';
import { renderReport } from '../../bench/report.js';
import { runBench, type BenchRun, type RunSample } from '../../bench/runner.js';
import { summarize } from '../../bench/summary.js';
import { requires, type RequirementCheck } from '../helpers/requirements.js';

const PKI: BenchPki = {
  trustDomain: 'bench.trellis.local',
  namespace: 'bench',
  bundleFile: '/pki/bundle.pem',
  client: { service: 'loadgen', spiffeId: 'spiffe://bench.trellis.local/ns/bench/sa/loadgen', certFile: '/pki/loadgen.crt.pem', keyFile: '/pki/loadgen.key.pem', combinedFile: '/pki/loadgen.combined.pem' },
  server: { service: 'backend', spiffeId: 'spiffe://bench.trellis.local/ns/bench/sa/backend', certFile: '/pki/backend.crt.pem', keyFile: '/pki/backend.key.pem', combinedFile: '/pki/backend.combined.pem' },
  ingress: { service: 'trellis-ingress', spiffeId: 'spiffe://bench.trellis.local/ns/trellis-system/sa/trellis-ingress', certFile: '/pki/ingress.crt.pem', keyFile: '/pki/ingress.key.pem', combinedFile: '/pki/ingress.combined.pem' },
};
const BACKEND = { tcp: { host: '127.0.0.1', port: 7001 }, http: { host: '127.0.0.1', port: 7002 }, http2: { host: '127.0.0.1', port: 7003 }, grpc: { host: '127.0.0.1', port: 7004 } };

describe('nginx stream pair configs', () => {
  const ports = { clientTcp: 6001, clientHttp: 6002, serverTcp: 6003, serverHttp: 6004 };
  const server = nginxStreamServerConfig('/d', PKI, ports, BACKEND);
  const client = nginxStreamClientConfig('/d', PKI, ports);

  it('both sides: the stream module, one process doing the work, loopback only', () => {
    for (const conf of [server, client]) {
      expect(conf).toContain(`load_module ${NGINX_STREAM_MODULE};`);
      expect(conf).toMatch(/^master_process off;$/m);
      expect(conf).toMatch(/^daemon off;$/m);
      expect(conf).not.toMatch(/^\s*http\s*\{/m);
      for (const listen of conf.match(/^\s*listen .*$/gm) ?? []) expect(listen).toMatch(/listen 127\.0\.0\.1:\d+/);
    }
  });

  it('server side: TLS 1.3 only, the server chain, client certificates required and verified against the bundle', () => {
    expect(server.match(/listen 127\.0\.0\.1:600[34] ssl/g)).toHaveLength(2);
    expect(server.match(/ssl_protocols TLSv1\.3;/g)).toHaveLength(2);
    expect(server.match(/ssl_verify_client on;/g)).toHaveLength(2);
    expect(server.match(/ssl_client_certificate \/pki\/bundle\.pem;/g)).toHaveLength(2);
    expect(server).toContain('ssl_certificate /pki/backend.crt.pem;');
    expect(server).toContain('ssl_certificate_key /pki/backend.key.pem;');
    expect(server).toContain('proxy_pass 127.0.0.1:7001;');
    expect(server).toContain('proxy_pass 127.0.0.1:7002;');
  });

  it('client side: TLS 1.3 to the server side with the client chain and key, sessions reused; the server is not verified', () => {
    expect(client.match(/proxy_ssl on;/g)).toHaveLength(2);
    expect(client.match(/proxy_ssl_protocols TLSv1\.3;/g)).toHaveLength(2);
    expect(client.match(/proxy_ssl_certificate \/pki\/loadgen\.crt\.pem;/g)).toHaveLength(2);
    expect(client.match(/proxy_ssl_certificate_key \/pki\/loadgen\.key\.pem;/g)).toHaveLength(2);
    expect(client.match(/proxy_ssl_session_reuse on;/g)).toHaveLength(2);
    // Said plainly in the config and the report: nginx cannot verify a URI-SAN-only server certificate.
    expect(client.match(/proxy_ssl_verify off;/g)).toHaveLength(2);
    expect(client).toContain('proxy_pass 127.0.0.1:6003;');
    expect(client).toContain('proxy_pass 127.0.0.1:6004;');
  });
});

describe('Caddy pair configs', () => {
  const ports = { clientHttp: 6101, serverHttp: 6102 };
  const server = caddyServerConfig('/d', PKI, ports, BACKEND.http) as { admin: unknown; apps: { http: { servers: Record<string, Record<string, unknown>> }; tls: unknown } };
  const client = caddyClientConfig('/d', PKI, ports) as { admin: unknown; storage: { root: string }; apps: { http: { servers: Record<string, Record<string, unknown>> }; tls?: unknown } };

  it('no admin endpoint, no persisted config, loopback listeners, storage in the pair directory', () => {
    for (const conf of [server, client]) {
      expect(conf.admin).toEqual({ disabled: true, config: { persist: false } });
      for (const srv of Object.values(conf.apps.http.servers)) {
        expect(srv.listen).toEqual([expect.stringMatching(/^127\.0\.0\.1:\d+$/)]);
        expect(srv.automatic_https).toEqual({ disable: true });
      }
    }
    expect(client.storage.root).toMatch(/^\/d\//);
  });

  it('server side: TLS 1.3 only, the server chain, client certificates required and verified against the bundle, one policy', () => {
    const tunnel = server.apps.http.servers.tunnel as { listen: string[]; tls_connection_policies: unknown[]; strict_sni_host: boolean; routes: unknown[] };
    expect(tunnel.listen).toEqual(['127.0.0.1:6102']);
    expect(tunnel.tls_connection_policies).toEqual([
      {
        certificate_selection: { any_tag: ['mesh'] },
        protocol_min: 'tls1.3',
        protocol_max: 'tls1.3',
        client_authentication: { mode: 'require_and_verify', trusted_ca_certs_pem_files: ['/pki/bundle.pem'] },
      },
    ]);
    expect(server.apps.tls).toEqual({ certificates: { load_files: [{ certificate: '/pki/backend.crt.pem', key: '/pki/backend.key.pem', tags: ['mesh'] }] } });
    expect(JSON.stringify(tunnel.routes)).toContain('"dial":"127.0.0.1:7002"');
  });

  it('client side: plain HTTP in, HTTP/2 over TLS with the client chain and key out; the server is not verified', () => {
    const app = client.apps.http.servers.app as { listen: string[]; tls_connection_policies?: unknown; routes: { handle: Record<string, unknown>[] }[] };
    expect(app.listen).toEqual(['127.0.0.1:6101']);
    expect(app.tls_connection_policies).toBeUndefined();
    expect(client.apps.tls).toBeUndefined();
    const proxy = app.routes[0]?.handle[0];
    expect(proxy).toMatchObject({
      handler: 'reverse_proxy',
      upstreams: [{ dial: '127.0.0.1:6102' }],
      transport: {
        protocol: 'http',
        versions: ['2'],
        tls: { client_certificate_file: '/pki/loadgen.crt.pem', client_certificate_key_file: '/pki/loadgen.key.pem', root_ca_pem_files: ['/pki/bundle.pem'], insecure_skip_verify: true },
      },
    });
  });
});

function load(rps: number, p99: number): LoadSample {
  return {
    tool: 'wrk',
    command: ['wrk'],
    seconds: 1,
    requests: rps,
    bytes: rps * 100,
    requestsPerSecond: rps,
    mebibytesPerSecond: (rps * 100) / 1048576,
    latencyUs: { p50: p99 / 2, p90: p99 * 0.9, p99, p999: p99 * 2, mean: p99 / 2, max: p99 * 3 },
    errors: { connect: 0, read: 0, write: 0, timeout: 0, other: 0 },
    non2xx: 0,
  };
}

function sample(scenario: string, pair: PairName, rps: number, p99: number): RunSample {
  const sidecars = pair === 'direct' ? [] : ['client', 'server'].map((role) => ({ role, pid: 1, cpuSeconds: 0.5, peakRssBytes: 20 * 1048576, peakReset: true, rssAfterBytes: 20 * 1048576, rssAnonAfterBytes: 12 * 1048576 }));
  return { round: 1, scenario, pair, startedAt: '', load: load(rps, p99), sidecars, warnings: [] };
}

describe('a pair that serves no tcp port', () => {
  const pairs: PairName[] = ['direct', 'haproxy', 'caddy', 'trellis'];
  const run: BenchRun = {
    startedAt: '2026-01-01T00:00:00.000Z',
    finishedAt: '2026-01-01T00:01:00.000Z',
    options: parseBenchOptions(['--scenarios', 'keepalive-tcp,keepalive-http', '--pairs', pairs.join(',')], '/r'),
    machine: { cpuModel: 'cpu', cpuCount: 2, kernel: 'k', node: 'v20', tools: {}, loadAverageBefore: [0, 0, 0] },
    pairs: pairs.map((name) => ({ name, description: name, ports: name === 'caddy' ? ['http'] : ['tcp', 'http'] })),
    samples: [
      ...(['keepalive-tcp', 'keepalive-http'] as const).flatMap((s) => [sample(s, 'direct', 60000, 1000), sample(s, 'haproxy', 30000, 3000), sample(s, 'trellis', 35000, 2000)]),
      sample('keepalive-http', 'caddy', 20000, 4000),
    ],
    finalSidecars: [],
  };

  it('gets an n/a entry, not a cell, and leaves the targets (Trellis against HAProxy) as they were', () => {
    const s = summarize(run);
    expect(s.unserved).toEqual([{ scenario: 'keepalive-tcp', pair: 'caddy', port: 'tcp' }]);
    expect(s.cells.filter((c) => c.pair === 'caddy').map((c) => c.scenario)).toEqual(['keepalive-http']);
    expect(s.targets.every((t) => t.mark === 'met')).toBe(true);
    expect(s.targets.map((t) => t.reference).join(' ')).not.toMatch(/Caddy|20000/);
  });

  it('prints an n/a row in place and says why', () => {
    const report = renderReport(run, summarize(run));
    expect(report).toMatch(/keepalive-tcp\s+no proxy\s+60000[\s\S]*HAProxy pair\s+30000[^\n]*\n\s+Caddy pair\s+n\/a(\s+n\/a){10}\n\s+Trellis pair\s+35000/);
    expect(report).toMatch(/keepalive-http\s+no proxy[\s\S]*Caddy pair\s+20000/);
    expect(report).toContain('n/a: the Caddy pair serves no tcp port, so 1 scenario(s) were not run through it (keepalive-tcp).');
    expect(report).toMatch(/met, 0 missed, 0 not applicable; 1 table cell\(s\) not applicable/);
  });

  it('a target whose reference pair serves no port of the kind is not applicable, and says so', () => {
    const noTcp: BenchRun = { ...run, pairs: run.pairs.map((p) => (p.name === 'haproxy' ? { ...p, ports: ['http'] } : p)), samples: run.samples.filter((x) => !(x.pair === 'haproxy' && x.scenario === 'keepalive-tcp')) };
    const tcp = summarize(noTcp).targets.filter((t) => t.scenario === 'keepalive-tcp' && t.target.includes('HAProxy'));
    expect(tcp.length).toBeGreaterThan(0);
    for (const t of tcp) expect(t).toMatchObject({ mark: 'n/a', reference: 'not applicable (no tcp port)' });
  });

  it('results written before pairs recorded their ports read as serving both kinds', () => {
    const old: BenchRun = { ...run, pairs: run.pairs.map(({ name, description }) => ({ name, description })), samples: run.samples.filter((x) => x.pair !== 'caddy') };
    expect(summarize(old).unserved).toEqual([]);
  });

  it('options: the new pairs are known but not in the default run', () => {
    expect(PAIR_NAMES).toEqual(['direct', 'haproxy', 'nginx-stream', 'caddy', 'trellis', 'trellis-b', 'trellis-ingress', 'haproxy-sni-ingress']);
    expect(parseBenchOptions(['--pairs', 'trellis,trellis-ingress,haproxy-sni-ingress'], '/r').pairs).toEqual(['trellis', 'trellis-ingress', 'haproxy-sni-ingress']);
    expect(parseBenchOptions([], '/r').pairs).toEqual(['direct', 'haproxy', 'trellis']);
    expect(parseBenchOptions(['--pairs', 'trellis,caddy,nginx-stream,direct,haproxy'], '/r').pairs).toEqual(['direct', 'haproxy', 'nginx-stream', 'caddy', 'trellis']);
    expect(servedPortKinds({ entry: { http: { host: '127.0.0.1', port: 1 } } })).toEqual(['http']);
  });

  it('the SNI-passthrough ingress routes by the server name of api/sni.ts, in mode tcp, without terminating TLS', () => {
    const conf = haproxySniIngressConfig(6100, 6200);
    expect(conf).toMatch(/^\s+mode tcp$/m);
    expect(conf).toContain('use_backend west_backend if { req.ssl_sni -m end .west.v1.trellis }');
    expect(conf).toMatch(/server backend 127\.0\.0\.1:6200$/m);
    expect(conf).not.toMatch(/\bssl crt\b/);
  });

  it('options: --compare PATH adds the trellis-b pair, which needs it', () => {
    const options = parseBenchOptions(['--pairs', 'trellis', '--compare', '/other/dist/cli/main.js'], '/r');
    expect(options.pairs).toEqual(['trellis', 'trellis-b']);
    expect(options.compareCli).toBe('/other/dist/cli/main.js');
    expect(parseBenchOptions([], '/r').compareCli).toBeUndefined();
    expect(() => parseBenchOptions(['--pairs', 'trellis-b'], '/r')).toThrow(/needs --compare/);
  });
});

/** Like requires(), for what a tool check cannot see: skip with the reason, or fail in CI. */
function requiresAlso(base: RequirementCheck, missing: readonly string[]): RequirementCheck {
  if (base.skip || missing.length === 0) return base;
  if (process.env.CI === 'true') throw new Error(`CI=true and this suite needs ${missing.join(', ')}: .ci/run must install it (no skipping in CI)`);
  const reason = `missing ${missing.join(', ')}`;
  console.warn(`SKIPPED (${reason}): install it to run this suite; see .ci/run for the packages`);
  return { skip: true, reason };
}

const needNginxStream = requiresAlso(requires({ tools: ['nginx'] }), existsSync(NGINX_STREAM_MODULE) ? [] : [`${NGINX_STREAM_MODULE} (libnginx-mod-stream)`]);
const needCaddy = requiresAlso(requires({ tools: ['nginx', 'caddy'] }), []);
const needCaddyRun = requiresAlso(requires({ tools: ['nginx', 'caddy', 'wrk'] }), []);

/** GET / through a plain entry port with node's http client. */
function getThrough(port: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: '/', agent: false, headers: { connection: 'close' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.setTimeout(5_000, () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end();
  });
}

interface Credentials {
  readonly cert: Buffer;
  readonly key: Buffer;
}

/** GET / straight to a server side over TLS, as a caller that skipped the client side would; the raw answer or the error. */
function tlsGet(port: number, ca: Buffer, credentials: Credentials | undefined, maxVersion: 'TLSv1.2' | 'TLSv1.3' = 'TLSv1.3'): Promise<string> {
  return new Promise((resolve) => {
    const socket = tlsConnect({
      host: '127.0.0.1',
      port,
      ca,
      ...(credentials ?? {}),
      maxVersion,
      // The leaf names a SPIFFE ID, not a host name; the chain is what is checked here.
      checkServerIdentity: () => undefined,
    });
    let body = '';
    socket.setEncoding('utf8');
    socket.setTimeout(5_000, () => socket.destroy(new Error('timed out')));
    socket.on('secureConnect', () => socket.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n'));
    socket.on('data', (d: string) => (body += d));
    socket.on('end', () => resolve(body));
    socket.on('error', (err) => resolve(`error: ${err.message}`));
  });
}

describe('real pairs on loopback', () => {
  let dir: string;
  let group: ProcessGroup;
  let pki: BenchPki;
  let foreign: BenchPki;
  let backend: Backend;
  const mine = (): Credentials => ({ cert: readFileSync(pki.client.certFile), key: readFileSync(pki.client.keyFile) });
  // A certificate from another root: a well-formed SPIFFE chain the server side must still refuse.
  const stranger = (): Credentials => ({ cert: readFileSync(foreign.client.certFile), key: readFileSync(foreign.client.keyFile) });

  beforeAll(async () => {
    if (needNginxStream.skip && needCaddy.skip) return;
    dir = await mkdtemp(join(tmpdir(), 'trellis-bench-pairs-'));
    group = new ProcessGroup();
    pki = await writeBenchPki(join(dir, 'pki'));
    foreign = await writeBenchPki(join(dir, 'foreign-pki'));
    backend = await startBackend(join(dir, 'backend'), group);
  });

  afterAll(async () => {
    await group?.stopAll();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  describe.skipIf(needNginxStream.skip)('nginx stream pair', () => {
    let pair: RunningNginxStreamPair;
    beforeAll(async () => {
      await mkdir(join(dir, 'nginx-stream'));
      pair = await startNginxStreamPair({ dir: join(dir, 'nginx-stream'), backend: backend.address, pki, processes: group, trellisCli: '/unused' });
    });

    it('carries a request through each entry port, and measures the processes that run it', async () => {
      expect(servedPortKinds(pair)).toEqual(['tcp', 'http']);
      for (const kind of ['tcp', 'http'] as const) {
        await expect(getThrough(pair.entry[kind]?.port ?? 0)).resolves.toEqual({ status: 200, body: SMALL_BODY });
      }
      // master_process off: the started pid is the one with the sockets, not an idle master.
      for (const s of pair.sidecars) expect(readFileSync(`/proc/${s.pid}/cmdline`, 'utf8')).toMatch(/^nginx/);
      pair.assertAlive();
    });

    it('the server side serves a mesh certificate over TLS 1.3, and refuses no certificate, a foreign one and TLS 1.2', async () => {
      const ca = readFileSync(pki.bundleFile);
      expect(await tlsGet(pair.ports.serverTcp, ca, mine())).toMatch(/^HTTP\/1\.1 200 OK[\s\S]*hello from the trellis benchmark backend/);
      for (const port of [pair.ports.serverTcp, pair.ports.serverHttp]) {
        expect(await tlsGet(port, ca, undefined)).not.toMatch(/200 OK/);
        expect(await tlsGet(port, ca, stranger())).not.toMatch(/200 OK/);
        expect(await tlsGet(port, ca, mine(), 'TLSv1.2')).toMatch(/^error: /);
      }
    });
  });

  describe.skipIf(needCaddy.skip)('Caddy pair', () => {
    let pair: RunningCaddyPair;
    beforeAll(async () => {
      await mkdir(join(dir, 'caddy'));
      pair = await startCaddyPair({ dir: join(dir, 'caddy'), backend: backend.address, pki, processes: group, trellisCli: '/unused' });
    });

    it('carries a request through its http entry port and has no tcp one', async () => {
      expect(servedPortKinds(pair)).toEqual(['http']);
      expect(pair.entry.tcp).toBeUndefined();
      await expect(getThrough(pair.entry.http?.port ?? 0)).resolves.toEqual({ status: 200, body: SMALL_BODY });
      // `env` exec'd caddy: the measured pids are caddy's, with GOMAXPROCS=1.
      for (const s of pair.sidecars) {
        expect(readFileSync(`/proc/${s.pid}/cmdline`, 'utf8')).toMatch(/^caddy\0run/);
        expect(readFileSync(`/proc/${s.pid}/environ`, 'utf8').split('\0')).toContain('GOMAXPROCS=1');
      }
      expect(caddyVersion()).toMatch(/^v?2\./);
      pair.assertAlive();
    });

    it('the server side serves a mesh certificate over TLS 1.3, and refuses no certificate, a foreign one and TLS 1.2', async () => {
      const ca = readFileSync(pki.bundleFile);
      expect(await tlsGet(pair.ports.serverHttp, ca, mine())).toMatch(/^HTTP\/1\.1 200 OK[\s\S]*hello from the trellis benchmark backend/);
      expect(await tlsGet(pair.ports.serverHttp, ca, undefined)).not.toMatch(/200 OK/);
      expect(await tlsGet(pair.ports.serverHttp, ca, stranger())).not.toMatch(/200 OK/);
      expect(await tlsGet(pair.ports.serverHttp, ca, mine(), 'TLSv1.2')).toMatch(/^error: /);
    });
  });
});

describe.skipIf(needCaddyRun.skip)('the runner skips the scenarios a pair cannot serve', () => {
  it('runs Caddy through the http-port scenario only and reports n/a for the tcp one', async () => {
    const options = parseBenchOptions(['--duration', '1', '--warmup', '0', '--rounds', '1', '--pairs', 'direct,caddy', '--scenarios', 'keepalive-tcp,keepalive-http', '--no-results'], '/unused');
    const progress: string[] = [];
    const run = await runBench(options, [directPair, caddyPair], { progress: (l) => progress.push(l), trellisCli: '/unused' });
    expect(run.samples.map((s) => `${s.scenario} ${s.pair}`).sort()).toEqual(['keepalive-http caddy', 'keepalive-http direct', 'keepalive-tcp direct']);
    const caddy = run.samples.find((s) => s.pair === 'caddy');
    expect(caddy?.load.requests).toBeGreaterThan(0);
    expect(caddy?.load.non2xx).toBe(0);
    expect(run.pairs.find((p) => p.name === 'caddy')?.ports).toEqual(['http']);
    expect(progress.some((l) => /^caddy: tcp n\/a, http \d+/.test(l))).toBe(true);
    expect(progress.some((l) => l.startsWith('[3/3]'))).toBe(true);
    expect(renderReport(run, summarize(run))).toMatch(/keepalive-tcp\s+no proxy[^\n]*\n\s+Caddy pair\s+n\/a/);
  });
});
