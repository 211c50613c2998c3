import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseStaticConfig } from '../../proxy/static-config.js';
import { configIssuesOf } from '../../common/config-issues.js';
import { DEFAULT_LIMITS } from '../../proxy/core/limits.js';

const ROOT = resolve(import.meta.dirname, '../..');

function issues(text: string): string[] {
  try {
    parseStaticConfig(text, '/etc/trellis/proxy.yaml');
  } catch (err) {
    return configIssuesOf(err).map((i) => `${i.line}:${i.column} ${i.path}: ${i.message}`);
  }
  return [];
}

const MINIMAL = 'service: web\nnamespace: shop\ntrustDomain: example.org\nidentity: { certificate: c.pem, key: k.pem, trustBundle: b.pem }\n';

describe('static proxy config', () => {
  it.each(['proxy-server.yaml', 'proxy-client.yaml'])('accepts the example %s', (name) => {
    const path = resolve(ROOT, 'deploy/examples', name);
    const config = parseStaticConfig(readFileSync(path, 'utf8'), path);
    expect(config.identity.certificate).toBe(resolve(ROOT, 'deploy/examples/certs', name === 'proxy-server.yaml' ? 'api.crt' : 'web.crt'));
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.upstreams)).toBe(true);
  });

  it('applies defaults and resolves paths from the file directory', () => {
    const config = parseStaticConfig(MINIMAL, '/etc/trellis/proxy.yaml');
    expect(config.identity).toEqual({ certificate: '/etc/trellis/c.pem', key: '/etc/trellis/k.pem', trustBundle: '/etc/trellis/b.pem' });
    expect(config.tunnel).toEqual({ address: '0.0.0.0', port: 15008 });
    expect(config.admin).toEqual({ address: '127.0.0.1', port: 15000 });
    expect(config.zone).toBe('default');
    expect(config.limits).toEqual(DEFAULT_LIMITS);
    expect(config.pool.sessionsPerEndpoint).toBe(2);
  });

  it('reads limits with durations and turns the admin port off', () => {
    const config = parseStaticConfig(`${MINIMAL}admin: { enabled: false }\nlimits: { handshakeTimeout: 3s, maxSessions: 10, streamWindowBytes: 2097152 }\n`, '/x.yaml');
    expect(config.admin).toBeNull();
    expect(config.limits.handshakeTimeoutMs).toBe(3_000);
    expect(config.limits.maxSessions).toBe(10);
    expect(config.limits.streamWindowBytes).toBe(2 * 1024 * 1024);
  });

  it('reports every error at once with line and column', () => {
    const found = issues(
      [
        'service: Web', // 1: not a DNS label
        'namespace: shop',
        'trustDomain: example.org',
        'identity: { certificate: c.pem, key: k.pem }', // 4: missing trustBundle
        'tunnel: { port: 70000 }', // 5: port out of range
        'limits: { handshakeTimeout: soon }', // 6: bad duration
        'upstreams:',
        '  - name: api',
        '    ports: [{ port: 80, protocol: h3 }]', // 9: unknown protocol
        '    endpoints: [{ address: 10.0.0.1 }]',
        'listeners:',
        '  - { localPort: 9000, service: api, port: 81 }', // 12: no such port
        'colour: blue', // 13: unknown field
      ].join('\n'),
    );
    expect(found).toHaveLength(7);
    expect(found).toEqual(expect.arrayContaining([
      expect.stringMatching(/^13:1 colour: unknown field/),
      expect.stringMatching(/^1:10 service: expected a DNS label/),
      expect.stringMatching(/^4:\d+ identity: missing required field "trustBundle"/),
      expect.stringMatching(/^5:17 tunnel.port: expected an integer from 0 to 65535/),
      expect.stringMatching(/^6:29 limits.handshakeTimeout: .*"soon" is not a duration/),
      expect.stringMatching(/^9:35 upstreams\[0\].ports\[0\].protocol: expected one of "tcp", "http", "http2", "grpc"/),
      expect.stringMatching(/^12:5 listeners\[0\]: upstream shop\/api has no port 81 \(it has 80\)/),
    ]));
  });

  it('refuses two listeners on one address and an app port listed twice', () => {
    const found = issues(
      `${MINIMAL}inbound:\n  appPorts: [{ port: 8080 }, { port: 8080 }]\nupstreams:\n  - { name: api, ports: [{ port: 80 }], endpoints: [] }\nlisteners:\n  - { localPort: 9000, service: api, port: 80 }\n  - { localPort: 9000, service: api, port: 80 }\n`,
    );
    expect(found.some((f) => f.includes('app port 8080 is listed twice'))).toBe(true);
    expect(found.some((f) => f.includes('127.0.0.1:9000 is used by two listeners'))).toBe(true);
  });
  it('reads per-port HTTP options (upgrade protocols, escaped slashes), frozen, and refuses h2c and non-http ports', () => {
    const config = parseStaticConfig(
      `${MINIMAL}inbound:\n  appPorts:\n    - { port: 8080, protocol: http, http: { upgradeProtocols: [websocket, tls], escapedSlashes: keep, pathParameters: keep } }\n    - { port: 8081, protocol: http }\n`,
      '/x.yaml',
    );
    const [first, second] = config.inbound.appPorts;
    expect(first?.http).toEqual({ upgradeProtocols: ['websocket', 'tls'], escapedSlashes: 'keep', pathParameters: 'keep' });
    expect(Object.isFrozen(first?.http)).toBe(true);
    expect(Object.isFrozen(first?.http?.upgradeProtocols)).toBe(true);
    expect(second?.http).toBeUndefined();
    const found = issues(
      `${MINIMAL}inbound:\n  appPorts:\n    - { port: 8080, protocol: http, http: { upgradeProtocols: [h2c, WebSocket], escapedSlashes: decode } }\n    - { port: 8081, http: {} }\n`,
    );
    expect(found.some((f) => /upgradeProtocols\[0\]: .*"h2c"/.test(f))).toBe(true);
    expect(found.some((f) => /upgradeProtocols\[1\]: .*"WebSocket"/.test(f))).toBe(true);
    expect(found.some((f) => /escapedSlashes: expected one of "reject", "keep"/.test(f))).toBe(true);
    expect(found.some((f) => /appPorts\[1\].http: HTTP options need protocol: http/.test(f))).toBe(true);
  });
});
