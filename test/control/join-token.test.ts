/**
 * The join-token format: claims survive a round trip, and any change to any part (claims or signature)
 * or another key is refused; agents can read the unverified claims to build their CSR.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { randomBytes } from 'node:crypto';
import { peekJoinToken } from '../../api/control-protocol.js';
import { signJoinToken, verifyJoinTokenSignature } from '../../control/join-token.js';

const key = randomBytes(32).toString('base64url');
const label = fc.stringMatching(/^[a-z][a-z0-9-]{0,20}$/);
const claims = fc.record({ id: fc.stringMatching(/^[A-Za-z0-9_-]{12}$/), trustDomain: label, namespace: label, service: label, issuedAt: fc.integer({ min: 0, max: 2 ** 31 }), expiresAt: fc.integer({ min: 0, max: 2 ** 31 }) });

describe('join tokens', () => {
  it('round-trip their claims, and agents can peek at them', () => {
    fc.assert(fc.property(claims, (c) => {
      const token = signJoinToken(c, key);
      expect(verifyJoinTokenSignature(token, key)).toEqual(c);
      expect(peekJoinToken(token)).toMatchObject({ trustDomain: c.trustDomain, namespace: c.namespace, service: c.service });
    }));
  });

  it('refuse any single changed character, and another control plane\'s key', () => {
    fc.assert(fc.property(claims, fc.nat(), (c, n) => {
      const token = signJoinToken(c, key);
      const at = 5 + (n % (token.length - 5));
      const ch = token[at] === 'A' ? 'B' : 'A';
      const changed = token.slice(0, at) + ch + token.slice(at + 1);
      expect(() => verifyJoinTokenSignature(changed, key)).toThrow();
    }));
    const token = signJoinToken({ id: 'x', trustDomain: 'td', namespace: 'ns', service: 's', issuedAt: 1, expiresAt: 2 }, key);
    expect(() => verifyJoinTokenSignature(token, randomBytes(32).toString('base64url'))).toThrow(/not signed by this control plane/);
    expect(() => verifyJoinTokenSignature('eyJhbGciOi.x.y', key)).toThrow(/not a Trellis join token/);
  });
});
