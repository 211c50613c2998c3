/**
 * The agent's Kubernetes-mode flags: several `--app-port P --protocol X` pairs, no app port at all,
 * `--status`, `--app-probes`; every problem reported at once, as bad input (exit 2).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseAgentArgs } from '../../cli/agent-run.js';
import { appPortsFromFlags, type PortFlag } from '../../agent/app-port-list.js';

const base = ['--control', 'https://10.0.0.5:15012', '--token-file', 't', '--service', 'orders'];
const dir = mkdtempSync(join(tmpdir(), 'trellis-k8s-flags-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function problemsOf(argv: string[]): string {
  try {
    parseAgentArgs(argv);
  } catch (err) {
    expect((err as { code: string }).code).toBe('TRELLIS_CLI_USAGE');
    expect((err as { side: string }).side).toBe('input');
    return (err as Error).message.split('\n\n')[0] as string;
  }
  throw new Error('no error');
}

describe('app ports', () => {
  it('pairs each --protocol with the --app-port before it; a port without one is tcp', () => {
    const { config } = parseAgentArgs([...base, '--app-port', '8080', '--protocol', 'http', '--app-port', '9090', '--app-port', '9000', '--protocol', 'tcp', '--app-port', '8081', '--protocol', 'http']);
    expect(config.appPorts.map((p) => `${p.port}/${p.protocol}`)).toEqual(['8080/http', '9090/tcp', '9000/tcp', '8081/http']);
    expect(config.healthCheck?.port).toBe(8080);
    expect(Object.isFrozen(config.appPorts)).toBe(true);
  });

  it('takes one port and one protocol in either order', () => {
    expect(parseAgentArgs([...base, '--protocol', 'http', '--app-port', '8080']).config.appPorts).toEqual([{ port: 8080, protocol: 'http', host: '127.0.0.1' }]);
    expect(parseAgentArgs([...base, '--app-port=8080', '--protocol=http', '--app-host', '10.1.2.3']).config.appPorts).toEqual([{ port: 8080, protocol: 'http', host: '10.1.2.3' }]);
  });

  it('runs with no app port at all: nothing to serve, nothing to health-check', () => {
    const { config } = parseAgentArgs(base);
    expect(config.appPorts).toEqual([]);
    expect(config.healthCheck).toBeNull();
  });

  it('reports every problem with ports at once', () => {
    const flags: PortFlag[] = [
      { name: 'protocol', value: 'http' },
      { name: 'app-port', value: '8080' },
      { name: 'protocol', value: 'http' },
      { name: 'protocol', value: 'tcp' },
      { name: 'app-port', value: '70000' },
      { name: 'app-port', value: '8080' },
      { name: 'protocol', value: 'udp' },
    ];
    const problems: string[] = [];
    const ports = appPortsFromFlags(flags, '127.0.0.1', problems);
    expect(problems).toEqual([
      '--protocol http comes before any --app-port: write each --protocol after its --app-port',
      '--app-port 8080 has two --protocol flags (http, tcp)',
      '--app-port "70000": expected a port number 1-65535',
      '--protocol "udp": expected tcp, http, http2, grpc',
      '--app-port 8080 is given twice',
    ]);
    expect(ports).toEqual([{ port: 8080, protocol: 'http', host: '127.0.0.1' }]);
    const lone: string[] = [];
    appPortsFromFlags([{ name: 'protocol', value: 'http' }], '127.0.0.1', lone);
    expect(lone).toEqual(['--protocol needs an --app-port to apply to']);
    const many: string[] = [];
    appPortsFromFlags(Array.from({ length: 65 }, (_, i) => ({ name: 'app-port' as const, value: String(1000 + i) })), '127.0.0.1', many);
    expect(many).toEqual(['at most 64 --app-port flags']);
  });
});

describe('the status port and the app probes', () => {
  it('is off by default, and serves the probes of --app-probes when on', () => {
    expect(parseAgentArgs(base).config.status).toBeNull();
    const file = join(dir, 'probes.json');
    writeFileSync(file, JSON.stringify({ '/app-health/web/readyz': { kind: 'tcp', port: 8080, timeoutSeconds: 2 } }));
    const { config } = parseAgentArgs([...base, '--app-port', '8080', '--status', '0.0.0.0:15020', '--app-probes', file]);
    expect(config.status).toEqual({ host: '0.0.0.0', port: 15020 });
    expect(config.appProbes.get('/app-health/web/readyz')).toEqual({ kind: 'tcp', port: 8080, host: undefined, timeoutMs: 2_000 });
  });

  it('reports the status, probe and health-check problems together with the rest', () => {
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, '{"/app-health/web/livez": {"kind": "exec"}}');
    const text = problemsOf(['--control', 'https://c:15012', '--token-file', 't', '--service', 'orders', '--app-probes', bad, '--health-check', 'http:/x']);
    expect(text.split('\n')[0]).toBe('--health-check needs an --app-port to check');
    expect(text).toContain('--app-probes needs --status');
    expect(text).toContain('"/app-health/web/livez".kind');
    expect(problemsOf([...base, '--status', 'nowhere'])).toContain('--status: "nowhere" is not HOST:PORT');
  });

  it('names an unknown flag as bad input, with the usage', () => {
    expect(problemsOf([...base, '--no-such-flag'])).toMatch(/Unknown option '--no-such-flag'/);
  });
});
