/**
 * Smoke test of the benchmark harness with real processes: the no-proxy baseline and the HAProxy pair
 * run a few scenarios for a second each, proving that the nginx and HAProxy configs are valid, that the
 * HAProxy pair really does mTLS with our certificates, that wrk's and h2load's figures parse, and that
 * every process and temporary file is gone afterwards. No figure is asserted beyond "it worked": speed
 * is the benchmark's business, not a test's.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, mkdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBackend, type Backend } from '../../bench/backend.js';
import { parseBenchOptions } from '../../bench/options.js';
import { directPair } from '../../bench/pairs/direct.js';
import { haproxyPair, startHaproxyPair, type RunningHaproxyPair } from '../../bench/pairs/haproxy.js';
import { writeBenchPki, type BenchPki } from '../../bench/pki.js';
import { ProcessGroup } from '../../bench/processes.js';
import { renderReport } from '../../bench/report.js';
import { writeResults } from '../../bench/results-file.js';
import { runBench } from '../../bench/runner.js';
import { summarize } from '../../bench/summary.js';
import { requires } from '../helpers/requirements.js';

const need = requires({ tools: ['haproxy', 'wrk', 'h2load', 'nginx'] });

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe.skipIf(need.skip)('benchmark harness (no proxy and HAProxy pair)', () => {
  it('runs, parses, reports and cleans up', async () => {
    const progress: string[] = [];
    const options = parseBenchOptions(['--duration', '1', '--warmup', '0', '--rounds', '1', '--pairs', 'direct,haproxy', '--scenarios', 'keepalive-tcp,close-http,latency-tcp,1mib-tcp'], '/unused');
    const run = await runBench(options, [directPair, haproxyPair], { progress: (l) => progress.push(l), trellisCli: '/unused' });

    expect(run.samples).toHaveLength(8);
    for (const s of run.samples) {
      expect(s.warnings, `${s.scenario} ${s.pair}`).toEqual([]);
      expect(s.load.requests, `${s.scenario} ${s.pair}`).toBeGreaterThan(0);
      expect(s.load.non2xx, `${s.scenario} ${s.pair}`).toBe(0);
      expect(s.load.errors, `${s.scenario} ${s.pair}`).toEqual({ connect: 0, read: 0, write: 0, timeout: 0, other: 0 });
      expect(Number.isFinite(s.load.latencyUs.p99)).toBe(true);
      expect(s.load.latencyUs.p50).toBeLessThanOrEqual(s.load.latencyUs.p999);
    }
    const latency = run.samples.find((s) => s.scenario === 'latency-tcp' && s.pair === 'haproxy');
    expect(latency?.load.tool).toBe('h2load');
    const haproxy = run.samples.filter((s) => s.pair === 'haproxy');
    for (const s of haproxy) {
      expect(s.sidecars.map((c) => c.role)).toEqual(['client', 'server']);
      for (const c of s.sidecars) {
        expect(c.peakRssBytes).toBeGreaterThan(1024 * 1024);
        expect(c.cpuSeconds).toBeGreaterThanOrEqual(0);
      }
    }
    // The 1 MiB scenario moved whole bodies through the pair, not error pages.
    const big = haproxy.find((s) => s.scenario === '1mib-tcp');
    expect((big?.load.bytes ?? 0) / (big?.load.requests ?? 1)).toBeGreaterThan(1024 * 1024);

    // Every process stopped, the work directory removed.
    for (const pid of haproxy.flatMap((s) => s.sidecars.map((c) => c.pid))) expect(alive(pid)).toBe(false);
    const workdir = progress.find((l) => l.startsWith('work directory '))?.slice('work directory '.length);
    expect(workdir).toBeDefined();
    expect(existsSync(workdir as string)).toBe(false);

    const summary = summarize(run);
    const report = renderReport(run, summary);
    expect(report).toMatch(/keepalive-tcp\s+no proxy/);
    expect(report).toMatch(/HAProxy pair/);
    const resultsDir = await mkdtemp(join(tmpdir(), 'trellis-bench-results-'));
    try {
      const file = await writeResults(resultsDir, run, summary);
      const json = JSON.parse(readFileSync(file, 'utf8')) as { format: string; samples: unknown[]; summary: { cells: unknown[] } };
      expect(json.format).toBe('trellis-bench/v1');
      expect(json.samples).toHaveLength(8);
      expect(json.summary.cells).toHaveLength(8);
    } finally {
      await rm(resultsDir, { recursive: true, force: true });
    }
  });
});

describe.skipIf(need.skip)('the HAProxy pair is a real mTLS pair', () => {
  let dir: string;
  let group: ProcessGroup;
  let pki: BenchPki;
  let backend: Backend;
  let pair: RunningHaproxyPair;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'trellis-bench-test-'));
    group = new ProcessGroup();
    pki = await writeBenchPki(join(dir, 'pki'));
    backend = await startBackend(join(dir, 'backend'), group);
    await mkdir(join(dir, 'haproxy'));
    pair = await startHaproxyPair({ dir: join(dir, 'haproxy'), backend: backend.address, pki, processes: group, trellisCli: '/unused' });
  });

  afterAll(async () => {
    await group?.stopAll();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  function request(options: { withCertificate: boolean; maxVersion?: 'TLSv1.2' | 'TLSv1.3' }): Promise<string> {
    return new Promise((resolve, reject) => {
      const socket = tlsConnect({
        host: '127.0.0.1',
        port: pair.ports.serverTcp,
        ca: readFileSync(pki.bundleFile),
        ...(options.withCertificate ? { cert: readFileSync(pki.client.certFile), key: readFileSync(pki.client.keyFile) } : {}),
        maxVersion: options.maxVersion ?? 'TLSv1.3',
        // The leaf names a SPIFFE ID, not a host name; the chain is what is checked here.
        checkServerIdentity: () => undefined,
      });
      let body = '';
      socket.setEncoding('utf8');
      socket.on('secureConnect', () => socket.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
      socket.on('data', (d: string) => (body += d));
      socket.on('end', () => resolve(body));
      socket.on('error', reject);
    });
  }

  it('serves a caller with a mesh certificate', async () => {
    await expect(request({ withCertificate: true })).resolves.toMatch(/^HTTP\/1\.1 200 OK[\s\S]*hello from the trellis benchmark backend/);
  });

  it('refuses a caller without a certificate, and TLS 1.2', async () => {
    await expect(request({ withCertificate: false })).rejects.toThrow(/certificate required|alert|socket hang up|ECONNRESET/i);
    await expect(request({ withCertificate: true, maxVersion: 'TLSv1.2' })).rejects.toThrow();
  });

  it('writes configs with nbthread 1, TLS 1.3 only and verified client certificates', async () => {
    const server = await readFile(join(dir, 'haproxy', 'haproxy-server.cfg'), 'utf8');
    expect(server).toMatch(/nbthread 1/);
    expect(server).toMatch(/ssl-min-ver TLSv1\.3/);
    expect(server).toMatch(/verify required/);
    expect(await readFile(join(dir, 'haproxy', 'haproxy-client.cfg'), 'utf8')).toMatch(/http-reuse always/);
  });
});
