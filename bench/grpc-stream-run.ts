/**
 * The runner's side of the gRPC streaming scenarios: starts the grpc-js load generator
 * (bench/grpc-stream-load.ts) in its own process, as wrk and h2load are, and turns its one JSON line into
 * a LoadSample: messages stand where requests stand for the other tools, so the report's req/s is
 * messages/s and its CPU µs/req is CPU per message.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MIB, type LoadSample } from './load-sample.js';
import type { GrpcLoadOptions, GrpcLoadResult } from './grpc-stream-load.js';
import type { ProcessGroup } from './processes.js';

/**
 * A built script of dist/bench/: next to this file under `npm run bench`; tests run the TypeScript source
 * of bench/, whose built twin is in dist/bench/ (`npm run build` first, as for the CLI).
 */
function builtBenchScript(name: string): string {
  const here = dirname(fileURLToPath(import.meta.url));
  return here.endsWith(join('dist', 'bench')) ? join(here, name) : join(here, '..', 'dist', 'bench', name);
}

export const grpcLoadScript = (): string => builtBenchScript('grpc-stream-load.js');
export const grpcServerScript = (): string => builtBenchScript('grpc-stream-server.js');

export function grpcLoadArgs(script: string, options: GrpcLoadOptions): string[] {
  return [script, '--target', options.target, '--mode', options.mode, '--connections', String(options.connections), '--streams', String(options.streams), '--seconds', String(options.seconds)];
}

/** JSON has no NaN: a run that completed nothing prints null latencies, which read back as NaN ("—"). */
const num = (v: unknown): number => (typeof v === 'number' ? v : Number.NaN);

export function parseGrpcLoadOutput(stdout: string): GrpcLoadResult {
  const line = stdout.trim().split('\n').at(-1) ?? '';
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    throw new Error(`the gRPC load generator printed no result line:\n${stdout.slice(-2000)}`);
  }
  const r = parsed as Partial<Record<keyof GrpcLoadResult, unknown>>;
  const lat = r.latencyUs as Record<string, unknown> | undefined;
  const err = r.errors as Record<string, unknown> | undefined;
  if (typeof r.seconds !== 'number' || typeof r.messages !== 'number' || typeof r.bytes !== 'number' || typeof r.calls !== 'number' || lat === undefined || err === undefined) {
    throw new Error(`the gRPC load generator's result line lacks a field: ${line.slice(0, 500)}`);
  }
  return {
    mode: r.mode as GrpcLoadResult['mode'],
    seconds: r.seconds,
    messages: r.messages,
    calls: r.calls,
    bytes: r.bytes,
    latencyUs: { p50: num(lat.p50), p90: num(lat.p90), p99: num(lat.p99), p999: num(lat.p999), mean: num(lat.mean), max: num(lat.max) },
    errors: { connect: num(err.connect), read: num(err.read), write: num(err.write), timeout: num(err.timeout), other: num(err.other) },
    failures: Array.isArray(r.failures) ? r.failures.map(String) : [],
  };
}

export function grpcLoadSample(result: GrpcLoadResult, command: readonly string[]): LoadSample {
  const s = result.seconds;
  return {
    tool: 'grpc-js',
    command,
    seconds: s,
    requests: result.messages,
    bytes: result.bytes,
    requestsPerSecond: s > 0 ? result.messages / s : 0,
    mebibytesPerSecond: s > 0 ? result.bytes / MIB / s : 0,
    latencyUs: result.latencyUs,
    errors: result.errors,
    // gRPC failures are statuses, counted in errors; no HTTP status reaches the client.
    non2xx: 0,
    ...(result.failures.length === 0 ? {} : { notes: result.failures.map((f) => `failed calls: ${f}`) }),
  };
}

export async function runGrpcStream(group: ProcessGroup, options: GrpcLoadOptions): Promise<LoadSample> {
  const args = grpcLoadArgs(grpcLoadScript(), options);
  const proc = await group.run({ name: 'grpc load', command: process.execPath, args }, (options.seconds + 30) * 1000);
  const info = await proc.exited;
  if (info.code !== 0) throw new Error(`the gRPC load generator failed: ${proc.describeExit()}`);
  return grpcLoadSample(parseGrpcLoadOutput(proc.stdout()), [process.execPath, ...args]);
}
