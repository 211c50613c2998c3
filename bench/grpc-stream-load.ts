#!/usr/bin/env node
/**
 * The load generator of the gRPC streaming scenarios: a real `@grpc/grpc-js` client in its own process
 * (the runner measures the sidecars' CPU, so the client must not share their process or the runner's),
 * `connections` channels of their own (no shared subchannel pool) × `streams` concurrent calls each.
 *
 * - `server-stream`: each worker makes call after call of `/bench.Stream/ServerStream` until the run's
 *   end; a call counts only if it ends OK with every message (`GRPC_SERVER_STREAM_MESSAGES`). Latency is
 *   per call, from the request to the status.
 * - `bidi`: each worker holds one `/bench.Stream/Bidi` call for the whole run and plays ping-pong on it:
 *   one message out, wait for its echo, next. Latency is per message (the round trip), so this is the
 *   figure a chatty bidirectional stream sees; a failed call is counted and replaced by a new one.
 *
 * Throughput is in messages received (what the report calls requests) and payload bytes received; a
 * status other than OK is an error (DEADLINE_EXCEEDED a timeout). Prints one JSON line (`GrpcLoadResult`).
 *
 *   node dist/bench/grpc-stream-load.js --target HOST:PORT --mode server-stream|bidi --connections N --streams M --seconds S
 */
import { parseArgs } from 'node:util';
import { Client, credentials, status, type ServiceError, type StatusObject } from '@grpc/grpc-js';
import { isEntryPoint } from '../common/entry-point.js';
import { percentileOfSorted, type ErrorCounts, type LatencySummary } from './load-sample.js';
import { GRPC_BIDI_PATH, GRPC_MESSAGE_BYTES, GRPC_SERVER_STREAM_MESSAGES, GRPC_SERVER_STREAM_PATH, GRPC_STREAM_MODES, type GrpcStreamMode } from './grpc-stream-spec.js';

export interface GrpcLoadResult {
  readonly mode: GrpcStreamMode;
  readonly seconds: number;
  /** Messages received by calls that ended OK (server-stream) or echoes received (bidi). */
  readonly messages: number;
  readonly calls: number;
  /** Payload bytes of those messages (gRPC framing and HTTP/2 headers not counted). */
  readonly bytes: number;
  readonly latencyUs: LatencySummary;
  readonly errors: ErrorCounts;
  /** Failed calls by status (`14 UNAVAILABLE: first details`), so an error count can be explained. */
  readonly failures: readonly string[];
}

/** How long past the run's end a call may take before it is a timeout, not a slow success. */
const DEADLINE_SLACK_MS = 10_000;
const identity = (b: Buffer): Buffer => b;
const EMPTY = Buffer.alloc(0);
const PAYLOAD = Buffer.alloc(GRPC_MESSAGE_BYTES, 0x62);

class Tally {
  messages = 0;
  calls = 0;
  bytes = 0;
  timeouts = 0;
  failures = 0;
  readonly latencies: number[] = [];
  /** Per status code: how many, and the first call's details. */
  readonly byStatus = new Map<number, { count: number; details: string }>();

  fail(code: number, details: string): void {
    if (code === status.DEADLINE_EXCEEDED) this.timeouts++;
    else this.failures++;
    const seen = this.byStatus.get(code);
    if (seen === undefined) this.byStatus.set(code, { count: 1, details });
    else seen.count++;
  }

  describeFailures(): string[] {
    return [...this.byStatus].map(([code, { count, details }]) => `${count} × ${code} ${status[code] ?? ''}: ${details}`);
  }
}

function serverStreamWorker(client: Client, end: number, tally: Tally): Promise<void> {
  return new Promise((resolve) => {
    const next = (): void => {
      if (Date.now() >= end) return resolve();
      const started = performance.now();
      let received = 0;
      let bytes = 0;
      const call = client.makeServerStreamRequest(GRPC_SERVER_STREAM_PATH, identity, identity, EMPTY, { deadline: end + DEADLINE_SLACK_MS });
      call.on('data', (m: Buffer) => {
        received++;
        bytes += m.length;
      });
      call.on('error', () => undefined);
      call.on('status', (s: StatusObject) => {
        if (s.code === status.OK && received === GRPC_SERVER_STREAM_MESSAGES) {
          tally.calls++;
          tally.messages += received;
          tally.bytes += bytes;
          tally.latencies.push((performance.now() - started) * 1000);
        } else if (s.code === status.OK) tally.fail(status.DATA_LOSS, `call ended OK after ${received} of ${GRPC_SERVER_STREAM_MESSAGES} messages`);
        else tally.fail(s.code, s.details);
        next();
      });
    };
    next();
  });
}

function bidiWorker(client: Client, end: number, tally: Tally): Promise<void> {
  return new Promise((resolve) => {
    const open = (): void => {
      if (Date.now() >= end) return resolve();
      const call = client.makeBidiStreamRequest(GRPC_BIDI_PATH, identity, identity, { deadline: end + DEADLINE_SLACK_MS });
      let sentAt = performance.now();
      let failed = false;
      call.on('data', (m: Buffer) => {
        tally.latencies.push((performance.now() - sentAt) * 1000);
        tally.messages++;
        tally.bytes += m.length;
        if (Date.now() >= end) {
          call.end();
          return;
        }
        sentAt = performance.now();
        call.write(PAYLOAD);
      });
      call.on('error', (err: ServiceError) => {
        failed = true;
        tally.fail(err.code, err.details);
      });
      call.on('status', (s: StatusObject) => {
        if (s.code === status.OK) tally.calls++;
        else if (!failed) tally.fail(s.code, s.details);
        open();
      });
      call.write(PAYLOAD);
    };
    open();
  });
}

function summarizeLatencies(values: number[]): LatencySummary {
  const sorted = Float64Array.from(values).sort();
  let sum = 0;
  for (const v of sorted) sum += v;
  const none = sorted.length === 0;
  const pct = (p: number): number => (none ? Number.NaN : percentileOfSorted(sorted, p));
  return { p50: pct(50), p90: pct(90), p99: pct(99), p999: pct(99.9), mean: none ? Number.NaN : sum / sorted.length, max: none ? Number.NaN : (sorted[sorted.length - 1] as number) };
}

export interface GrpcLoadOptions {
  readonly target: string;
  readonly mode: GrpcStreamMode;
  readonly connections: number;
  readonly streams: number;
  readonly seconds: number;
}

export async function runGrpcStreamLoad(options: GrpcLoadOptions): Promise<GrpcLoadResult> {
  // Each client its own subchannel pool: `connections` HTTP/2 connections, as h2load's -c.
  const clients = Array.from({ length: options.connections }, () => new Client(options.target, credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }));
  const tally = new Tally();
  const started = performance.now();
  const end = Date.now() + options.seconds * 1000;
  const worker = options.mode === 'bidi' ? bidiWorker : serverStreamWorker;
  try {
    await Promise.all(clients.flatMap((client) => Array.from({ length: options.streams }, () => worker(client, end, tally))));
  } finally {
    for (const c of clients) c.close();
  }
  return {
    mode: options.mode,
    seconds: (performance.now() - started) / 1000,
    messages: tally.messages,
    calls: tally.calls,
    bytes: tally.bytes,
    latencyUs: summarizeLatencies(tally.latencies),
    errors: { connect: 0, read: 0, write: 0, timeout: tally.timeouts, other: tally.failures },
    failures: tally.describeFailures(),
  };
}

function positive(text: string | undefined, name: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be an integer ≥ 1, got ${String(text)}`);
  return n;
}

export function parseGrpcLoadArgs(argv: readonly string[]): GrpcLoadOptions {
  const { values } = parseArgs({
    args: [...argv],
    options: { target: { type: 'string' }, mode: { type: 'string' }, connections: { type: 'string' }, streams: { type: 'string' }, seconds: { type: 'string' } },
    strict: true,
  });
  if (values.target === undefined || !/^[^:\s]+:\d+$/.test(values.target)) throw new Error(`--target must be HOST:PORT, got ${String(values.target)}`);
  if (!(GRPC_STREAM_MODES as readonly string[]).includes(values.mode ?? '')) throw new Error(`--mode must be one of ${GRPC_STREAM_MODES.join(', ')}`);
  return { target: values.target, mode: values.mode as GrpcStreamMode, connections: positive(values.connections, 'connections'), streams: positive(values.streams, 'streams'), seconds: positive(values.seconds, 'seconds') };
}

if (isEntryPoint(import.meta.url)) {
  try {
    const result = await runGrpcStreamLoad(parseGrpcLoadArgs(process.argv.slice(2)));
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } catch (err) {
    process.stderr.write(`grpc-stream-load: ${(err as Error).message}\n`);
    process.exitCode = 1;
  }
}
