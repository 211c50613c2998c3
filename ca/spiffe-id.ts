/**
 * SPIFFE IDs, exactly as the SPIFFE-ID specification (section 2) states them:
 *   spiffe://<trust-domain><path>
 * - scheme `spiffe` followed by `://` (lowercase, as go-spiffe and SPIRE require);
 * - trust domain: 1-255 characters of [a-z0-9._-] (no uppercase, no port, no userinfo, no percent-encoding);
 * - path: empty, or `/`-separated segments of [a-zA-Z0-9._-], none empty, `.` or `..`, and no trailing slash;
 * - no query or fragment; the whole ID at most 2048 bytes.
 * A workload's ID additionally has the Trellis form /ns/<namespace>/sa/<service>.
 */
import { InputError } from '../common/errors.js';
import { CODE } from '../common/error-codes.js';

export const SPIFFE_ID_MAX_LENGTH = 2048;
export const TRUST_DOMAIN_MAX_LENGTH = 255;
const SCHEME_PREFIX = 'spiffe://';
const TRUST_DOMAIN_CHAR = /^[a-z0-9._-]$/;
const PATH_SEGMENT_CHAR = /^[a-zA-Z0-9._-]$/;

export interface SpiffeId {
  readonly trustDomain: string;
  /** Empty (the trust domain's own ID) or starting with `/`. */
  readonly path: string;
  toString(): string;
}

export interface WorkloadIdParts {
  readonly trustDomain: string;
  readonly namespace: string;
  readonly service: string;
  readonly id: string;
}

function invalid(text: string, rule: string): InputError {
  const shown = text.length > 120 ? `${text.slice(0, 120)}…` : text;
  return new InputError(CODE.SPIFFE_ID_INVALID, `invalid SPIFFE ID "${shown}": ${rule}`, { details: { rule } });
}

function makeId(trustDomain: string, path: string): SpiffeId {
  const text = `${SCHEME_PREFIX}${trustDomain}${path}`;
  return Object.freeze({ trustDomain, path, toString: () => text });
}

/** Checks a trust domain name on its own (used for `--trust-domain` flags); returns it unchanged. */
export function parseTrustDomain(name: string): string {
  const what = `spiffe://${name}`;
  if (name === '') throw invalid(what, 'the trust domain is empty');
  if (name.length > TRUST_DOMAIN_MAX_LENGTH) throw invalid(what, `the trust domain is longer than ${TRUST_DOMAIN_MAX_LENGTH} characters`);
  checkTrustDomainChars(what, name);
  return name;
}

function checkTrustDomainChars(text: string, trustDomain: string): void {
  for (const ch of trustDomain) {
    if (TRUST_DOMAIN_CHAR.test(ch)) continue;
    if (ch === ':') throw invalid(text, 'the trust domain must not contain a port');
    if (ch === '@') throw invalid(text, 'the trust domain must not contain userinfo');
    if (ch === '%') throw invalid(text, 'percent-encoding is not allowed');
    if (/[A-Z]/.test(ch)) throw invalid(text, 'the trust domain must be lowercase');
    throw invalid(text, `the trust domain may only contain a-z, 0-9, ".", "-" and "_" (found "${ch}")`);
  }
}

export function parseSpiffeId(text: string): SpiffeId {
  if (typeof text !== 'string' || text === '') throw invalid(String(text), 'the ID is empty');
  if (Buffer.byteLength(text, 'utf8') > SPIFFE_ID_MAX_LENGTH) throw invalid(text, `the ID is longer than ${SPIFFE_ID_MAX_LENGTH} bytes`);
  if (!text.startsWith(SCHEME_PREFIX)) {
    if (/^spiffe:\/\//i.test(text)) throw invalid(text, 'the scheme must be lowercase "spiffe://"');
    throw invalid(text, 'the scheme must be "spiffe://"');
  }
  const rest = text.slice(SCHEME_PREFIX.length);
  if (rest.includes('?')) throw invalid(text, 'a query is not allowed');
  if (rest.includes('#')) throw invalid(text, 'a fragment is not allowed');
  const slash = rest.indexOf('/');
  const trustDomain = slash === -1 ? rest : rest.slice(0, slash);
  const path = slash === -1 ? '' : rest.slice(slash);
  if (trustDomain === '') throw invalid(text, 'the trust domain is empty');
  if (trustDomain.length > TRUST_DOMAIN_MAX_LENGTH) throw invalid(text, `the trust domain is longer than ${TRUST_DOMAIN_MAX_LENGTH} characters`);
  checkTrustDomainChars(text, trustDomain);
  if (path !== '') checkPath(text, path);
  return makeId(trustDomain, path);
}

function checkPath(text: string, path: string): void {
  if (path === '/' || path.endsWith('/')) throw invalid(text, 'the path must not end with "/"');
  const segments = path.slice(1).split('/');
  for (const segment of segments) {
    if (segment === '') throw invalid(text, 'the path must not contain empty segments ("//")');
    if (segment === '.' || segment === '..') throw invalid(text, 'the path must not contain "." or ".." segments');
    for (const ch of segment) {
      if (PATH_SEGMENT_CHAR.test(ch)) continue;
      if (ch === '%') throw invalid(text, 'percent-encoding is not allowed');
      throw invalid(text, `path segments may only contain a-z, A-Z, 0-9, ".", "-" and "_" (found "${ch}")`);
    }
  }
}

/** The ID of a workload: spiffe://<td>/ns/<namespace>/sa/<service>; every part is validated. */
export function workloadId(trustDomain: string, namespace: string, service: string): SpiffeId {
  return parseWorkloadIdText(`${SCHEME_PREFIX}${trustDomain}/ns/${namespace}/sa/${service}`).spiffeId;
}

function parseWorkloadIdText(text: string): { spiffeId: SpiffeId; parts: WorkloadIdParts } {
  const spiffeId = parseSpiffeId(text);
  const segments = spiffeId.path.split('/');
  // ['', 'ns', <namespace>, 'sa', <service>]
  if (segments.length !== 5 || segments[1] !== 'ns' || segments[3] !== 'sa') {
    throw invalid(text, 'a workload ID has the path /ns/<namespace>/sa/<service>');
  }
  const parts = Object.freeze({
    trustDomain: spiffeId.trustDomain,
    namespace: segments[2] as string,
    service: segments[4] as string,
    id: spiffeId.toString(),
  });
  return { spiffeId, parts };
}

export function parseWorkloadId(text: string): WorkloadIdParts {
  return parseWorkloadIdText(text).parts;
}

/** True when `id` names a workload (has a path), not just a trust domain. */
export function hasPath(id: SpiffeId): boolean {
  return id.path !== '';
}
