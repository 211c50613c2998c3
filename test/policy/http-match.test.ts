import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { HttpMatcher, normalizeRequestPath, pathPatternProblem } from '../../policy/http-match.js';

describe('request path normalisation', () => {
  it.each([
    ['/', '/'],
    ['/charge', '/charge'],
    ['/charge?x=1', '/charge'],
    ['/charge#frag', '/charge'],
    ['/a/', '/a/'],
    ['/a//b', '/a/b'],
    ['//admin', '/admin'],
    ['/a/./b', '/a/b'],
    ['/a/b/..', '/a/'],
    ['/a/b/../../..', '/'],
    ['/refunds/../admin', '/admin'],
    ['/%61dmin', '/admin'],
    ['/%2e%2e/admin', '/admin'],
    ['/a%2fb', '/a%2Fb'],
    ['/a%20b', '/a%20b'],
  ])('%s becomes %s', (input, expected) => {
    expect(normalizeRequestPath(input)).toBe(expected);
  });

  it.each([
    '', 'admin', '*', 'http://host/a', '/a%zz', '/a%4',
    // Each means something else to some app: a backslash (WHATWG URL, Windows servers), an escaped control
    // byte, a dot segment with parameters (servlet containers resolve `..;` as `..`).
    '/public/..\\admin', '/a%00', '/a%1f', '/a%7F', '/public/..;/admin', '/public/.;x/a', '/public/%2e%2e;/admin', '/public/..%3b/admin', '/a b',
  ])('refuses %j', (input) => {
    expect(normalizeRequestPath(input)).toBeNull();
  });

  it('is idempotent and leaves no empty or dot segments', () => {
    const segment = fc.constantFrom('', '.', '..', 'a', 'b', '%2e', '%61', '%2F', 'c.d', 'a;b', '...', '%2E%2E.', '%5c');
    fc.assert(
      fc.property(fc.array(segment, { maxLength: 8 }), (segments) => {
        const once = normalizeRequestPath(`/${segments.join('/')}`);
        expect(once).not.toBeNull();
        expect(normalizeRequestPath(once as string)).toBe(once);
        expect(once).not.toMatch(/\/\/|\/\.\.?(\/|$)|%6[0-9A-F]/);
      }),
    );
  });
});

describe('path patterns and the HTTP matcher', () => {
  it('accepts exact paths and trailing /* prefixes, and explains what it refuses', () => {
    expect(pathPatternProblem('/charge')).toBeUndefined();
    expect(pathPatternProblem('/refunds/*')).toBeUndefined();
    expect(pathPatternProblem('/*')).toBeUndefined();
    expect(pathPatternProblem('/refunds*')).toMatch(/trailing "\/\*"/);
    expect(pathPatternProblem('/a b')).toMatch(/spaces/);
    expect(pathPatternProblem('/a?x=1')).toMatch(/"\?"/);
    expect(pathPatternProblem('/a//b')).toMatch(/write "\/a\/b"/);
    expect(pathPatternProblem('/x/../y/*')).toMatch(/write "\/y\/\*"/);
    expect(pathPatternProblem(`/${'a'.repeat(2000)}`)).toMatch(/at most/);
  });

  it('matches methods exactly and paths exactly or by prefix', () => {
    const m = new HttpMatcher(['GET'], ['/charge', '/refunds/*']);
    expect(m.matches('GET', '/charge')).toBe(true);
    expect(m.matches('GET', '/charge/')).toBe(false);
    expect(m.matches('GET', '/refunds/')).toBe(true);
    expect(m.matches('GET', '/refunds/1/2')).toBe(true);
    expect(m.matches('GET', '/refunds')).toBe(false);
    expect(m.matches('GET', '/refundsX')).toBe(false);
    expect(m.matches('POST', '/charge')).toBe(false);
    expect(new HttpMatcher(undefined, ['/a']).matches('ANY', '/a')).toBe(true);
    expect(new HttpMatcher(['PUT'], undefined).matches('PUT', '/whatever')).toBe(true);
  });
});
