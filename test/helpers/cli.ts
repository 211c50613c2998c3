/**
 * Running the `trellis` command in-process for CLI tests: `main` with captured standard output and error,
 * and an environment of the test's choosing (nothing leaks in from the test runner's own).
 */
import { PassThrough } from 'node:stream';
import { main } from '../../cli/main.js';

export interface CapturedCli {
  readonly ctx: Parameters<typeof main>[1];
  out(): string;
  err(): string;
}

export function captureCli(env: Record<string, string> = {}): CapturedCli {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (c: Buffer) => (out += c.toString()));
  stderr.on('data', (c: Buffer) => (err += c.toString()));
  return { ctx: { stdout, stderr, env }, out: () => out, err: () => err };
}

export interface CliRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `trellis ARGV...` to completion and returns its exit code and output. */
export async function runCli(argv: readonly string[], env: Record<string, string> = {}): Promise<CliRun> {
  const captured = captureCli(env);
  const code = await main([...argv], captured.ctx);
  return { code, stdout: captured.out(), stderr: captured.err() };
}
