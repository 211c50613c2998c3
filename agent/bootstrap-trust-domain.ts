/**
 * Which trust domain the first CSR asks for. The CSR must ask for exactly the identity the control plane
 * derives from the credential (or the control plane refuses it), so the agent needs the trust domain
 * before it has a certificate:
 *   1. `--trust-domain`, when given;
 *   2. a join token names it in its claims;
 *   3. a Kubernetes projected service-account token does not (it is the cluster's, not the mesh's), so it
 *      is read from the mesh roots in `--ca-file`: each Trellis root carries a `spiffe://<td>` URI SAN.
 * Roots that name different trust domains, or none, leave the choice to the operator: a clear error.
 */
import { trustDomainOf } from '../ca/authority.js';
import { parseCertificatesPem } from '../ca/certificate.js';
import { TrellisError, describeError } from '../common/errors.js';
import { peekJoinToken } from '../api/control-protocol.js';
import { CODE } from '../common/error-codes.js';

export type BootstrapCredentialKind = 'join-token' | 'k8s-sa-token' | 'unknown';

/** A JWT (a projected service-account token) or a Trellis join token; the control plane decides which it accepts. */
export function credentialKind(token: string): BootstrapCredentialKind {
  if (peekJoinToken(token) !== undefined) return 'join-token';
  if (/^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token)) return 'k8s-sa-token';
  return 'unknown';
}

export function trustDomainOfBundle(bundlePem: string, source: string): string {
  let roots;
  try {
    roots = parseCertificatesPem(bundlePem, source);
  } catch (err) {
    throw new TrellisError(CODE.AGENT_NO_TRUST_DOMAIN, `cannot read the trust bundle ${source} to learn the trust domain: ${describeError(err)}`, { side: 'input', cause: err });
  }
  const named = new Set(roots.map((root) => trustDomainOf(root)).filter((td): td is string => td !== undefined));
  if (roots.length === 0 || named.size === 0) {
    throw new TrellisError(CODE.AGENT_NO_TRUST_DOMAIN, `the roots in ${source} name no spiffe:// trust domain and the bootstrap credential names none: give --trust-domain`, { side: 'input' });
  }
  if (named.size > 1) {
    throw new TrellisError(CODE.AGENT_NO_TRUST_DOMAIN, `the roots in ${source} name several trust domains (${[...named].join(', ')}): give --trust-domain`, { side: 'input' });
  }
  return [...named][0] as string;
}

export function bootstrapTrustDomain(options: { readonly configured: string | undefined; readonly token: string; readonly bundlePem: string | undefined; readonly bundleSource: string }): string {
  if (options.configured !== undefined) return options.configured;
  const fromToken = peekJoinToken(options.token)?.trustDomain;
  if (fromToken !== undefined) return fromToken;
  if (options.bundlePem === undefined) {
    throw new TrellisError(CODE.AGENT_NO_TRUST_DOMAIN, 'the bootstrap credential names no trust domain and there is no --ca-file to read it from: give --trust-domain', { side: 'input' });
  }
  return trustDomainOfBundle(options.bundlePem, options.bundleSource);
}
