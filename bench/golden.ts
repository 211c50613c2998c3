/**
 * `npm run bench:golden`: what golden metrics cost. Per agent: reading the sidecar's counters into a summary
 * (once per interval, off the data path) and the summary's size on the wire, for a sidecar with `--pairs`
 * caller → callee pairs. Per zone control plane: parsing, validating and adding one summary, the memory
 * of a full 15-minute window for `--agents` agents reporting every 10 s over `--services` services, and
 * the time to answer the UI's edge view from it. Measures and reports; it asserts nothing.
 *
 *   node dist/bench/golden.js [--pairs 20] [--agents 1000] [--services 200] [--json]
 */
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { Registry } from 'prom-client';
import { DEFAULT_SUMMARY_INTERVAL_MS, LATENCY_SLOTS, type GoldenSummary } from '../api/golden-summary.js';
import { GoldenWindow, WINDOW_SLOT_MS, WINDOW_SLOTS } from '../control/golden/golden-window.js';
import { validateSummary } from '../control/golden/validate-summary.js';
import { createProxyMetrics } from '../proxy/core/metrics.js';
import { diff, readCounters } from '../proxy/golden-counters.js';
import { createHttpMetrics } from '../proxy/http/metrics.js';

function int(text: string | undefined, name: string, max: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > max) throw new Error(`--${name} must be an integer from 1 to ${max}`);
  return n;
}

function timeEach(runs: number, fn: (i: number) => void): number {
  for (let i = 0; i < Math.min(50, runs); i++) fn(i);
  const started = performance.now();
  for (let i = 0; i < runs; i++) fn(i);
  return (performance.now() - started) / runs;
}

/** One agent: a sidecar's registry with `pairs` inbound HTTP pairs, a TCP pair and a denial. */
async function agentCost(pairs: number): Promise<{ buildMs: number; summaryBytes: number }> {
  const registry = new Registry();
  const http = createHttpMetrics(registry);
  const proxy = createProxyMetrics(registry);
  const traffic = (): void => {
    for (let p = 0; p < pairs; p++) for (let r = 0; r < 20; r++) http.record('inbound', `ns${p % 7}/caller-${p}`, 'shop/orders', r === 0 ? 503 : 200, 0.001 * (1 + (r % 9)));
    proxy.tcpConnections.inc({ direction: 'outbound', source: 'shop/orders', destination: 'shop/db', result: 'ok' });
    proxy.policyDenials.inc({ source: 'shop/payments', destination: 'shop/orders', policy: 'shop/orders-callers', rule: '0', enforced: 'true' });
  };
  traffic();
  let baseline = await readCounters(registry);
  let bytes = 0;
  const runs = 200;
  let total = 0;
  for (let i = 0; i < runs; i++) {
    traffic();
    const started = performance.now();
    const reading = await readCounters(registry);
    const { edges, denials } = diff(baseline, reading);
    const body = JSON.stringify({ instanceId: 'orders-1', intervalMs: 10_000, configVersion: 1, policyRevision: null, configStale: false, certNotAfter: new Date().toISOString(), edges, denials, truncated: 0 } satisfies GoldenSummary);
    total += performance.now() - started;
    baseline = reading;
    bytes = Buffer.byteLength(body);
  }
  return { buildMs: total / runs, summaryBytes: bytes };
}

function summaryOf(agent: number, services: number, pairsPerAgent: number): string {
  const self = `ns${agent % 10}/svc-${agent % services}`;
  const edges = Array.from({ length: pairsPerAgent }, (_, p) => {
    const latency = new Array<number>(LATENCY_SLOTS).fill(0);
    latency[3 + (p % 5)] = 100;
    return { direction: 'inbound', source: `ns${p % 10}/svc-${(agent * 7 + p) % services}`, destination: self, protocol: 'http', requests: 100, failures: p % 3, latency };
  });
  return JSON.stringify({ instanceId: `agent-${agent}`, intervalMs: 10_000, configVersion: 9, policyRevision: `sha256:${'0'.repeat(64)}`, configStale: false, certNotAfter: new Date(Date.now() + 3_600_000).toISOString(), edges, denials: [], truncated: 0 });
}

function controlCost(agents: number, services: number): { addUs: number; windowMiB: number; edgeViewMs: number; pairs: number } {
  const pairsPerAgent = 10;
  const bodies = Array.from({ length: agents }, (_, a) => summaryOf(a, services, pairsPerAgent));
  const selfOf = (a: number): { namespace: string; service: string } => ({ namespace: `ns${a % 10}`, service: `svc-${a % services}` });
  let now = 0;
  const window = new GoldenWindow('bench', () => now);
  const addMs = timeEach(5_000, (i) => {
    const a = i % agents;
    const who = selfOf(a);
    window.add(validateSummary(JSON.parse(bodies[a] as string), `${who.namespace}/${who.service}`), who);
  });
  global.gc?.();
  const before = process.memoryUsage().heapUsed;
  const full = new GoldenWindow('bench', () => now);
  // Every agent reports every interval for the whole window.
  const rounds = (WINDOW_SLOTS * WINDOW_SLOT_MS) / DEFAULT_SUMMARY_INTERVAL_MS;
  for (let r = 0; r < rounds; r++) {
    now = r * DEFAULT_SUMMARY_INTERVAL_MS;
    for (let a = 0; a < agents; a++) {
      const who = selfOf(a);
      full.add(validateSummary(JSON.parse(bodies[a] as string), `${who.namespace}/${who.service}`), who);
    }
  }
  global.gc?.();
  const windowMiB = (process.memoryUsage().heapUsed - before) / 1024 / 1024;
  let pairs = 0;
  const edgeViewMs = timeEach(20, () => void (pairs = full.edges(5 * WINDOW_SLOT_MS).length));
  return { addUs: addMs * 1000, windowMiB, edgeViewMs, pairs };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { pairs: { type: 'string', default: '20' }, agents: { type: 'string', default: '1000' }, services: { type: 'string', default: '200' }, json: { type: 'boolean', default: false } } });
  const pairs = int(values.pairs, 'pairs', 64);
  const agents = int(values.agents, 'agents', 20_000);
  const services = int(values.services, 'services', 5_000);
  const agent = await agentCost(pairs);
  const control = controlCost(agents, services);
  const perSecond = agents / (DEFAULT_SUMMARY_INTERVAL_MS / 1000);
  const result = {
    agent: { pairs, buildMsPerSummary: agent.buildMs, summaryBytes: agent.summaryBytes, cpuShareAt10s: agent.buildMs / DEFAULT_SUMMARY_INTERVAL_MS },
    control: { agents, services, summariesPerSecond: perSecond, usPerSummary: control.addUs, cpuShare: (control.addUs / 1e6) * perSecond, windowMiB: control.windowMiB, windowPairs: control.pairs, edgeViewMs: control.edgeViewMs },
  };
  if (values.json === true) {
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return;
  }
  process.stdout.write(`golden metrics, per agent (${pairs} pairs): ${agent.buildMs.toFixed(3)} ms to read the counters and build a summary every ${DEFAULT_SUMMARY_INTERVAL_MS / 1000} s (${(result.agent.cpuShareAt10s * 100).toFixed(4)} % of a core), ${agent.summaryBytes} bytes on the wire\n`);
  process.stdout.write(`golden metrics, per zone control plane (${agents} agents, ${services} services, 10 pairs each): ${control.addUs.toFixed(1)} µs to parse, validate and add one summary (${(result.control.cpuShare * 100).toFixed(2)} % of a core at ${perSecond}/s), ${control.windowMiB.toFixed(1)} MiB for a full 15-minute window (${control.pairs} pairs), ${control.edgeViewMs.toFixed(1)} ms for the UI's 5-minute edge view\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
