import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { decodeSni, encodeSni, trustDomainLabel, DNS_NAME_MAX_LENGTH } from '../../api/sni.js';

const label = fc
  .stringMatching(/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/)
  .filter((s) => s.length >= 1 && s.length <= 63);

describe('SNI naming of destinations', () => {
  it('encodes a readable, versioned name', () => {
    expect(encodeSni({ service: 'payments', namespace: 'shop', port: 8080, zone: 'eu-west' })).toBe('payments.shop.p8080.eu-west.v1.trellis');
  });

  it('round-trips every encodable destination and always yields a valid DNS name', () => {
    fc.assert(
      fc.property(label, label, fc.integer({ min: 1, max: 65535 }), label, (service, namespace, port, zone) => {
        const name = encodeSni({ service, namespace, port, zone });
        expect(name.length).toBeLessThanOrEqual(DNS_NAME_MAX_LENGTH);
        for (const l of name.split('.')) {
          expect(l.length).toBeGreaterThan(0);
          expect(l.length).toBeLessThanOrEqual(63);
        }
        expect(decodeSni(name)).toEqual({ service, namespace, port, zone });
      }),
      { numRuns: 500 },
    );
  });

  it('accepts the longest names (63-character labels)', () => {
    const long = 'a'.repeat(63);
    const name = encodeSni({ service: long, namespace: long, port: 65535, zone: long });
    expect(decodeSni(name)).toEqual({ service: long, namespace: long, port: 65535, zone: long });
  });

  it.each([
    [{ service: 'Payments', namespace: 'shop', port: 80, zone: 'z' }, /service "Payments" is not a DNS label/],
    [{ service: 'a.b', namespace: 'shop', port: 80, zone: 'z' }, /service "a.b"/],
    [{ service: 'x', namespace: 'a'.repeat(64), port: 80, zone: 'z' }, /at most 63/],
    [{ service: 'x', namespace: 'shop', port: 0, zone: 'z' }, /port 0/],
    [{ service: 'x', namespace: 'shop', port: 80, zone: '' }, /zone is empty/],
    [{ service: '-x', namespace: 'shop', port: 80, zone: 'z' }, /not a DNS label/],
  ])('refuses unencodable destination %o with a clear error', (dest, message) => {
    expect(() => encodeSni(dest)).toThrow(message);
    try {
      encodeSni(dest);
    } catch (err) {
      expect((err as { code: string }).code).toBe('TRELLIS_SNI_UNENCODABLE');
    }
  });

  it.each([
    ['example.com', 'TRELLIS_SNI_INVALID'],
    ['payments.shop.p8080.eu.v2.trellis', 'TRELLIS_SNI_VERSION'],
    ['payments.shop.8080.eu.v1.trellis', 'TRELLIS_SNI_INVALID'],
    ['payments.shop.p0.eu.v1.trellis', 'TRELLIS_SNI_INVALID'],
    ['payments.shop.p65536.eu.v1.trellis', 'TRELLIS_SNI_INVALID'],
    ['payments.shop.p080.eu.v1.trellis', 'TRELLIS_SNI_INVALID'],
    ['Payments.shop.p80.eu.v1.trellis', 'TRELLIS_SNI_INVALID'],
    ['.shop.p80.eu.v1.trellis', 'TRELLIS_SNI_INVALID'],
  ])('refuses server name %s', (name, code) => {
    expect(() => decodeSni(name)).toThrow(expect.objectContaining({ code }));
  });

  it('never throws anything but a coded error on arbitrary input', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (s) => {
        try {
          decodeSni(s);
        } catch (err) {
          expect((err as { code?: string }).code).toMatch(/^TRELLIS_SNI_/);
        }
      }),
    );
  });

  describe('the caller trust domain label (federated callers)', () => {
    it('is one DNS label per trust domain, stable, and round-trips in front of the destination', () => {
      const label = trustDomainLabel('other.example');
      expect(label).toMatch(/^t[a-z2-7]{26}$/);
      expect(trustDomainLabel('other.example')).toBe(label);
      expect(trustDomainLabel('other.example.')).not.toBe(label);
      const name = encodeSni({ service: 'payments', namespace: 'shop', port: 8080, zone: 'eu-west', callerTrustDomain: label });
      expect(name).toBe(`${label}.payments.shop.p8080.eu-west.v1.trellis`);
      expect(decodeSni(name)).toEqual({ service: 'payments', namespace: 'shop', port: 8080, zone: 'eu-west', callerTrustDomain: label });
      const long = 'a'.repeat(63);
      expect(encodeSni({ service: long, namespace: long, port: 65535, zone: long, callerTrustDomain: label }).length).toBeLessThanOrEqual(DNS_NAME_MAX_LENGTH);
    });

    it('refuses to encode a label trustDomainLabel did not make, and does not read a look-alike as one', () => {
      expect(() => encodeSni({ service: 'a', namespace: 'b', port: 1, zone: 'z', callerTrustDomain: 'other.example' })).toThrow(expect.objectContaining({ code: 'TRELLIS_SNI_UNENCODABLE' }));
      // Seven labels whose first is not a caller label, and a caller label on a six-label name: not Trellis names.
      expect(() => decodeSni('x.payments.shop.p80.eu.v1.trellis')).toThrow(expect.objectContaining({ code: 'TRELLIS_SNI_INVALID' }));
      expect(() => decodeSni(`${trustDomainLabel('a')}.${trustDomainLabel('b')}.shop.p80.eu.v1.trellis`)).not.toThrow();
      expect(decodeSni(`${trustDomainLabel('a')}.shop.p80.eu.v1.trellis`).callerTrustDomain).toBeUndefined();
    });
  });
});
