#!/usr/bin/env node
/**
 * `npm run bench:abuse`: what three attacks on a sidecar's tunnel port do to an unrelated, allowed caller.
 *
 * A target sidecar (`trellis proxy run`, its own process, default limits, the sidecar node flags) sits in
 * front of an echo app. An allowed caller (`loadgen`, from 127.0.0.2) sends one CONNECT + 64-byte echo at a
 * fixed rate on one pooled session, and its p50/p99 are measured before the attacks and during each. The
 * attacker (bench/abuse-attacker.ts, a process of its own, from 127.0.0.3) is an identity the policy
 * denies (`intruder`). After each attack: sessions open and handshakes in progress on the target (its
 * /metrics), its RSS, whether a brand-new allowed caller could still connect, and how many warn lines the
 * target wrote. Loopback only; figures on a shared 2-core machine are evidence, not a gate.
 *
 *   node dist/bench/abuse.js [--quick] [--seconds S] [--rate N] [--cli PATH] [--no-pin]
 *
 * --no-pin: by default (2+ CPUs and taskset present) the attacker runs on CPU 1 and the target and the
 * caller on CPU 0, so the caller's latency shows what the attack costs the target, not what the attacker's
 * own process takes from a shared 2-core machine (in production the attacker is another machine).
 * --seconds: measured seconds per phase (default 10, --quick 3); --rate: the caller's exchanges per second
 * (default 100); --cli: another build's dist/cli/main.js as the target (to compare before and after a change).
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect as h2connect, type ClientHttp2Session } from 'node:http2';
import { createServer, connect as netConnect, type AddressInfo, type Server, type Socket } from 'node:net';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';
import { stringify } from 'yaml';
import { createRootCa } from '../ca/authority.js';
import { workloadId } from '../ca/spiffe-id.js';
import { POLICY_API_VERSION, POLICY_KIND } from '../policy/types.js';
import { SIDECAR_NODE_FLAGS } from '../proxy/runtime-flags.js';
import type { AttackName, AttackSpec } from './abuse-attacker.js';
import { builtCliPath } from './paths.js';
import { LOOPBACK, freePorts } from './ports.js';
import { readProcessStats } from './proc-stats.js';
import { ProcessGroup, waitForPorts, type ManagedProcess } from './processes.js';

const TRUST_DOMAIN = 'bench.trellis.local';
const NAMESPACE = 'bench';
const PROBE_ADDRESS = '127.0.0.2';
const ATTACKER_ADDRESS = '127.0.0.3';
const ECHO_BYTES = 64;
const PROBE_TIMEOUT_MS = 5_000;
/** Attacks get this long to reach full strength before the measuring starts. */
const RAMP_MS = 1_000;
/** After an attack stops, the target gets this long to clean up before the next one. */
const SETTLE_MS = 2_500;

interface Files {
  readonly cert: string;
  readonly key: string;
}

interface PhaseResult {
  readonly phase: string;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly completed: number;
  readonly failed: number;
  readonly sessions: number;
  readonly handshakes: number;
  readonly rssMiB: number;
  readonly newCaller: string;
  readonly warnLines: number;
  /** CPU seconds per wall second of the target and of the attacker while the caller was measured. */
  readonly targetCpu: number;
  readonly attackerCpu: number;
  /** Policy denials the target counted during the phase (the metric counts every one). */
  readonly denials: number;
  /** Times the caller's session was ended by the target and replaced. */
  readonly reconnects: number;
  readonly attacker: string;
  /** The caller's failures by error code or message. */
  readonly errors: string;
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] as number;
}

async function writePki(dir: string): Promise<{ bundle: string; ids: Record<'backend' | 'loadgen' | 'intruder', Files> }> {
  const root = await createRootCa({ trustDomain: TRUST_DOMAIN, commonName: 'abuse bench root' });
  const zone = await root.createIntermediate({ name: 'bench-zone' });
  const bundle = join(dir, 'bundle.pem');
  await writeFile(bundle, root.bundle.toPem());
  const ids = {} as Record<'backend' | 'loadgen' | 'intruder', Files>;
  for (const service of ['backend', 'loadgen', 'intruder'] as const) {
    const issued = await zone.issueWorkload(workloadId(TRUST_DOMAIN, NAMESPACE, service));
    ids[service] = { cert: join(dir, `${service}.crt.pem`), key: join(dir, `${service}.key.pem`) };
    await writeFile(ids[service].cert, issued.certChainPem);
    await writeFile(ids[service].key, issued.keyPem, { mode: 0o600 });
  }
  return { bundle, ids };
}

async function echoApp(): Promise<{ server: Server; port: number; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, LOOPBACK, r));
  return { server, port: (server.address() as AddressInfo).port, sockets };
}

/** An allowed caller's session from PROBE_ADDRESS, as a client sidecar would hold it (PEM texts). */
function callerSession(port: number, pem: { readonly cert: string; readonly key: string }, bundlePem: string): ClientHttp2Session {
  const session = h2connect(`https://${LOOPBACK}:${port}`, {
    createConnection: () => tlsConnect({ socket: netConnect({ host: LOOPBACK, port, localAddress: PROBE_ADDRESS }), ALPNProtocols: ['h2'], checkServerIdentity: () => undefined, cert: pem.cert, key: pem.key, ca: bundlePem }),
  });
  session.on('error', () => undefined);
  return session;
}

/** The unrelated allowed caller: one session at a time, replaced when the target ends it. */
class Caller {
  private current: ClientHttp2Session | undefined;
  reconnects = 0;

  constructor(private readonly open: () => ClientHttp2Session) {}

  session(): ClientHttp2Session {
    if (this.current === undefined || this.current.closed || this.current.destroyed) {
      if (this.current !== undefined) this.reconnects += 1;
      this.current = this.open();
    }
    return this.current;
  }

  close(): void {
    this.current?.destroy();
  }
}

/** One CONNECT through the tunnel with a 64-byte echo; resolves with its latency in ms, or throws. */
function exchange(session: ClientHttp2Session, authority: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const stream = session.request({ ':method': 'CONNECT', ':authority': authority });
    let got = 0;
    const timer = setTimeout(() => {
      stream.destroy();
      reject(new Error('timeout'));
    }, PROBE_TIMEOUT_MS);
    stream.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    stream.on('response', (h) => {
      if (h[':status'] !== 200) {
        clearTimeout(timer);
        stream.destroy();
        reject(new Error(`status ${String(h[':status'])}`));
      }
    });
    stream.on('data', (chunk: Buffer) => {
      got += chunk.length;
      if (got < ECHO_BYTES) return;
      clearTimeout(timer);
      resolve(performance.now() - started);
      // A clean end both ways (the echo app half-closes in turn), as a sidecar ends a finished connection.
      stream.end();
    });
    stream.resume();
    stream.write(Buffer.alloc(ECHO_BYTES, 0x62));
  });
}

/**
 * Sends at `rate` per second for `seconds`, one exchange started per tick whatever the others do, on the
 * caller's session; a session the target ended is replaced, as a sidecar's pool would.
 */
async function measure(caller: Caller, authority: string, rate: number, seconds: number): Promise<{ latencies: number[]; failed: number; errors: Map<string, number> }> {
  const latencies: number[] = [];
  const errors = new Map<string, number>();
  let failed = 0;
  const pending: Promise<void>[] = [];
  const interval = 1_000 / rate;
  const started = performance.now();
  for (let i = 0; i < rate * seconds; i++) {
    const due = started + i * interval;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    pending.push(
      exchange(caller.session(), authority).then(
        (ms) => void latencies.push(ms),
        (err: Error) => {
          failed += 1;
          const why = (err as NodeJS.ErrnoException).code ?? err.message;
          errors.set(why, (errors.get(why) ?? 0) + 1);
        },
      ),
    );
  }
  await Promise.all(pending);
  return { latencies: latencies.sort((a, b) => a - b), failed, errors };
}

/** Sum of every series of `name` on the target's /metrics. */
async function metricTotal(adminPort: number, name: string): Promise<number> {
  const text = await (await fetch(`http://${LOOPBACK}:${adminPort}/metrics`, { signal: AbortSignal.timeout(5_000) })).text();
  let total = 0;
  for (const line of text.split('\n')) if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) total += Number(line.slice(line.lastIndexOf(' ') + 1));
  return total;
}

/** The inbound series of `name` on the target's /metrics. */
async function metric(adminPort: number, name: string): Promise<number> {
  const text = await (await fetch(`http://${LOOPBACK}:${adminPort}/metrics`, { signal: AbortSignal.timeout(5_000) })).text();
  let total = 0;
  for (const line of text.split('\n')) if (line.startsWith(`${name}{`) && line.includes('direction="inbound"')) total += Number(line.slice(line.lastIndexOf(' ') + 1));
  return total;
}

async function waitUntilReady(proc: ManagedProcess, adminPort: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (!proc.running) throw new Error(proc.describeExit());
    const ok = await fetch(`http://${LOOPBACK}:${adminPort}/ready`, { signal: AbortSignal.timeout(1_000) }).then((r) => r.status === 200, () => false);
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the target sidecar was not ready within 20 s: ${proc.describeExit()}`);
}

type Pinned = (cpu: number, command: string, args: readonly string[]) => { command: string; args: string[] };

/** What a phase runs against: the target sidecar, its ports, the PKI, and the allowed caller measured. */
interface Bench {
  readonly processes: ProcessGroup;
  readonly pinned: Pinned;
  readonly target: ManagedProcess;
  readonly tunnelPort: number;
  readonly adminPort: number;
  readonly pki: Awaited<ReturnType<typeof writePki>>;
  readonly bundlePem: string;
  readonly caller: { readonly cert: string; readonly key: string };
  readonly probe: Caller;
  readonly authority: string;
  readonly rate: number;
  readonly seconds: number;
  /** Lines the target wrote to stdout and stderr (warnings: its log level is warn). */
  readonly lines: () => number;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false }, seconds: { type: 'string' }, rate: { type: 'string', default: '100' }, cli: { type: 'string' }, 'no-pin': { type: 'boolean', default: false } } });
  const pin = !values['no-pin'] && availableParallelism() >= 2 && hasTaskset();
  if (pin) execFileSync('taskset', ['-p', '-c', '0', String(process.pid)], { stdio: 'ignore' });
  const pinned: Pinned = (cpu, command, args) => (pin ? { command: 'taskset', args: ['-c', String(cpu), command, ...args] } : { command, args: [...args] });
  const seconds = Number(values.seconds ?? (values.quick ? 3 : 10));
  const rate = Number(values.rate);
  if (!(seconds > 0 && seconds <= 60) || !(rate > 0 && rate <= 2_000)) throw new Error('--seconds must be in (0, 60] and --rate in (0, 2000]');
  const dir = await mkdtemp(join(tmpdir(), 'trellis-abuse-'));
  const processes = new ProcessGroup();
  const app = await echoApp();
  const stop = async (): Promise<void> => {
    await processes.stopAll();
    for (const s of app.sockets) s.destroy();
    app.server.close();
    await rm(dir, { recursive: true, force: true });
  };
  process.once('SIGINT', () => void stop().then(() => process.exit(130)));
  try {
    const bench = await startTarget({ dir, processes, pinned, appPort: app.port, cli: values.cli, rate, seconds });
    const results: PhaseResult[] = [];
    results.push(await runPhase(bench, 'baseline', undefined));
    results.push(await runPhase(bench, 'rapid reset (denied identity, 3,000 streams per session)', 'rapid-reset'));
    results.push(await runPhase(bench, 'sessions ended by protocol errors / oversized headers', 'broken-sessions'));
    results.push(await runPhase(bench, 'stalled handshakes (1,020 from one source)', 'stalled-handshakes'));
    bench.probe.close();
    await new Promise((r) => setTimeout(r, 500));
    const afterSessions = await metric(bench.adminPort, 'trellis_tunnel_sessions');
    process.stdout.write(abuseReport(bench, results, afterSessions, pin));
  } finally {
    await stop();
  }
}

/** The target sidecar (`trellis proxy run`) in front of the echo app, ready, with the allowed caller's first exchange done. */
async function startTarget(o: { dir: string; processes: ProcessGroup; pinned: Pinned; appPort: number; cli: string | undefined; rate: number; seconds: number }): Promise<Bench> {
  const { dir, processes, pinned } = o;
  const pki = await writePki(dir);
  const bundlePem = await readFile(pki.bundle, 'utf8');
  const [tunnelPort, adminPort] = (await freePorts(2)) as [number, number];
  const policyFile = join(dir, 'policy.yaml');
  await writeFile(policyFile, stringify({ apiVersion: POLICY_API_VERSION, kind: POLICY_KIND, metadata: { name: 'loadgen-only', namespace: NAMESPACE }, spec: { destination: 'backend', mode: 'enforce', rules: [{ action: 'allow', from: ['loadgen'] }] } }));
  const config = join(dir, 'target.yaml');
  await writeFile(config, stringify({
    service: 'backend', namespace: NAMESPACE, trustDomain: TRUST_DOMAIN, zone: 'bench',
    identity: { certificate: pki.ids.backend.cert, key: pki.ids.backend.key, trustBundle: pki.bundle },
    tunnel: { address: LOOPBACK, port: tunnelPort }, admin: { address: LOOPBACK, port: adminPort },
    inbound: { mode: 'strict', appPorts: [{ port: o.appPort, protocol: 'tcp', host: LOOPBACK }] },
    policy: [policyFile], accessLog: false, logLevel: 'warn',
  }));
  const target = processes.start({ name: 'target sidecar', ...pinned(0, process.execPath, [...SIDECAR_NODE_FLAGS, o.cli ?? builtCliPath(), 'proxy', 'run', '--config', config]) });
  let lines = 0;
  const countLines = (chunk: Buffer): void => {
    for (const byte of chunk) if (byte === 0x0a) lines += 1;
    if (process.env.ABUSE_DEBUG) process.stderr.write(chunk);
  };
  target.child.stdout?.on('data', countLines);
  target.child.stderr?.on('data', countLines);
  await waitForPorts(target, [adminPort]);
  await waitUntilReady(target, adminPort);
  lines = 0;
  const authority = `backend.${NAMESPACE}:${o.appPort}`;
  const caller = { cert: await readFile(pki.ids.loadgen.cert, 'utf8'), key: await readFile(pki.ids.loadgen.key, 'utf8') };
  const probe = new Caller(() => callerSession(tunnelPort, caller, bundlePem));
  await exchange(probe.session(), authority);
  return { processes, pinned, target, tunnelPort, adminPort, pki, bundlePem, caller, probe, authority, rate: o.rate, seconds: o.seconds, lines: () => lines };
}

function cpuSecondsOf(p: ManagedProcess): number {
  return p.running ? readProcessStats(p.pid).cpuSeconds : Number.NaN;
}

/** One phase: the attacker (if any) ramps up, then the caller is measured while the attack runs. */
async function runPhase(b: Bench, name: string, attack: AttackName | undefined): Promise<PhaseResult> {
  process.stderr.write(`bench:abuse: ${name} (${b.seconds} s at ${b.rate}/s)\n`);
  let attacker: ManagedProcess | undefined;
  if (attack !== undefined) {
    const intruder = b.pki.ids.intruder;
    const spec: AttackSpec = { attack, host: LOOPBACK, port: b.tunnelPort, localAddress: ATTACKER_ADDRESS, certFile: intruder.cert, keyFile: intruder.key, caFile: b.pki.bundle, authority: b.authority };
    attacker = b.processes.start({ name: `attacker ${attack}`, ...b.pinned(1, process.execPath, [join(import.meta.dirname, 'abuse-attacker.js'), JSON.stringify(spec)]) });
    await new Promise((r) => setTimeout(r, RAMP_MS));
  }
  const linesBefore = b.lines();
  const denialsBefore = await metricTotal(b.adminPort, 'trellis_policy_denials_total');
  const reconnectsBefore = b.probe.reconnects;
  const cpuBefore = readProcessStats(b.target.pid).cpuSeconds;
  const attackerCpuBefore = attacker === undefined ? 0 : cpuSecondsOf(attacker);
  const wallBefore = performance.now();
  const { latencies, failed, errors } = await measure(b.probe, b.authority, b.rate, b.seconds);
  const wallSeconds = (performance.now() - wallBefore) / 1000;
  if (!b.target.running) throw new Error(`the target sidecar died during "${name}": ${b.target.describeExit()}`);
  const targetCpu = (readProcessStats(b.target.pid).cpuSeconds - cpuBefore) / wallSeconds;
  // An attacker that finished (or died) early is measured up to its exit: NaN, printed as such.
  const attackerCpu = attacker === undefined ? 0 : (cpuSecondsOf(attacker) - attackerCpuBefore) / wallSeconds;
  const denials = (await metricTotal(b.adminPort, 'trellis_policy_denials_total')) - denialsBefore;
  const sessions = await metric(b.adminPort, 'trellis_tunnel_sessions');
  const handshakes = await metric(b.adminPort, 'trellis_tunnel_handshakes_pending');
  const rssMiB = readProcessStats(b.target.pid).rssBytes / 1_048_576;
  const fresh = callerSession(b.tunnelPort, b.caller, b.bundlePem);
  const newCaller = await exchange(fresh, b.authority).then((ms) => `yes (${ms.toFixed(1)} ms)`, (err: Error) => `NO (${err.message})`);
  fresh.destroy();
  await attacker?.stop();
  const attackerStats = attacker === undefined ? '' : attacker.stdout().trim().split('\n').at(-1) ?? '';
  if (attack !== undefined) await new Promise((r) => setTimeout(r, SETTLE_MS));
  return { targetCpu, attackerCpu, denials, reconnects: b.probe.reconnects - reconnectsBefore, phase: name, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99), completed: latencies.length, failed, sessions, handshakes, rssMiB, newCaller, warnLines: b.lines() - linesBefore, attacker: attackerStats, errors: [...errors].map(([k, v]) => `${k} ×${v}`).join(', ') };
}

function abuseReport(b: Bench, results: readonly PhaseResult[], afterSessions: number, pin: boolean): string {
  const base = results[0] as PhaseResult;
  const out: string[] = ['', `Abuse benchmark: target sidecar pid ${b.target.pid}, Node ${process.version}, caller at ${b.rate}/s for ${b.seconds} s per phase (loopback; ${pin ? 'target and caller on CPU 0, attacker on CPU 1' : 'target, caller and attacker share every CPU'}; figures are noisy)`, ''];
  out.push('| phase | caller p50 ms | caller p99 ms | p99 vs baseline | ok / failed | caller reconnects | sessions open | handshakes pending | target CPU % | attacker CPU % | target RSS MiB | new allowed caller | denials counted | warn lines |');
  out.push('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of results) out.push(`| ${r.phase} | ${r.p50Ms.toFixed(2)} | ${r.p99Ms.toFixed(2)} | ${(r.p99Ms / base.p99Ms).toFixed(2)}× | ${r.completed} / ${r.failed} | ${r.reconnects} | ${r.sessions} | ${r.handshakes} | ${(r.targetCpu * 100).toFixed(0)} | ${(r.attackerCpu * 100).toFixed(0)} | ${r.rssMiB.toFixed(1)} | ${r.newCaller} | ${r.denials} | ${r.warnLines} |`);
  for (const r of results) if (r.errors !== '') out.push(`Caller failures in ${r.phase}: ${r.errors}`);
  out.push('', 'Attacker, per attack (opened: sessions or connections; closedByTarget: of those, closed by the target while it ran):');
  for (const r of results) if (r.attacker !== '') out.push(`  ${r.phase}: ${r.attacker}`);
  out.push('', `Sessions open on the target ${SETTLE_MS / 1000} s after the last attack: ${afterSessions}`, '');
  return out.join('\n');
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:abuse failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});

/** `taskset` (util-linux) on PATH: pinning needs it. */
function hasTaskset(): boolean {
  try {
    execFileSync('taskset', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
