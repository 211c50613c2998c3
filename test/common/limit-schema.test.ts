/**
 * The limits schema: the generic machinery (common/limit-schema.ts), its use at each edge (a static
 * config's YAML, the agent's and the control plane's flags, the injector's config), and the doc table in
 * docs/operations.md, which must be exactly what the schemas say (UPDATE_LIMIT_DOCS=1 rewrites it).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkLimit, defineLimits, formatLimit, limitDefaults, limitFromText, limitTable, withOverrides, type LimitSchema } from '../../common/limit-schema.js';
import { ADMIN_HTTP_LIMIT_SCHEMA } from '../../common/admin-http.js';
import { configIssuesOf } from '../../common/config-issues.js';
import { APP_POOL_LIMIT_SCHEMA, H2C_POOL_LIMIT_SCHEMA, CAPTURE_LIMIT_SCHEMA, DEFAULT_LIMITS, LANE_LIMIT_SCHEMA, OUTBOUND_HTTP_LIMIT_SCHEMA, PROXY_LIMIT_SCHEMA, resolveLimits, TRANSPARENT_LIMIT_SCHEMA } from '../../proxy/core/limits.js';
import { parseStaticConfig } from '../../proxy/static-config.js';
import { AGENT_LIMIT_SCHEMA, APP_PROBE_LIMIT_SCHEMA, STATUS_LIMIT_SCHEMA } from '../../agent/limits.js';
import { CONTROL_LIMIT_SCHEMA } from '../../control/limits.js';
import { INJECTOR_LIMIT_SCHEMA } from '../../injector/limits.js';
import { createInjectorConfig } from '../../injector/config.js';
import { parseAgentArgs } from '../../cli/agent-run.js';

const ROOT = resolve(import.meta.dirname, '../..');
const DOC = resolve(ROOT, 'docs/operations.md');

const SECTIONS: readonly (readonly [string, LimitSchema])[] = [
  ['Sidecar (`limits:` in a static proxy config)', PROXY_LIMIT_SCHEMA],
  ['Outbound HTTP listener', OUTBOUND_HTTP_LIMIT_SCHEMA],
  ['HTTP lanes', LANE_LIMIT_SCHEMA],
  ['Inbound app connection pool', APP_POOL_LIMIT_SCHEMA],
  ['Inbound h2c app connection pool (`http2`, `grpc` ports)', H2C_POOL_LIMIT_SCHEMA],
  ['Inbound capture (15006)', CAPTURE_LIMIT_SCHEMA],
  ['Outbound capture (15001)', TRANSPARENT_LIMIT_SCHEMA],
  ['Admin ports (sidecar, agent, control plane, injector)', ADMIN_HTTP_LIMIT_SCHEMA],
  ['Agent', AGENT_LIMIT_SCHEMA],
  ["Agent's status port (`--status`)", STATUS_LIMIT_SCHEMA],
  ['App probes file (`--app-probes`)', APP_PROBE_LIMIT_SCHEMA],
  ['Control plane', CONTROL_LIMIT_SCHEMA],
  ['Injector', INJECTOR_LIMIT_SCHEMA],
];

const BEGIN = '<!-- limits: generated from the schemas by test/common/limit-schema.test.ts -->';
const END = '<!-- limits: end -->';

function renderLimitDocs(): string {
  return SECTIONS.map(([title, schema]) => `#### ${title}\n\n${limitTable(schema)}\n`).join('\n');
}

const MINIMAL = 'service: web\nnamespace: shop\ntrustDomain: example.org\nidentity: { certificate: c.pem, key: k.pem, trustBundle: b.pem }\n';

function issues(text: string): string[] {
  try {
    parseStaticConfig(text, '/etc/trellis/proxy.yaml');
  } catch (err) {
    return configIssuesOf(err).map((i) => `${i.line}:${i.column} ${i.path}: ${i.message}`);
  }
  return [];
}

describe('limit schema', () => {
  it('the doc table in docs/operations.md is the one the schemas give', () => {
    const text = readFileSync(DOC, 'utf8');
    const start = text.indexOf(BEGIN);
    const end = text.indexOf(END);
    expect(start).toBeGreaterThan(0);
    expect(end).toBeGreaterThan(start);
    const expected = `${BEGIN}\n\n${renderLimitDocs()}\n${END}`;
    const actual = text.slice(start, end + END.length);
    if (actual !== expected && process.env.UPDATE_LIMIT_DOCS === '1') writeFileSync(DOC, text.slice(0, start) + expected + text.slice(end + END.length));
    else expect(actual).toBe(expected);
  });

  it('every default lies within its bounds and every limit has a doc line', () => {
    for (const [title, schema] of SECTIONS) {
      for (const [name, spec] of Object.entries(schema)) {
        expect(spec.doc.length, `${title}: ${name}`).toBeGreaterThan(10);
        expect(spec.default >= spec.min && spec.default <= spec.max, `${title}: ${name}`).toBe(true);
        expect(Object.isFrozen(spec)).toBe(true);
      }
    }
    expect(() => defineLimits({ x: { default: 0, min: 1, max: 2, unit: 'count', doc: 'a limit out of its bounds' } })).toThrow(/x: default 0 is outside 1..2/);
  });

  it('merges overrides into defaults once: undefined keeps the default, the result is frozen', () => {
    const merged = withOverrides(DEFAULT_LIMITS, { maxSessions: 3, idleTimeoutMs: undefined });
    expect(merged.maxSessions).toBe(3);
    expect(merged.idleTimeoutMs).toBe(DEFAULT_LIMITS.idleTimeoutMs);
    expect(Object.isFrozen(merged)).toBe(true);
    expect(resolveLimits()).toEqual(limitDefaults(PROXY_LIMIT_SCHEMA));
  });

  it('a flag is checked against its bounds, naming the flag and the bound', () => {
    expect(limitFromText('90s', CONTROL_LIMIT_SCHEMA.pingIntervalMs, '--ping-interval')).toBe(90_000);
    expect(() => limitFromText('1h', CONTROL_LIMIT_SCHEMA.pingIntervalMs, '--ping-interval')).toThrow('--ping-interval: must be from 100ms to 10m, got 1h');
    expect(() => limitFromText('50ms', CONTROL_LIMIT_SCHEMA.pingIntervalMs, '--ping-interval')).toThrow(expect.objectContaining({ code: 'TRELLIS_LIMIT_INVALID' }));
    expect(() => limitFromText('ten', STATUS_LIMIT_SCHEMA.maxConnections, '--x')).toThrow('--x: "ten" is not a whole number');
    expect(limitFromText('12h', INJECTOR_LIMIT_SCHEMA.tokenExpirationSeconds, '--token-ttl')).toBe(43_200);
    expect(() => limitFromText('2d', INJECTOR_LIMIT_SCHEMA.tokenExpirationSeconds, '--token-ttl')).toThrow('--token-ttl: must be from 10m to 1d, got 2d');
  });

  it("the agent's duration flags keep their bounds", () => {
    const base = ['--control', 'https://127.0.0.1:15012', '--token-file', '/dev/null', '--service', 'web', '--app-port', '8080'];
    expect(parseAgentArgs([...base, '--drain-grace', '2s']).config.drainGraceMs).toBe(2_000);
    expect(() => parseAgentArgs([...base, '--health-interval', '10ms', '--drain-grace', '2h'])).toThrow(/--health-interval: must be from 100ms to 1h, got 10ms\n--drain-grace: must be from 1ms to 1h, got 2h/);
  });

  it("the injector's config names the field and the bound", () => {
    const problems: string[] = [];
    expect(checkLimit('readyWaitSeconds', INJECTOR_LIMIT_SCHEMA.readyWaitSeconds, 7_200, problems)).toBe(120);
    expect(problems).toEqual(['readyWaitSeconds: 7200 must be a whole number from 1 to 3600 (seconds)']);
    expect(() => createInjectorConfig({ image: 'i', controlUrl: 'https://c', trustBundlePem: '-----BEGIN CERTIFICATE-----', readyWaitSeconds: 1.5 })).toThrow(/readyWaitSeconds: 1.5 must be a whole number from 1 to 3600/);
  });

  it('a static config reports a limit beyond its bound at file:line:column', () => {
    const found = issues(`${MINIMAL}limits:\n  maxSessions: 0\n  idleTimeout: 30d\n  sessionWindowBytes: 100\n  maxSessionMemoryMb: 4\n`);
    expect(found.sort()).toEqual([
      '6:16 limits.maxSessions: expected an integer from 1 to 1000000, got 0',
      '7:16 limits.idleTimeout: must be from 1ms to 24d, got 30d',
      '8:23 limits.sessionWindowBytes: expected an integer from 1024 to 2147483647, got 100',
      '9:3 limits.maxSessionMemoryMb: unknown field',
    ]);
  });

  it('formats limits the way the doc table shows them', () => {
    expect(formatLimit(16 * 1024, 'bytes')).toBe('16 KiB');
    expect(formatLimit(1500, 'bytes')).toBe('1,500 bytes');
    expect(formatLimit(90_000, 'ms')).toBe('90s');
    expect(formatLimit(250, 'ms')).toBe('250ms');
    expect(formatLimit(43_200, 's')).toBe('12h');
    expect(formatLimit(20_000, 'count')).toBe('20,000');
  });
});
