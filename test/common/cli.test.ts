import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { main } from '../../cli/main.js';

function capture(): { ctx: Parameters<typeof main>[1]; out: () => string; err: () => string } {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (c: Buffer) => (out += c.toString()));
  stderr.on('data', (c: Buffer) => (err += c.toString()));
  return { ctx: { stdout, stderr, env: {} }, out: () => out, err: () => err };
}

describe('trellis command', () => {
  it('lists its commands on --help and exits 0', async () => {
    const io = capture();
    expect(await main(['--help'], io.ctx)).toBe(0);
    expect(io.out()).toContain('Usage: trellis <command>');
  });

  it('refuses an unknown command with exit code 2', async () => {
    const io = capture();
    expect(await main(['frobnicate'], io.ctx)).toBe(2);
    expect(io.err()).toContain('unknown command "frobnicate"');
  });
});
