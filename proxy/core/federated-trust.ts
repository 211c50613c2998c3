/**
 * Trust in federated trust domains (other zones with their own PKI) on the tunnel, both directions.
 *
 * The rule: a federated root vouches only for its own trust domain. node:tls verifies a chain against one
 * pool of roots and, on the server side, exposes only the peer's leaf afterwards (measured on Node 24:
 * `getPeerCertificate(true)` has no issuers server-side), so a single pool holding every trust domain's
 * roots could not tell which root a caller chained to, and a chain of trust domain B could carry a SPIFFE ID
 * of A. Instead every handshake is verified against the roots of exactly one trust domain, chosen before
 * the peer's certificate arrives, and the leaf's trust domain must then equal that one:
 *
 *  - inbound: a caller of another trust domain names it in the first SNI label (api/sni.ts,
 *    `trustDomainLabel`, in front of the destination's name or of a zone ingress's `ingress.trellis`);
 *    the tunnel server's (and the zone ingress's) SNICallback answers with a SecureContext whose `ca` is that
 *    trust domain's roots alone. No label: our own roots. A label of no trust domain we federate with
 *    fails the handshake. After it, `expectedTrustDomain(servername)` is what checkPeer requires.
 *  - outbound: the endpoint says which trust domain serves it (`Endpoint.trustDomain`, ours by default);
 *    the session is dialled with a SecureContext holding that trust domain's roots alone, and checkPeer
 *    requires the server's leaf to be of it.
 *
 * A federated caller passes the handshake only; the policy then admits it only where a `from` entry names
 * its trust domain (policy/compiled-policy.ts).
 */
import { createSecureContext, type SecureContext, type SecureContextOptions } from 'node:tls';
import { TrellisError } from '../../common/errors.js';
import { CODE } from '../../common/error-codes.js';
import { TrustBundle } from '../../ca/bundle.js';
import { parseTrustDomain } from '../../ca/spiffe-id.js';
import { MAX_FEDERATED_TRUST_DOMAINS } from '../../api/control-protocol.js';
import { callerTrustDomainLabel, trustDomainLabel } from '../../api/sni.js';

export interface FederatedDomain {
  readonly trustDomain: string;
  /** Its SNI label (`trustDomainLabel`). */
  readonly label: string;
  readonly roots: number;
  readonly bundle: TrustBundle;
  /** Server side: our certificate, this trust domain's roots as the only ones a caller may chain to. */
  readonly serverContext: SecureContext;
  /** Client side: our certificate, this trust domain's roots as the only ones a destination may chain to. */
  readonly clientContext: SecureContext;
}

/** Where the trust domain a handshake was verified against comes from; `ok: false` refuses the peer. */
export type ExpectedTrustDomain = { readonly ok: true; readonly trustDomain: string } | { readonly ok: false; readonly reason: string; readonly message: string };

function invalid(message: string): TrellisError {
  return new TrellisError(CODE.PROXY_FEDERATION_INVALID, `federated trust bundles: ${message}`, { side: 'input' });
}

/**
 * Checks a federated bundle set (trust domain → PEM roots) once, where it enters (the agent's snapshot, a
 * static config, `applyConfig`): at most MAX_FEDERATED_TRUST_DOMAINS trust domains, each a valid name other
 * than ours, with 1–16 CA certificates. Throws PROXY_FEDERATION_INVALID naming the first problem.
 */
export function validateFederatedBundles(bundles: unknown, ownTrustDomain: string): Readonly<Record<string, string>> {
  if (bundles === undefined) return Object.freeze({});
  if (typeof bundles !== 'object' || bundles === null || Array.isArray(bundles)) throw invalid('must be an object of trust domain → PEM roots');
  const entries = Object.entries(bundles as Record<string, unknown>);
  if (entries.length > MAX_FEDERATED_TRUST_DOMAINS) throw invalid(`${entries.length} trust domains (at most ${MAX_FEDERATED_TRUST_DOMAINS})`);
  const out: Record<string, string> = {};
  const labels = new Map<string, string>();
  for (const [td, pem] of entries) {
    let name: string;
    try {
      name = parseTrustDomain(td);
    } catch (err) {
      throw invalid(`${JSON.stringify(td.slice(0, 80))}: ${(err as Error).message}`);
    }
    if (name !== td) throw invalid(`"${td}" is not in canonical form ("${name}")`);
    if (name === ownTrustDomain) throw invalid(`"${td}" is this workload's own trust domain; its roots come with the identity`);
    if (typeof pem !== 'string') throw invalid(`"${td}": the roots must be PEM text`);
    try {
      TrustBundle.fromPem(name, pem);
    } catch (err) {
      throw invalid(`"${td}": ${(err as Error).message}`);
    }
    const label = trustDomainLabel(name);
    const clash = labels.get(label);
    // 130 bits of SHA-256: unreachable in practice, refused rather than left ambiguous.
    if (clash !== undefined) throw invalid(`"${td}" and "${clash}" have the same SNI label`);
    labels.set(label, name);
    out[name] = pem;
  }
  return Object.freeze(out);
}

/** The federated trust domains of one identity, with their TLS contexts (built once per change). */
export class FederatedTrust {
  private readonly byLabel = new Map<string, FederatedDomain>();
  private readonly byDomain = new Map<string, FederatedDomain>();
  readonly ownLabel: string;

  constructor(
    readonly ownTrustDomain: string,
    base: SecureContextOptions,
    bundles: Readonly<Record<string, string>>,
  ) {
    this.ownLabel = trustDomainLabel(ownTrustDomain);
    for (const [trustDomain, pem] of Object.entries(validateFederatedBundles(bundles, ownTrustDomain))) {
      const options = { ...base, ca: pem };
      let serverContext: SecureContext;
      let clientContext: SecureContext;
      try {
        serverContext = createSecureContext(options);
        clientContext = createSecureContext(options);
      } catch (err) {
        throw invalid(`"${trustDomain}": ${(err as Error).message}`);
      }
      const bundle = TrustBundle.fromPem(trustDomain, pem);
      const domain: FederatedDomain = Object.freeze({ trustDomain, label: trustDomainLabel(trustDomain), roots: bundle.roots.length, bundle, serverContext, clientContext });
      this.byLabel.set(domain.label, domain);
      this.byDomain.set(trustDomain, domain);
    }
    Object.freeze(this);
  }

  get size(): number {
    return this.byDomain.size;
  }

  domains(): readonly FederatedDomain[] {
    return [...this.byDomain.values()];
  }

  has(trustDomain: string): boolean {
    return this.byDomain.has(trustDomain);
  }

  bundle(trustDomain: string): TrustBundle | undefined {
    return this.byDomain.get(trustDomain)?.bundle;
  }

  /** The client context for dialling a destination of `trustDomain`; undefined when we do not federate with it. */
  clientContext(trustDomain: string): SecureContext | undefined {
    return this.byDomain.get(trustDomain)?.clientContext;
  }

  /** The SNI label a caller of our trust domain sends to a destination of `trustDomain` (none within ours). */
  callerLabelFor(destinationTrustDomain: string): string | undefined {
    return destinationTrustDomain === this.ownTrustDomain ? undefined : this.ownLabel;
  }

  /**
   * The SNICallback's answer for a ClientHello naming `servername`: the federated trust domain's context, or
   * undefined for our own roots (no label, our own label, or a name that is not a Trellis name at all: such a
   * peer is verified against our roots and refused if it is not ours). A label of a trust domain we do not
   * federate with is an error: the handshake fails rather than go on against roots that cannot fit.
   */
  serverContextFor(servername: string): SecureContext | undefined | Error {
    const label = callerLabelOf(servername);
    if (label === undefined || label === this.ownLabel) return undefined;
    const domain = this.byLabel.get(label);
    if (domain === undefined) return new TrellisError(CODE.PEER_TRUST_DOMAIN, 'the caller names a trust domain this sidecar does not federate with', { side: 'downstream' });
    return domain.serverContext;
  }

  /** `serverContextFor` in the shape of node:tls's SNICallback. */
  answerSni(servername: string, done: (err: Error | null, context?: SecureContext) => void): void {
    const answer = this.serverContextFor(servername);
    if (answer instanceof Error) done(answer);
    else done(null, answer);
  }

  /** After an inbound handshake: the trust domain its roots belonged to, which the caller's leaf must name. */
  expectedTrustDomain(servername: string | false | null | undefined): ExpectedTrustDomain {
    const label = typeof servername === 'string' ? callerLabelOf(servername) : undefined;
    if (label === undefined || label === this.ownLabel) return { ok: true, trustDomain: this.ownTrustDomain };
    const domain = this.byLabel.get(label);
    if (domain === undefined) return { ok: false, reason: 'trust-domain-not-federated', message: 'the caller names a trust domain this sidecar no longer federates with' };
    return { ok: true, trustDomain: domain.trustDomain };
  }
}

function callerLabelOf(servername: string): string | undefined {
  return callerTrustDomainLabel(servername);
}
