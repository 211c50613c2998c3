/**
 * The gateway's client-facing listeners. An `http` listener is a node:http server. An `https` listener is
 * a TLS server (TLS 1.2 or 1.3, modern suites only, certificates by SNI from tls-store.ts, optional client
 * certificates) that hands each connection, by its negotiated ALPN, to one node:http server (http/1.1) or
 * one node:http2 server (h2) that never listen themselves: the same request handler serves both.
 *
 * What a client can do to a listener is bounded: the head's size (431) and the time to send it (408),
 * the whole request's time, idle keep-alive, connections per listener, TLS handshakes (10 s; garbage and
 * failed handshakes are counted and closed), HTTP/2 streams per connection, header list size, and the
 * app-facing session guard of the sidecars (proxy/http2/app-session-guard.ts: rapid reset → GOAWAY
 * ENHANCE_YOUR_CALM, protocol errors end the connection and its socket). One connection's trouble stays
 * in it. Request smuggling has nothing to exploit: llhttp in strict mode refuses ambiguous framing
 * (Content-Length with Transfer-Encoding, repeated lengths, bare LF, obs-fold), and the request goes on
 * to the mesh re-framed by node, never as the client's bytes.
 */
import { once } from 'node:events';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from 'node:http';
import { createServer as createH2Server, type Http2Server, type ServerHttp2Session } from 'node:http2';
import type { AddressInfo, Socket } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import type { Logger } from '../common/log.js';
import { DEFAULT_LIMITS } from '../proxy/core/limits.js';
import { guardAppSession } from '../proxy/http2/app-session-guard.js';
import type { GatewayLimits, ListenerSpec } from './config-types.js';
import type { GatewayMetrics } from './metrics.js';
import type { ClientRequest, UpgradeContext } from './request-handler.js';
import { isWebSocketUpgrade, responseOnSocket } from './websocket.js';
import type { ClientResponse } from './failure.js';
import { CertificateStore } from './tls-store.js';
import { ListenerConnections } from './listener-drain.js';

const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;

export interface RunningListener {
  readonly spec: ListenerSpec;
  address(): AddressInfo;
  close(graceMs: number): Promise<void>;
}

type Handler = (req: ClientRequest, res: ClientResponse, upgrade?: UpgradeContext) => void;

function http1Server(limits: GatewayLimits, handler: Handler): HttpServer {
  const server = createHttpServer({
    maxHeaderSize: limits.maxHeaderBytes,
    requestTimeout: limits.requestTimeoutMs,
    headersTimeout: limits.headersTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    requireHostHeader: true,
    insecureHTTPParser: false,
    // How often the head and request timeouts are checked (node's default, 30 s, would let a slow client
    // hold a connection for up to 30 s past its deadline).
    connectionsCheckingInterval: 500,
  }, handler);
  server.maxRequestsPerSocket = 0;
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    if (!isWebSocketUpgrade(req)) {
      socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    handler(req, responseOnSocket(req, socket), { socket, head });
  });
  return server;
}

/** The TLS socket being handed over: node emits 'session' synchronously inside emit('connection'). */
const handing: { socket: Socket | undefined } = { socket: undefined };

function http2Server(limits: GatewayLimits, handler: Handler, listener: string, metrics: GatewayMetrics, log: Logger): Http2Server {
  const server = createH2Server({
    maxSessionMemory: 16,
    settings: { maxConcurrentStreams: limits.maxConcurrentStreams, maxHeaderListSize: limits.maxHeaderBytes, initialWindowSize: 1024 * 1024, enablePush: false },
    maxHeaderListPairs: 256,
  }, handler);
  server.setTimeout(limits.keepAliveTimeoutMs);
  server.on('session', (session: ServerHttp2Session) => {
    // The raw socket, not session.socket: that proxy throws once the session lets go of it.
    const socket = handing.socket;
    if (socket === undefined) return;
    guardAppSession(session, socket, DEFAULT_LIMITS, (reason, detail) => {
      metrics.refusals.inc({ listener, route: 'none', reason: `h2-${reason}` });
      log.warn({ listener, reason, detail }, 'client HTTP/2 connection ended');
    });
  });
  return server;
}

export async function startListener(spec: ListenerSpec, limits: GatewayLimits, handler: Handler, metrics: GatewayMetrics, log: Logger): Promise<RunningListener> {
  const h1 = http1Server(limits, handler);
  let outer: HttpServer | TlsServer;
  let store: CertificateStore | undefined;
  let h2: Http2Server | undefined;
  let connections: ListenerConnections;
  if (spec.protocol === 'http') {
    outer = h1;
    connections = new ListenerConnections(h1, undefined);
    h1.on('connection', (socket: Socket) => {
      connections.add(socket);
      metrics.connections.inc({ listener: spec.name, protocol: 'http/1.1' });
    });
  } else {
    const tls = spec.tls as NonNullable<ListenerSpec['tls']>;
    const certs = await CertificateStore.load(tls);
    store = certs;
    const h2server = http2Server(limits, handler, spec.name, metrics, log);
    h2 = h2server;
    const tracked = new ListenerConnections(h1, h2server);
    connections = tracked;
    // h1 never listens (connections are handed to it): start node's head and request timeout checks.
    h1.emit('listening');
    const clientCert = tls.clientCertificate;
    const server = createTlsServer({
      ...certs.defaults(),
      SNICallback: (name, cb) => cb(null, certs.contextFor(name)),
      ALPNProtocols: ['h2', 'http/1.1'],
      handshakeTimeout: TLS_HANDSHAKE_TIMEOUT_MS,
      requestCert: clientCert !== undefined,
      rejectUnauthorized: clientCert?.required ?? false,
    });
    server.on('secureConnection', (socket: TLSSocket) => {
      const proto = socket.alpnProtocol === 'h2' ? 'h2' : 'http/1.1';
      tracked.add(socket, proto === 'h2');
      metrics.connections.inc({ listener: spec.name, protocol: proto });
      if (proto !== 'h2') {
        h1.emit('connection', socket);
        return;
      }
      handing.socket = socket;
      try {
        h2server.emit('connection', socket);
      } finally {
        handing.socket = undefined;
      }
    });
    server.on('tlsClientError', (err: Error & { code?: string }, socket: TLSSocket) => {
      metrics.tlsErrors.inc({ listener: spec.name, reason: tlsReason(err) });
      log.debug({ listener: spec.name, err: err.message, client: socket.remoteAddress }, 'TLS handshake failed');
      socket.destroy();
    });
    certs.watch(log, spec.name, () => {
      server.setSecureContext(certs.defaults());
      metrics.certificateReloads.inc({ listener: spec.name });
    });
    outer = server;
  }
  outer.maxConnections = limits.maxConnections;
  // SO_REUSEPORT: a reload that changes this listener binds its successor on the same port before this
  // one stops accepting, so the port never refuses connections (both sockets must set it; Linux lets only
  // the same user share a port this way).
  outer.listen({ port: spec.port, host: spec.address, reusePort: true });
  await Promise.race([once(outer, 'listening'), once(outer, 'error').then(([err]) => Promise.reject(err as Error))]);
  log.info({ listener: spec.name, protocol: spec.protocol, address: outer.address() }, 'gateway listener bound');
  return {
    spec,
    address: () => outer.address() as AddressInfo,
    async close(graceMs) {
      store?.stop();
      const closed = new Promise((r) => outer.close(r));
      await connections.drain(graceMs);
      if (outer !== h1) h1.close();
      h2?.close();
      await closed;
    },
  };
}

function tlsReason(err: Error & { code?: string }): string {
  const code = err.code ?? '';
  if (code === 'ERR_SSL_NO_SHARED_CIPHER' || /no shared cipher/i.test(err.message)) return 'no-shared-cipher';
  if (/version/i.test(err.message)) return 'version';
  if (/certificate/i.test(err.message)) return 'client-certificate';
  if (code === 'ERR_TLS_HANDSHAKE_TIMEOUT' || /timeout/i.test(err.message)) return 'timeout';
  return 'malformed';
}
