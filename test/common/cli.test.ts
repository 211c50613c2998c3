import { describe, expect, it } from 'vitest';
import { main } from '../../cli/main.js';
import { captureCli, type CapturedCli } from '../helpers/cli.js';

const capture = (): CapturedCli => captureCli();

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
