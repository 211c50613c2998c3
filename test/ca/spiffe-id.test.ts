import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { parseSpiffeId, parseTrustDomain, parseWorkloadId, workloadId } from '../../ca/spiffe-id.js';
import { InputError } from '../../common/errors.js';

function refusal(text: string): InputError {
  try {
    parseSpiffeId(text);
  } catch (err) {
    expect(err).toBeInstanceOf(InputError);
    expect((err as InputError).code).toBe('TRELLIS_SPIFFE_ID_INVALID');
    return err as InputError;
  }
  throw new Error(`"${text}" was accepted`);
}

// Each rule of SPIFFE-ID.md section 2, with an ID it accepts and one it refuses (and the rule named in the message).
const RULES: readonly { rule: string; good: string; bad: string; message: RegExp }[] = [
  { rule: 'scheme is spiffe://', good: 'spiffe://example.org/a', bad: 'https://example.org/a', message: /scheme must be "spiffe:\/\/"/ },
  { rule: 'scheme is lowercase', good: 'spiffe://example.org/a', bad: 'SPIFFE://example.org/a', message: /scheme must be lowercase/ },
  { rule: 'scheme has //', good: 'spiffe://example.org', bad: 'spiffe:example.org', message: /scheme/ },
  { rule: 'trust domain not empty', good: 'spiffe://a', bad: 'spiffe:///ns/a', message: /trust domain is empty/ },
  { rule: 'trust domain lowercase', good: 'spiffe://example.org', bad: 'spiffe://Example.org', message: /must be lowercase/ },
  { rule: 'trust domain chars [a-z0-9._-]', good: 'spiffe://ex_am-ple.0rg', bad: 'spiffe://exa$mple.org', message: /may only contain a-z, 0-9/ },
  { rule: 'no port', good: 'spiffe://example.org/x', bad: 'spiffe://example.org:8443/x', message: /port/ },
  { rule: 'no userinfo', good: 'spiffe://example.org/x', bad: 'spiffe://user@example.org/x', message: /userinfo/ },
  { rule: 'no percent-encoding in trust domain', good: 'spiffe://example.org', bad: 'spiffe://ex%41mple.org', message: /percent-encoding/ },
  { rule: 'no percent-encoding in path', good: 'spiffe://example.org/a', bad: 'spiffe://example.org/%61', message: /percent-encoding/ },
  { rule: 'no query', good: 'spiffe://example.org/a', bad: 'spiffe://example.org/a?x=1', message: /query/ },
  { rule: 'no fragment', good: 'spiffe://example.org/a', bad: 'spiffe://example.org/a#frag', message: /fragment/ },
  { rule: 'path chars [a-zA-Z0-9._-]', good: 'spiffe://example.org/Ab_0.-x', bad: 'spiffe://example.org/a b', message: /path segments may only contain/ },
  { rule: 'path has no non-ASCII', good: 'spiffe://example.org/cafe', bad: 'spiffe://example.org/café', message: /path segments may only contain/ },
  { rule: 'no empty segment', good: 'spiffe://example.org/a/b', bad: 'spiffe://example.org/a//b', message: /empty segments/ },
  { rule: 'no "." segment', good: 'spiffe://example.org/a/.b', bad: 'spiffe://example.org/a/./b', message: /"\." or "\.\." segments/ },
  { rule: 'no ".." segment', good: 'spiffe://example.org/a/..b', bad: 'spiffe://example.org/a/../b', message: /"\." or "\.\." segments/ },
  { rule: 'no trailing slash', good: 'spiffe://example.org/a', bad: 'spiffe://example.org/a/', message: /must not end with "\/"/ },
  { rule: 'no lone slash path', good: 'spiffe://example.org', bad: 'spiffe://example.org/', message: /must not end with "\/"/ },
  { rule: 'trust domain ≤ 255 chars', good: `spiffe://${'a'.repeat(255)}`, bad: `spiffe://${'a'.repeat(256)}`, message: /longer than 255/ },
  { rule: 'ID ≤ 2048 bytes', good: `spiffe://example.org/${'a'.repeat(2048 - 21)}`, bad: `spiffe://example.org/${'a'.repeat(2048 - 20)}`, message: /longer than 2048 bytes/ },
  { rule: 'not empty', good: 'spiffe://x', bad: '', message: /empty/ },
];

describe('parseSpiffeId follows every rule of the SPIFFE ID specification', () => {
  for (const { rule, good, bad, message } of RULES) {
    it(`${rule}: accepts ${good.slice(0, 40)}, refuses ${bad.slice(0, 40)}`, () => {
      expect(parseSpiffeId(good).toString()).toBe(good);
      expect(refusal(bad).message).toMatch(message);
    });
  }

  it('splits trust domain and path', () => {
    const id = parseSpiffeId('spiffe://prod.example.com/ns/shop/sa/cart');
    expect(id.trustDomain).toBe('prod.example.com');
    expect(id.path).toBe('/ns/shop/sa/cart');
    expect(String(id)).toBe('spiffe://prod.example.com/ns/shop/sa/cart');
    expect(parseSpiffeId('spiffe://td').path).toBe('');
  });

  it('quotes the broken ID in its message', () => {
    expect(refusal('spiffe://example.org/a//b').message).toContain('"spiffe://example.org/a//b"');
  });

  it('round-trips every ID built from valid parts (property)', () => {
    const tdChar = fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789._-'.split(''));
    const segChar = fc.constantFrom(...'abcXYZ019._-'.split(''));
    const segment = fc.string({ unit: segChar, minLength: 1, maxLength: 12 }).filter((s) => s !== '.' && s !== '..');
    fc.assert(
      fc.property(fc.string({ unit: tdChar, minLength: 1, maxLength: 30 }), fc.array(segment, { maxLength: 6 }), (td, segments) => {
        const text = `spiffe://${td}${segments.map((s) => `/${s}`).join('')}`;
        const id = parseSpiffeId(text);
        expect(id.toString()).toBe(text);
        expect(id.trustDomain).toBe(td);
      }),
    );
  });

  it('never throws anything but a coded InputError on arbitrary text (property)', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 80 }), (text) => {
        try {
          parseSpiffeId(`spiffe://${text}`);
        } catch (err) {
          expect((err as InputError).code).toBe('TRELLIS_SPIFFE_ID_INVALID');
        }
      }),
    );
  });
});

describe('workload IDs', () => {
  it('builds and parses /ns/<namespace>/sa/<service>', () => {
    const id = workloadId('cluster.local', 'shop', 'cart');
    expect(id.toString()).toBe('spiffe://cluster.local/ns/shop/sa/cart');
    expect(parseWorkloadId(id.toString())).toEqual({ trustDomain: 'cluster.local', namespace: 'shop', service: 'cart', id: id.toString() });
  });

  it('refuses IDs of another shape', () => {
    for (const text of ['spiffe://td', 'spiffe://td/ns/shop', 'spiffe://td/ns/shop/sa/cart/extra', 'spiffe://td/namespace/shop/sa/cart', 'spiffe://td/ns/shop/svc/cart']) {
      expect(() => parseWorkloadId(text), text).toThrow(/\/ns\/<namespace>\/sa\/<service>/);
    }
  });

  it('refuses invalid parts', () => {
    expect(() => workloadId('Cluster.local', 'shop', 'cart')).toThrow(/lowercase/);
    expect(() => workloadId('cluster.local', 'sh op', 'cart')).toThrow(InputError);
    expect(() => workloadId('cluster.local', 'shop', '..')).toThrow(/"\." or "\.\."/);
  });

  it('checks a bare trust domain', () => {
    expect(parseTrustDomain('example.org')).toBe('example.org');
    expect(() => parseTrustDomain('example.org:443')).toThrow(/port/);
    expect(() => parseTrustDomain('')).toThrow(/empty/);
  });
});
