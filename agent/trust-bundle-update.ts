/**
 * A trust bundle pushed by the control plane (root rotation), checked before the agent uses it: it must
 * be a bundle of the agent's own trust domain, and the agent's current certificate must still verify
 * against it. The control plane checks the same before pushing; checking again here means a damaged or
 * mistaken bundle can never leave the sidecar unable to prove its own identity to peers that took it.
 */
import { TrustBundle } from '../ca/bundle.js';
import { verifyChain } from '../ca/verify.js';
import { describeError, TrellisError } from '../common/errors.js';
import { holdIdentity, type HeldIdentity } from './identity-manager.js';
import { CODE } from '../common/error-codes.js';

/** The same identity with the new roots; throws TRELLIS_AGENT_BUNDLE_REFUSED (nothing changed) when they do not fit. */
export function withTrustBundle(current: HeldIdentity, bundlePem: string): { readonly identity: HeldIdentity; readonly roots: number } {
  let bundle: TrustBundle;
  try {
    bundle = TrustBundle.fromPem(current.trustDomain, bundlePem);
    verifyChain(current.certChainPem, bundle, { trustDomain: current.trustDomain });
  } catch (err) {
    throw new TrellisError(CODE.AGENT_BUNDLE_REFUSED, `trust bundle from the control plane refused: ${describeError(err)}`, { side: 'upstream', cause: err });
  }
  const identity = holdIdentity({ certChainPem: current.certChainPem, keyPem: current.keyPem, trustBundlePem: bundle.toPem() }, current.receivedAt);
  return { identity, roots: bundle.roots.length };
}
