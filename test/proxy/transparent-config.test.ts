/**
 * Turning transparent capture on: the static config's `capture` section and upstream virtual IPs, and the
 * agent's flags (`--capture`, `--inbound-mode`, `--outside-mesh`, `--proxy-uid`), validated at the edge
 * with every problem reported together.
 */
import { describe, expect, it } from 'vitest';
import { becomeProxyUser, parseAgentArgs } from '../../cli/agent-run.js';
import { configIssuesOf } from '../../common/config-issues.js';
import { parseStaticConfig } from '../../proxy/static-config.js';

const MINIMAL = 'service: web\nnamespace: shop\ntrustDomain: example.org\nidentity: { certificate: c.pem, key: k.pem, trustBundle: b.pem }\n';

function issues(text: string): string[] {
  try {
    parseStaticConfig(text, '/etc/trellis/proxy.yaml');
  } catch (err) {
    return configIssuesOf(err).map((i) => `${i.line}:${i.column} ${i.path}: ${i.message}`);
  }
  return [];
}

describe('static config: capture', () => {
  it('is off unless configured', () => {
    expect(parseStaticConfig(MINIMAL, '/etc/trellis/proxy.yaml').capture).toBeNull();
  });

  it('applies the default ports and policy, and takes virtual IPs per upstream', () => {
    const config = parseStaticConfig(
      `${MINIMAL}inbound: { mode: permissive }\ncapture: {}\nupstreams:\n  - name: api\n    virtualIps: [10.96.0.10, "fd00::10"]\n    ports: [{ port: 80, targetPort: 8080 }]\n    endpoints: [{ address: 10.1.0.5 }]\n`,
      '/etc/trellis/proxy.yaml',
    );
    expect(config.capture).toEqual({ outbound: { address: '0.0.0.0', port: 15001 }, inbound: { address: '0.0.0.0', port: 15006 }, outsideMesh: 'passthrough' });
    expect(config.inbound.mode).toBe('permissive');
    expect(config.upstreams[0]?.virtualIps).toEqual(['10.96.0.10', 'fd00::10']);
    expect(Object.isFrozen(config.capture)).toBe(true);
  });

  it('reports every bad field with its position', () => {
    expect(issues(`${MINIMAL}capture:\n  outbound: { port: 70000 }\n  outsideMesh: allow\nupstreams:\n  - name: api\n    virtualIps: [api.internal]\n    ports: [{ port: 80 }]\n    endpoints: []\n`)).toEqual([
      expect.stringMatching(/^6:21 capture\.outbound\.port: /),
      expect.stringMatching(/^7:16 capture\.outsideMesh: expected one of "passthrough", "refuse"/),
      expect.stringMatching(/^10:18 upstreams\[0\]\.virtualIps\[0\]: expected an IP address, got "api\.internal"/),
    ]);
  });
});

describe('agent flags: capture', () => {
  const base = ['--control', 'https://10.0.0.1:15012', '--token-file', 't', '--service', 'web', '--app-port', '8080'];

  it('turns capture on with its modes, takes upstreams without a local port, and the proxy user', () => {
    const { config, proxyUser } = parseAgentArgs([...base, '--capture', 'transparent', '--inbound-mode', 'permissive', '--outside-mesh', 'refuse', '--upstream', 'orders', '--upstream', 'billing/invoices:9090', '--proxy-uid', '1337']);
    expect(config.capture).toEqual({ inboundMode: 'permissive', outsideMesh: 'refuse', outbound: { port: 15001 }, inbound: { port: 15006 } });
    expect(config.upstreams).toEqual([
      { service: 'orders', namespace: 'default', port: undefined, bindAddress: '127.0.0.1', localPort: undefined },
      { service: 'invoices', namespace: 'billing', port: 9090, bindAddress: '127.0.0.1', localPort: undefined },
    ]);
    expect(proxyUser).toEqual({ uid: 1337, gid: 1337 });
  });

  it('defaults to strict and passthrough, and is off without --capture', () => {
    expect(parseAgentArgs([...base, '--capture', 'transparent']).config.capture).toEqual({ inboundMode: 'strict', outsideMesh: 'passthrough', outbound: { port: 15001 }, inbound: { port: 15006 } });
    expect(parseAgentArgs([...base, '--capture', 'transparent', '--outbound-port', '16001']).config.capture?.outbound).toEqual({ port: 16001 });
    expect(parseAgentArgs(base).config.capture).toBeUndefined();
  });

  it('reports every capture problem at once', () => {
    expect(() => parseAgentArgs([...base, '--inbound-mode', 'open', '--outside-mesh', 'allow', '--upstream', 'orders', '--proxy-uid', 'proxy', '--proxy-gid', '1.5'])).toThrow(
      /--upstream "orders": .*NAME alone with --capture.*\n--inbound-mode is strict or permissive\n--outside-mesh is passthrough or refuse\n--inbound-mode and --outside-mesh .* need --capture transparent\n--proxy-uid: "proxy" is not a numeric id\n--proxy-gid: "1\.5" is not a numeric id/s,
    );
  });

  it('will not run the proxy as a user the redirect does not exempt', () => {
    const uid = process.getuid?.() ?? 0;
    const gid = process.getgid?.() ?? 0;
    // Already that user: nothing to do.
    expect(() => becomeProxyUser({ uid, gid })).not.toThrow();
    if (uid !== 0) expect(() => becomeProxyUser({ uid: uid + 1, gid })).toThrow(/start it as root/);
  });
});
