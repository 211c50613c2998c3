/**
 * Every command and subcommand answers -h and --help with exit 0 and a usage that lists every flag its
 * parser accepts, each with its default. Structural: each form's flag table both parses and prints the help
 * (cli/flag-spec.ts), and no command parses arguments any other way.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { commands } from '../../cli/commands.js';
import { absentText } from '../../cli/flag-spec.js';
import { runCli } from '../helpers/cli.js';

const CLI_DIR = join(dirname(fileURLToPath(import.meta.url)), '../../cli');

const forms = await Promise.all(
  commands.map(async (entry) => {
    const command = await entry.load();
    return Object.entries(command.forms).map(([sub, spec]) => ({ argv: [entry.name, ...sub.split(' ').filter((w) => w !== '')], spec }));
  }),
).then((all) => all.flat());

describe('trellis --help', () => {
  it('has a flag table for every command', async () => {
    for (const entry of commands) expect(Object.keys((await entry.load()).forms).length, entry.name).toBeGreaterThan(0);
  });

  it('knows the subcommands a new user tried (ca init, token create, control run)', () => {
    const names = forms.map((f) => f.argv.join(' '));
    for (const name of ['ca init', 'token create', 'control run', 'agent run', 'agent redirect', 'proxy run', 'injector run', 'explain', 'demo']) expect(names).toContain(name);
  });

  for (const { argv, spec } of forms) {
    for (const help of ['--help', '-h']) {
      it(`trellis ${argv.join(' ')} ${help}: exit 0, every flag with its default`, async () => {
        const { code, stdout, stderr } = await runCli([...argv, help]);
        expect(stderr).toBe('');
        expect(code).toBe(0);
        expect(stdout).toContain('Usage: trellis');
        for (const [name, flag] of Object.entries(spec.flags)) {
          const line = stdout.split('\n').findIndex((l) => new RegExp(`^\\s+(-\\w, )?--${name}\\b`).test(l));
          expect(line, `--${name} in the help of trellis ${argv.join(' ')}`).toBeGreaterThanOrEqual(0);
          // The default closes the flag's description (which may run over several lines).
          const rest = stdout.split('\n').slice(line).join('\n');
          expect(rest.indexOf(absentText(flag)), `default of --${name}`).toBeGreaterThanOrEqual(0);
          expect(absentText(flag)).toMatch(/^\((required|default )/);
        }
      });
    }
  }

  it('refuses a flag that is not in the table with exit 2 and the help', async () => {
    const { code, stderr } = await runCli(['ca', 'init', '--dir', '/nonexistent', '--frobnicate']);
    expect(code).toBe(2);
    expect(stderr).toContain("Unknown option '--frobnicate'");
    expect(stderr).toContain('Usage: trellis ca init');
  });

  it('answers --help even among other flags, and writes nothing', async () => {
    const { code, stdout } = await runCli(['ca', 'init', '--dir', '/nonexistent/ca', '--trust-domain', 'example.org', '--help']);
    expect(code).toBe(0);
    expect(stdout).toContain('Usage: trellis ca init');
  });

  it('has no command parsing its arguments outside its flag table', () => {
    for (const file of readdirSync(CLI_DIR).filter((f) => f.endsWith('.ts') && f !== 'flag-spec.ts')) {
      expect(readFileSync(join(CLI_DIR, file), 'utf8'), file).not.toMatch(/from 'node:util'|\bparseArgs\(/);
    }
  });
});
