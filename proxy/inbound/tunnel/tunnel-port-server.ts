/**
 * The HTTP/2-over-mTLS server of a tunnel port, with the limits every tunnel port carries: a sidecar's
 * (tunnel-server.ts) and a zone ingress's (proxy/ingress/ingress-server.ts), which must have the same
 * ones (handshake deadline, session memory, stream caps, window, header list size, socket bound).
 */
import { createSecureServer, type Http2SecureServer } from 'node:http2';
import type { ProxyLimits } from '../../core/limits.js';
import type { TlsMaterial } from '../../core/tls-material.js';
import { TUNNEL_ALPN } from '../../core/tunnel-protocol.js';

/**
 * `material`: the TLS material in force, read again per handshake for SNI (it is replaced when the identity
 * rotates); `maxHeaderListPairs`: what one stream's head may carry (a sidecar's CONNECT carries more than an
 * ingress's).
 */
export function createTunnelPortServer(material: () => TlsMaterial, limits: ProxyLimits, maxHeaderListPairs: number): Http2SecureServer {
  const server = createSecureServer({
    ...material().options,
    requestCert: true,
    rejectUnauthorized: true,
    ALPNProtocols: [TUNNEL_ALPN],
    // A caller of a federated trust domain names it in SNI: its chain is verified against that trust
    // domain's roots alone (proxy/core/federated-trust.ts). Read per handshake, so bundle changes apply at once.
    SNICallback: (servername, done) => material().federation.answerSni(servername, done),
    allowHTTP1: false,
    handshakeTimeout: limits.handshakeTimeoutMs,
    // A client that completes TLS without offering h2 is dropped this soon.
    unknownProtocolTimeout: limits.handshakeTimeoutMs,
    maxSessionMemory: limits.maxSessionMemoryMb,
    maxHeaderListPairs,
    peerMaxConcurrentStreams: limits.maxStreamsPerSession,
    settings: {
      enablePush: false,
      maxConcurrentStreams: limits.maxStreamsPerSession,
      initialWindowSize: limits.streamWindowBytes,
      maxHeaderListSize: limits.maxHeaderListSize,
    },
  });
  // The hard bound on sockets; the handshake pool and session admission refuse earlier and say why.
  server.maxConnections = limits.maxSessions + limits.maxHandshakes;
  return server;
}
