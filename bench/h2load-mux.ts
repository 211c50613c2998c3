/**
 * h2load over h2c (prior knowledge) as fast as it goes: `-c` connections × `-m` concurrent streams each,
 * the load of the HTTP/2 scenarios. With `grpc`, every request is a gRPC unary call: POST with
 * `content-type: application/grpc`, `te: trailers` and one length-prefixed message as the body (h2load
 * `-d`). Latency percentiles come from the `--log-file` as for the fixed-rate scenario (bench/h2load.ts).
 */
import { readFile, rm, writeFile } from 'node:fs/promises';
import type { ProcessGroup } from './processes.js';
import type { LoadSample } from './load-sample.js';
import { h2loadSample } from './h2load.js';

export interface H2loadMuxOptions {
  readonly url: string;
  readonly clients: number;
  readonly streams: number;
  readonly seconds: number;
  readonly logFile: string;
  readonly grpc: boolean;
  /** Where the gRPC request body is written. */
  readonly dataFile: string;
}

/** One gRPC message: flag 0, length 13, then field 1 (string) "hello, mesh". */
export const GRPC_REQUEST = Buffer.concat([Buffer.from([0, 0, 0, 0, 13]), Buffer.from([0x0a, 11]), Buffer.from('hello, mesh')]);

export function h2loadMuxArgs(options: H2loadMuxOptions): string[] {
  const grpc = options.grpc ? ['-d', options.dataFile, '-H', 'content-type: application/grpc', '-H', 'te: trailers'] : [];
  return ['-t', '1', '-c', String(options.clients), '-m', String(options.streams), '-D', String(options.seconds), '-T', '5', '--log-file', options.logFile, ...grpc, options.url];
}

export async function runH2loadMux(group: ProcessGroup, options: H2loadMuxOptions): Promise<LoadSample> {
  await rm(options.logFile, { force: true });
  if (options.grpc) await writeFile(options.dataFile, GRPC_REQUEST);
  const args = h2loadMuxArgs(options);
  const proc = await group.run({ name: 'h2load', command: 'h2load', args }, (options.seconds + 30) * 1000);
  const info = await proc.exited;
  if (info.code !== 0) throw new Error(`h2load failed: ${proc.describeExit()}`);
  return h2loadSample(proc.stdout(), await readFile(options.logFile, 'utf8'), ['h2load', ...args]);
}
