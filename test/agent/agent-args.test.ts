/**
 * `trellis agent run` flags: validated at the edge, every problem reported at once, frozen config.
 */
import { describe, expect, it } from 'vitest';
import { parseAgentArgs } from '../../cli/agent-run.js';

const base = ['--control', 'https://10.0.0.5:15012', '--token-file', 't', '--service', 'orders', '--app-port', '8080'];

describe('trellis agent run arguments', () => {
  it('applies the defaults', () => {
    const { config } = parseAgentArgs(base);
    expect(config).toMatchObject({
      service: 'orders', namespace: 'default', appPorts: [{ host: '127.0.0.1', port: 8080, protocol: 'tcp' }],
      tunnel: { host: '0.0.0.0', port: 15008 }, admin: { host: '127.0.0.1', port: 15000 }, dataDir: undefined, drainGraceMs: 10_000,
      healthCheck: { kind: 'tcp', port: 8080, intervalMs: 5_000 },
    });
    expect(Object.isFrozen(config)).toBe(true);
  });

  it('reads upstreams in every form', () => {
    const { config } = parseAgentArgs([...base, '--namespace', 'shop', '--upstream', 'payments=7001', '--upstream', 'billing/invoices:9090=127.0.0.2:7002', '--health-check', 'http:/healthz', '--protocol', 'http', '--admin', 'off']);
    expect(config.upstreams).toEqual([
      { service: 'payments', namespace: 'shop', port: undefined, bindAddress: '127.0.0.1', localPort: 7001 },
      { service: 'invoices', namespace: 'billing', port: 9090, bindAddress: '127.0.0.2', localPort: 7002 },
    ]);
    expect(config.healthCheck).toMatchObject({ kind: 'http', path: '/healthz' });
    expect(config.admin).toBeNull();
  });

  it('subscribes to every mesh service under capture: by default, with *, or with NS/* beside named upstreams', () => {
    const all = { service: '*', namespace: '*', port: undefined, bindAddress: '127.0.0.1', localPort: undefined };
    expect(parseAgentArgs([...base, '--capture', 'transparent']).config.upstreams).toEqual([all]);
    expect(parseAgentArgs([...base, '--capture', 'transparent', '--upstream', '*']).config.upstreams).toEqual([all]);
    // Naming upstreams replaces the default: the agent then learns only those.
    expect(parseAgentArgs([...base, '--capture', 'transparent', '--upstream', 'bank/*', '--upstream', 'payments=7001']).config.upstreams).toEqual([
      { ...all, namespace: 'bank' },
      { service: 'payments', namespace: 'default', port: undefined, bindAddress: '127.0.0.1', localPort: 7001 },
    ]);
    expect(parseAgentArgs([...base, '--capture', 'transparent', '--upstream', 'payments']).config.upstreams.map((u) => u.service)).toEqual(['payments']);
    // Explicit mode has no wildcard default.
    expect(parseAgentArgs(base).config.upstreams).toEqual([]);
  });

  it('refuses a wildcard upstream without capture, and a wildcard in a bad namespace', () => {
    expect(() => parseAgentArgs([...base, '--upstream', '*'])).toThrow(/--upstream "\*": a wildcard needs --capture transparent/);
    expect(() => parseAgentArgs([...base, '--capture', 'transparent', '--upstream', 'Bad_NS/*'])).toThrow(/--upstream "Bad_NS\/\*"/);
    expect(() => parseAgentArgs([...base, '--capture', 'transparent', '--upstream', '*=7001'])).toThrow(/--upstream "\*=7001"/);
  });

  it('takes --export / --no-export as the workload\'s word, none by default, and refuses both at once', () => {
    expect(parseAgentArgs(base).config.export).toBeUndefined();
    expect(parseAgentArgs([...base, '--export']).config.export).toBe(true);
    expect(parseAgentArgs([...base, '--no-export']).config.export).toBe(false);
    expect(() => parseAgentArgs([...base, '--export', '--no-export'])).toThrow(/--export and --no-export exclude each other/);
  });

  it('takes --subzone as the endpoint label callers read, agreeing with a --label of it, and refuses a malformed one', () => {
    expect(parseAgentArgs([...base, '--subzone', 'us-east-1a', '--label', 'version=v2']).config.labels).toEqual({ version: 'v2', 'trellis.dev/subzone': 'us-east-1a' });
    expect(parseAgentArgs([...base, '--subzone', 'rack-7', '--label', 'trellis.dev/subzone=rack-7']).config.labels).toEqual({ 'trellis.dev/subzone': 'rack-7' });
    expect(() => parseAgentArgs([...base, '--subzone', 'rack-7', '--label', 'trellis.dev/subzone=rack-8'])).toThrow(/--subzone rack-7 and --label trellis.dev\/subzone=rack-8 disagree/);
    expect(() => parseAgentArgs([...base, '--subzone', 'rack 7'])).toThrow(/--subzone "rack 7": expected a Kubernetes label value/);
    expect(() => parseAgentArgs([...base, '--subzone', ''])).toThrow(/--subzone "": expected/);
  });

  it('reports every problem at once', () => {
    expect(() => parseAgentArgs(['--control', 'http://x', '--service', 'Orders!', '--app-port', '0', '--protocol', 'udp', '--upstream', 'nope', '--tunnel', 'x'])).toThrow(
      /--control must be an https:\/\/ URL\n--service is required.*\n--app-port "0": expected a port.*\n--protocol "udp": expected tcp, http, http2, grpc\n--token-file is required.*\n--upstream "nope".*\n--tunnel: "x" is not HOST:PORT/s,
    );
  });
});
