/**
 * A refused tunnel stream speaks the registry's vocabulary (proxy/http/errors.ts): each refusal is a registry
 * entry, and its `trellis-reason` on the wire is derived from the code, giving exactly the short reasons peers
 * and the `result`/`reason` metric labels have always carried.
 */
import { describe, expect, it } from 'vitest';
import { errorCodeInfo } from '../../common/error-codes.js';
import { failureBody, HttpFailure, STREAM_REFUSALS, streamReason, streamRefusalHeaders } from '../../proxy/http/errors.js';

describe('stream refusals', () => {
  it('are registry entries whose reasons are the ones on the wire before the registry', () => {
    const reasons = Object.fromEntries(Object.entries(STREAM_REFUSALS).map(([key, kind]) => [key, [kind.status, streamReason(kind)]]));
    expect(reasons).toEqual({
      badTarget: [400, 'bad-target'],
      misdirected: [421, 'misdirected'],
      unknownPort: [404, 'unknown-port'],
      httpNotSupported: [501, 'http-not-supported'],
      policyDenied: [403, 'policy-denied'],
      appRefused: [503, 'app-refused'],
      appUnreachable: [502, 'app-unreachable'],
      appConnectTimeout: [504, 'app-connect-timeout'],
      // A zone ingress's refusals (proxy/ingress/), the reasons issue 15 names.
      noHealthyEndpoint: [503, 'no-healthy-endpoint'],
      unknownService: [404, 'unknown-service'],
      zoneNotAdmitted: [403, 'zone-not-admitted'],
      identityRefused: [403, 'identity-refused'],
    });
    for (const kind of Object.values(STREAM_REFUSALS)) {
      const info = errorCodeInfo(kind.code);
      expect(kind).toEqual({ code: info?.code, status: info?.status, side: info?.side, retryable: info?.retryable, message: info?.summary });
    }
  });

  it('are answered like any failure, plus the reason and the decider', () => {
    const failure = new HttpFailure(STREAM_REFUSALS.policyDenied, 'no rule allows the caller (shop/p#1)');
    const body = failureBody(failure, 'cid-1');
    expect(body).toBe(`denied by mesh policy: no rule allows the caller (shop/p#1) (${STREAM_REFUSALS.policyDenied.code}, correlation id cid-1)\n`);
    expect(streamRefusalHeaders(failure, 'cid-1', body, 'shop/p#1')).toMatchObject({
      ':status': 403,
      'trellis-error': STREAM_REFUSALS.policyDenied.code,
      'trellis-reason': 'policy-denied',
      'trellis-denied-by': 'shop/p#1',
      'trellis-correlation-id': 'cid-1',
      'content-length': Buffer.byteLength(body),
    });
  });
});
