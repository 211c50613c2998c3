/**
 * The status port's own behaviour: `POST /quitquitquit` only from loopback and only once, the bound on
 * probes in flight (identical probes share one run), and the validation of the injector's probe file
 * (every problem at once, nothing that could smuggle a header).
 */
import { request } from 'node:http';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { loadAppProbesFile, parseAppProbes, type AppProbe } from '../../agent/app-probes.js';
import type { ProbeResult } from '../../agent/app-probe-runner.js';
import { createStatusServer, isLoopback, STATUS_LIMITS, type StatusServerOptions } from '../../agent/status-server.js';
import { silentLogger } from '../../common/log.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

async function start(options: Partial<StatusServerOptions>): Promise<number> {
  const server = createStatusServer({ probes: new Map(), ready: () => ({ ready: true }), onQuit: () => undefined, log: silentLogger(), ...options });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  return (server.address() as AddressInfo).port;
}

function call(port: number, path: string, method = 'GET', body?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('POST /quitquitquit', () => {
  it('answers, then asks the agent to quit once; other methods are refused', async () => {
    let quits = 0;
    const port = await start({ onQuit: () => quits++ });
    expect((await call(port, '/quitquitquit', 'GET')).status).toBe(405);
    expect(quits).toBe(0);
    expect(await call(port, '/quitquitquit', 'POST', 'ignored')).toEqual({ status: 200, body: 'draining and exiting\n' });
    expect(await call(port, '/quitquitquit', 'POST')).toEqual({ status: 200, body: 'draining and exiting\n' });
    expect(quits).toBe(1);
  });

  it('counts only loopback callers as inside the pod', () => {
    for (const a of ['127.0.0.1', '127.0.0.6', '::1', '::ffff:127.0.0.1']) expect(isLoopback(a), a).toBe(true);
    for (const a of ['10.244.1.17', '::ffff:10.0.0.1', 'fe80::1', '::', undefined]) expect(isLoopback(a), String(a)).toBe(false);
  });
});

describe('probe runs', () => {
  it('shares one run between identical probes in flight, and refuses beyond the bound with 503', async () => {
    const release: (() => void)[] = [];
    let runs = 0;
    const runProbe = (): Promise<ProbeResult> =>
      new Promise((resolve) => {
        runs++;
        release.push(() => resolve({ ok: true, detail: 'fine' }));
      });
    const probe: AppProbe = { kind: 'tcp', port: 1, host: undefined, timeoutMs: 1_000 };
    const probes = new Map<string, AppProbe>();
    for (let i = 0; i <= STATUS_LIMITS.maxProbesInFlight; i++) probes.set(`/app-health/c${i}/livez`, probe);
    const registry = new Registry();
    const port = await start({ probes, runProbe, registry });
    const shared = [call(port, '/app-health/c0/livez'), call(port, '/app-health/c0/livez')];
    const rest = [];
    for (let i = 1; i < STATUS_LIMITS.maxProbesInFlight; i++) rest.push(call(port, `/app-health/c${i}/livez`));
    await expect.poll(() => runs).toBe(STATUS_LIMITS.maxProbesInFlight);
    const refused = await call(port, `/app-health/c${STATUS_LIMITS.maxProbesInFlight}/livez`);
    expect(refused.status).toBe(503);
    expect(refused.body).toMatch(/too many probes in flight/);
    for (const r of release) r();
    expect((await Promise.all([...shared, ...rest])).every((a) => a.status === 200)).toBe(true);
    expect(runs).toBe(STATUS_LIMITS.maxProbesInFlight);
    const metrics = await registry.getSingleMetricAsString('trellis_agent_app_probes_total');
    expect(metrics).toContain('trellis_agent_app_probes_total{path="/app-health/c0/livez",result="pass"} 2');
    expect(metrics).toMatch(/result="busy"\} 1/);
  });

  it('answers 503 when a probe runner throws', async () => {
    const port = await start({ probes: new Map([['/app-health/a/livez', { kind: 'tcp', port: 1, host: undefined, timeoutMs: 1 } as AppProbe]]), runProbe: () => Promise.reject(new Error('boom')) });
    expect(await call(port, '/app-health/a/livez')).toEqual({ status: 503, body: 'probe failed to run: boom\n' });
  });

  it('refuses a request whose headers are too large', async () => {
    const port = await start({});
    const status = await new Promise<number>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/healthz', agent: false, headers: { 'x-big': 'a'.repeat(STATUS_LIMITS.maxHeaderBytes + 1) } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end();
    });
    expect(status).toBe(431);
  });
});

describe('the injector\'s probe file', () => {
  it('reports every problem at once', () => {
    let message = '';
    try {
      parseAppProbes(
        JSON.stringify({
          '/app-health/web/livez': { kind: 'exec', port: 0, timeoutSeconds: 0 },
          '/healthz': { kind: 'tcp', port: 1, timeoutSeconds: 1 },
          '/app-health/web/readyz': { kind: 'http', port: 80, path: 'no-slash', scheme: 'FTP', headers: [{ name: 'X-A', value: 'a\r\nInjected: 1' }, { name: 'bad name', value: '' }], timeoutSeconds: 1 },
          '/app-health/web/startupz': { kind: 'grpc', port: 9000, timeoutSeconds: 1, extra: true },
        }),
        'app-probes.json',
      );
    } catch (err) {
      expect((err as { code: string }).code).toBe('TRELLIS_AGENT_APP_PROBES_INVALID');
      message = (err as Error).message;
    }
    for (const expected of [
      '"/app-health/web/livez".kind: expected "http", "tcp" or "grpc"',
      '"/app-health/web/livez".port: expected a port number 1-65535',
      '"/app-health/web/livez".timeoutSeconds',
      '"/healthz": expected /app-health/<container>/<livez|readyz|startupz>',
      '"/app-health/web/readyz".path',
      '"/app-health/web/readyz".scheme',
      '"/app-health/web/readyz".headers[0]',
      '"/app-health/web/readyz".headers[1]',
      '"/app-health/web/startupz": unknown field "extra"',
    ]) {
      expect(message).toContain(expected);
    }
    expect(() => parseAppProbes('not json', 'f')).toThrow(/f: not JSON/);
    expect(() => parseAppProbes('[]', 'f')).toThrow(/expected a JSON object/);
  });

  it('applies the kubelet\'s defaults and freezes the result', () => {
    const table = parseAppProbes(JSON.stringify({ '/app-health/web/livez': { kind: 'http', port: 8080, timeoutSeconds: 3 } }), 'f');
    const probe = table.get('/app-health/web/livez');
    expect(probe).toEqual({ kind: 'http', port: 8080, host: undefined, path: '/', scheme: 'HTTP', headers: [], timeoutMs: 3_000 });
    expect(Object.isFrozen(probe)).toBe(true);
  });

  it('reads an empty file (the annotation is missing) as no probes, and names an unreadable one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'trellis-probes-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, 'empty.json'), '');
    expect(loadAppProbesFile(join(dir, 'empty.json')).size).toBe(0);
    expect(() => loadAppProbesFile(join(dir, 'missing.json'))).toThrow(/missing\.json: cannot read \(ENOENT\)/);
  });
});
