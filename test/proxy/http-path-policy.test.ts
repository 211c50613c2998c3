/**
 * The inbound's path policy (proxy/inbound/http/authorization.ts `forwardTarget`), property-tested: what
 * the app receives is normal (idempotent, no dot or empty segments, no backslash, no escaped slash in the
 * default mode), and a path judged to be under /public/ stays under it for an app that reads it as
 * loosely as the loosest servers do (decoding escapes, `\` as `/`, dropping `;` parameters).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { normalizeRequestPath } from '../../policy/http-match.js';
import { forwardTarget } from '../../proxy/inbound/http/authorization.js';

/** How a lenient app could read a path: decode once, backslashes as slashes, `;params` dropped, dot segments resolved. */
function looseRead(path: string): string {
  let decoded: string;
  try {
    decoded = decodeURIComponent(path);
  } catch {
    decoded = path;
  }
  const out: string[] = [];
  for (const raw of decoded.replaceAll('\\', '/').split('/').slice(1)) {
    const seg = raw.split(';')[0] as string;
    if (seg === '..') out.pop();
    else if (seg !== '.' && seg !== '') out.push(seg);
  }
  return `/${out.join('/')}`;
}

const KEEP = { escapedSlashes: 'keep', pathParameters: 'keep' } as const;

const SEGMENTS = ['public', 'admin', 'x', '', '.', '..', '%2e', '%2E%2e', '..;', '.;x', '..;x', '..%2F', '%2f', '%5C', '%5c', '\\', '..\\', 'a;b', '%00', '%zz', '%41', 'x%3B', '%2e%2e%3b', '...', '%7e'];
const paths = fc.array(fc.constantFrom(...SEGMENTS), { minLength: 1, maxLength: 7 }).map((segs) => `/${segs.join('/')}`);

describe('the path policy (forwardTarget)', () => {
  it('forwards only normal paths in the default mode', () => {
    fc.assert(
      fc.property(paths, (path) => {
        const t = forwardTarget('GET', path);
        if (t === null) return;
        expect(t.forwardPath).toBe(t.policyPath);
        expect(normalizeRequestPath(t.forwardPath)).toBe(t.forwardPath);
        expect(forwardTarget('GET', t.forwardPath)?.forwardPath).toBe(t.forwardPath);
        expect(t.forwardPath).not.toMatch(/\/\.\.?(\/|$)|\/\/|\\|%2F|%5C|%00/i);
      }),
      { numRuns: 2_000 },
    );
  });

  it('never forwards a path judged under /public/ that a lenient app reads as outside it', () => {
    fc.assert(
      fc.property(paths, (path) => {
        const t = forwardTarget('GET', path);
        if (t === null || !t.policyPath.startsWith('/public/')) return;
        expect(looseRead(t.forwardPath).startsWith('/public')).toBe(true);
      }),
      { numRuns: 2_000 },
    );
  });

  it('with escapedSlashes: keep, passes %2F and %5C on unchanged (upper-cased) and is still normal', () => {
    expect(forwardTarget('GET', '/public/a%2fb%5c', KEEP)?.forwardPath).toBe('/public/a%2Fb%5C');
    expect(forwardTarget('GET', '/public/a%2fb')).toBeNull();
    fc.assert(
      fc.property(paths, (path) => {
        const t = forwardTarget('GET', path, KEEP);
        if (t === null) return;
        expect(normalizeRequestPath(t.forwardPath)).toBe(t.forwardPath);
        expect(t.forwardPath).not.toMatch(/\/\.\.?(\/|$)|\/\/|\\/);
      }),
    );
  });

  it.each([
    ['/public/..%2Fadmin', null],
    ['/public/..\\admin', null],
    ['/public/..%5Cadmin', null],
    ['/public/..%5cadmin', null],
    ['/public/..;/admin', null],
    ['/public/x%00', null],
    ['/public/%zz', null],
    ['/public/x#/../../admin', null],
    ['/public/./a/../b%7e?q=%2e&r=/../x', '/public/b~?q=%2e&r=/../x'],
    ['/public//a', '/public/a'],
    ['/admin;x/secret', null],
    ['/public/a;b', null],
  ])('%s -> %s', (input, expected) => {
    expect(forwardTarget('GET', input)?.forwardPath ?? null).toBe(expected);
  });
});
