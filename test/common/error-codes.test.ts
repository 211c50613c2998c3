/**
 * The error registry (common/error-codes.ts) is the only place a `TRELLIS_*` code is spelled out: every
 * entry is well formed and unique, statuses come from it, and a scan of the sources fails when a file
 * spells a code as a string literal instead of importing it.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CODE, ERRORS, allErrorCodes, errorCodeInfo, httpStatusOf } from '../../common/error-codes.js';
import { InputError, TrellisError } from '../../common/errors.js';
import { HTTP_FAILURES } from '../../proxy/http/errors.js';
import { HttpError, statusOf } from '../../control/http-io.js';

/**
 * `TRELLIS_*` strings that are not error codes: iptables chain names (agent/redirect/rules.ts) and the
 * environment variables the injector gives a sidecar (injector/sidecar.ts). Both are external contracts.
 */
const NOT_ERROR_CODES = new Set([
  'TRELLIS_INBOUND',
  'TRELLIS_IN_REDIRECT',
  'TRELLIS_OUTPUT',
  'TRELLIS_REDIRECT',
  'TRELLIS_POD_NAME',
  'TRELLIS_POD_NAMESPACE',
  'TRELLIS_POD_IP',
  'TRELLIS_SERVICE_ACCOUNT',
  'TRELLIS_NODE_NAME',
]);

describe('error code registry', () => {
  const entries = allErrorCodes();

  it('defines every code once, well formed, with a status, a side and a summary', () => {
    expect(entries.length).toBeGreaterThan(150);
    const codes = entries.map((e) => e.code);
    expect(new Set(codes).size).toBe(codes.length);
    for (const e of entries) {
      expect(e.code).toMatch(/^TRELLIS_[A-Z0-9_]+$/);
      expect(e.status, e.code).toBeGreaterThanOrEqual(400);
      expect(e.status, e.code).toBeLessThan(600);
      expect(['input', 'downstream', 'upstream', 'policy', 'internal'], e.code).toContain(e.side);
      expect(typeof e.retryable, e.code).toBe('boolean');
      expect(e.summary.length, e.code).toBeGreaterThan(0);
      expect(Object.isFrozen(e)).toBe(true);
    }
  });

  it('keys each entry by its code without the prefix, and CODE names the same strings', () => {
    for (const [key, info] of Object.entries(ERRORS)) {
      expect(info.code).toBe(`TRELLIS_${key}`);
      expect((CODE as Readonly<Record<string, string>>)[key]).toBe(info.code);
    }
    expect(CODE.HTTP_DENIED).toBe('TRELLIS_HTTP_DENIED');
  });

  it('holds no name that is not an error code', () => {
    for (const name of NOT_ERROR_CODES) expect(errorCodeInfo(name), name).toBeUndefined();
  });

  it('is what the HTTP path answers with', () => {
    for (const failure of Object.values(HTTP_FAILURES)) {
      const info = errorCodeInfo(failure.code);
      expect(info, failure.code).toBeDefined();
      expect(failure).toEqual({ code: info?.code, status: info?.status, side: info?.side, retryable: info?.retryable, message: info?.summary });
    }
  });

  it('gives credential refusals 403 and bad input 400, as the control API always answered', () => {
    const downstream = (code: string): TrellisError => new TrellisError(code, 'x', { side: 'downstream' });
    for (const code of [CODE.TOKEN_EXPIRED, CODE.TOKEN_K8S_UNAUTHENTICATED, CODE.PEER_EXPIRED, CODE.CHAIN_UNTRUSTED, CODE.IDENTITY_RESERVED]) {
      expect(httpStatusOf(downstream(code)), code).toBe(403);
    }
    expect(httpStatusOf(downstream(CODE.SNI_INVALID))).toBe(400);
    expect(httpStatusOf(new InputError(CODE.CA_TTL_TOO_LONG, 'x'))).toBe(400);
    // One code, two answers: bad input from an operator (token creation), a refusal of a workload (issuance).
    expect(httpStatusOf(new InputError(CODE.IDENTITY_RESERVED, 'x'))).toBe(400);
    expect(httpStatusOf(downstream(CODE.IDENTITY_RESERVED))).toBe(403);
    expect(httpStatusOf(new TrellisError(CODE.STORE_CORRUPT, 'x', { side: 'internal' }))).toBe(500);
    expect(httpStatusOf(new Error('boom'))).toBe(500);
    // A code relayed from elsewhere, not ours: its side decides.
    expect(httpStatusOf(new TrellisError('OTHER_CODE', 'x', { side: 'policy' }))).toBe(403);
    expect(httpStatusOf(new TrellisError('OTHER_CODE', 'x', { side: 'upstream' }))).toBe(500);
  });

  it('lets a control API refusal take its status from the registry or override it for one reply', () => {
    expect(new HttpError(CODE.CONTROL_BODY_TOO_LARGE, 'x').status).toBe(413);
    expect(new HttpError(CODE.CONTROL_BOOTSTRAP_RATE_LIMITED, 'x').status).toBe(429);
    expect(new HttpError(CODE.TOKEN_UNKNOWN, 'x', 404).status).toBe(404);
    expect(statusOf(new HttpError(CODE.TOKEN_UNKNOWN, 'x', 404))).toBe(404);
    expect(statusOf(new TrellisError(CODE.TOKEN_REVOKED, 'x', { side: 'downstream' }))).toBe(403);
    expect(statusOf(new Error('boom'))).toBe(500);
  });
});

const ROOT = resolve(dirname(new URL(import.meta.url).pathname), '../..');
const NOT_SOURCE = new Set(['test', 'node_modules', 'build', 'dist', 'docs', 'deploy', 'native']);
const REGISTRY_FILE = join('common', 'error-codes.ts');

function sourceFiles(dir: string): string[] {
  let out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out = out.concat(sourceFiles(path));
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(path);
  }
  return out;
}

function allSources(): string[] {
  return readdirSync(ROOT)
    .filter((name) => !name.startsWith('.') && !NOT_SOURCE.has(name) && statSync(join(ROOT, name)).isDirectory())
    .flatMap((name) => sourceFiles(join(ROOT, name)));
}

describe('sources spell no error code', () => {
  // Quoted strings only: comments name codes in backticks, and that is how docs should name them.
  it('has no TRELLIS_* string literal outside common/error-codes.ts', () => {
    const offenders: string[] = [];
    for (const file of allSources()) {
      const rel = relative(ROOT, file).split(sep).join('/');
      if (rel === REGISTRY_FILE.split(sep).join('/')) continue;
      const text = readFileSync(file, 'utf8');
      for (const match of text.matchAll(/(['"])(TRELLIS_[A-Z0-9_]+)\1/g)) {
        const name = match[2] as string;
        if (NOT_ERROR_CODES.has(name)) continue;
        const line = text.slice(0, match.index).split('\n').length;
        offenders.push(`${rel}:${line} ${name} (use CODE.${name.slice('TRELLIS_'.length)} from common/error-codes.ts)`);
      }
    }
    expect(offenders).toEqual([]);
  });
});
