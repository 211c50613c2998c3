/**
 * The identity of the sidecar on the other end of a tunnel session, taken from its verified certificate.
 *
 * node:tls verifies the chain against the trust bundle (`ca`) during the handshake; this adds the SPIFFE
 * checks on the leaf (one URI SAN, our trust domain, the workload path shape, validity) through the CA
 * module's verifier, and maps every refusal to a short reason used as a metric label.
 */
import type { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { normaliseSerial } from '../../api/control-protocol.js';
import { verifyPeerCertificate } from '../../ca/verify.js';
import type { PeerIdentity } from '../../policy/types.js';

export interface VerifiedPeer extends PeerIdentity {
  readonly spiffeId: string;
  /** Epoch ms after which the peer's certificate is no longer valid; sessions are closed then. */
  readonly notAfterMs: number;
  /** The leaf's serial (`normaliseSerial`), matched against the revoked list. */
  readonly serial: string;
}

export type PeerCheck = { readonly ok: true; readonly peer: VerifiedPeer } | { readonly ok: false; readonly reason: string; readonly message: string };

/**
 * `zoneOf`: on the inbound side, the zone the leaf proves (ca/zone.ts); the peer then carries it as `zone`,
 * and without one (or when it cannot be proven) the caller's zone is unknown.
 */
export function checkPeer(socket: TLSSocket, trustDomain: string, zoneOf?: (leafDer: Buffer, trustDomain: string) => string | undefined): PeerCheck {
  let cert: X509Certificate | undefined;
  try {
    cert = socket.getPeerX509Certificate();
  } catch {
    cert = undefined;
  }
  if (cert === undefined) return { ok: false, reason: 'no-certificate', message: 'the peer presented no certificate' };
  if (!socket.authorized) {
    const why = socket.authorizationError;
    return { ok: false, reason: 'untrusted', message: `the peer certificate is not trusted: ${String(why ?? 'unknown')}` };
  }
  try {
    const v = verifyPeerCertificate(cert, { trustDomain });
    const notAfter = v.notAfter as unknown;
    const notAfterMs = notAfter instanceof Date ? notAfter.getTime() : typeof notAfter === 'number' ? notAfter : Date.parse(String(notAfter));
    const zone = zoneOf?.(cert.raw, v.trustDomain);
    const peer = { spiffeId: String(v.spiffeId), trustDomain: v.trustDomain, namespace: v.namespace, service: v.service, notAfterMs, serial: normaliseSerial(cert.serialNumber) };
    return { ok: true, peer: Object.freeze(zone === undefined ? peer : { ...peer, zone }) };
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    return { ok: false, reason: reasonOf(typeof code === 'string' ? code : ''), message: (err as Error).message };
  }
}

/** `TRELLIS_PEER_TRUST_DOMAIN` → `trust-domain`: a bounded label set for metrics (codes from common/error-codes.ts). */
function reasonOf(code: string): string {
  const m = /^TRELLIS_[A-Z]+_(.+)$/.exec(code);
  if (m === null) return 'invalid-certificate';
  return (m[1] as string).toLowerCase().replace(/_/g, '-').slice(0, 40);
}

/** `namespace/service`: how metrics and logs name a service. */
export function serviceLabel(peer: { readonly namespace: string; readonly service: string } | null | undefined): string {
  return peer == null ? 'unknown' : `${peer.namespace}/${peer.service}`;
}
