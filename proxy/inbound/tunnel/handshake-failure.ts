/**
 * Why a tunnel handshake failed, as a short label from a bounded set (`trellis_tunnel_handshakes_total`
 * `reason`): node:tls words its errors in OpenSSL's terms, which are neither stable nor bounded.
 */
import type { TLSSocket } from 'node:tls';
import { CODE } from '../../../common/error-codes.js';

/** The reason for a `tlsClientError` on `socket`. */
export function handshakeFailureReason(err: NodeJS.ErrnoException, socket: TLSSocket): { readonly reason: string; readonly detail: string } {
  // node:tls rejects an unverifiable client certificate by destroying the socket after the handshake; the
  // error seen here is then only "socket hang up", and the real cause is the socket's authorizationError.
  const verifyError = socket.authorizationError as unknown as string | Error | null | undefined;
  const verifyCode = verifyError == null ? undefined : typeof verifyError === 'string' ? verifyError : ((verifyError as NodeJS.ErrnoException).code ?? verifyError.message);
  const reason = verifyCode === undefined ? handshakeReason(err) : verifyCode === 'CERT_HAS_EXPIRED' ? 'expired' : 'untrusted';
  return { reason, detail: verifyCode ?? err.message };
}

/** A bounded set of reasons for failed handshakes, for the metric label. */
export function handshakeReason(err: NodeJS.ErrnoException): string {
  const code = err.code ?? '';
  // Our SNICallback's refusal: the caller named a trust domain we do not federate with.
  if (code === CODE.PEER_TRUST_DOMAIN) return 'trust-domain-not-federated';
  const text = `${code} ${err.message}`.toLowerCase();
  if (code === 'ERR_TLS_HANDSHAKE_TIMEOUT') return 'timeout';
  if (text.includes('peer did not return a certificate') || text.includes('peer_did_not_return_a_certificate')) return 'no-certificate';
  if (text.includes('expired')) return 'expired';
  if (text.includes('certificate') || text.includes('unknown ca') || text.includes('verify')) return 'untrusted';
  if (text.includes('wrong version') || text.includes('http request') || text.includes('packet length') || text.includes('unexpected message') || text.includes('record')) return 'not-tls';
  if (text.includes('version') || text.includes('protocol')) return 'protocol';
  if (code === 'ECONNRESET' || code === 'EPIPE') return 'reset';
  return 'tls-error';
}
