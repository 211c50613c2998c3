/**
 * A client-facing listener's connections, tracked so that closing the listener (gateway stop, or a
 * reload that removes or changes it) drains them instead of cutting them: an HTTP/1.1 connection idle
 * between requests is closed at once; one with a request in flight answers it with `Connection: close`
 * (or, when its head is already out, is closed once it is written); an HTTP/2 session gets GOAWAY and its
 * open streams finish; a WebSocket carries on. Whatever is still open when the grace ends is destroyed.
 */
import type { IncomingMessage, Server as HttpServer, ServerResponse } from 'node:http';
import type { Http2Server, ServerHttp2Session } from 'node:http2';
import type { Socket } from 'node:net';

export class ListenerConnections {
  private readonly sockets = new Set<Socket>();
  /** HTTP/1.1 connections with a request in flight, and its response. */
  private readonly inFlight = new Map<Socket, ServerResponse>();
  private readonly upgraded = new Set<Socket>();
  private readonly sessions = new Set<ServerHttp2Session>();
  /** Connections carrying HTTP/2: their session is closed instead (GOAWAY). */
  private readonly http2 = new Set<Socket>();
  private draining = false;

  /** Watches `h1`'s requests and upgrades, and `h2`'s sessions (registered before their handlers run). */
  constructor(h1: HttpServer, h2: Http2Server | undefined) {
    h1.prependListener('request', (req: IncomingMessage, res: ServerResponse) => this.request(req.socket, res));
    h1.prependListener('upgrade', (_req: IncomingMessage, socket: Socket) => this.upgraded.add(socket));
    h2?.prependListener('session', (session: ServerHttp2Session) => {
      this.sessions.add(session);
      session.once('close', () => this.sessions.delete(session));
      if (this.draining) session.close();
    });
  }

  /** A connection accepted by the listener; `http2` when ALPN chose h2. */
  add(socket: Socket, http2 = false): void {
    this.sockets.add(socket);
    if (http2) this.http2.add(socket);
    socket.once('close', () => {
      this.sockets.delete(socket);
      this.http2.delete(socket);
      this.inFlight.delete(socket);
      this.upgraded.delete(socket);
    });
  }

  private request(socket: Socket, res: ServerResponse): void {
    this.inFlight.set(socket, res);
    if (this.draining) res.shouldKeepAlive = false;
    res.once('finish', () => {
      if (this.inFlight.get(socket) === res) this.inFlight.delete(socket);
      if (this.draining && !this.upgraded.has(socket)) socket.end();
    });
  }

  /** Drains every connection; resolves when all are closed, at the latest `graceMs` from now. */
  drain(graceMs: number): Promise<void> {
    this.draining = true;
    for (const session of this.sessions) session.close();
    for (const socket of this.sockets) {
      if (this.upgraded.has(socket) || this.http2.has(socket)) continue;
      const res = this.inFlight.get(socket);
      if (res === undefined) socket.end();
      else if (!res.headersSent) res.shouldKeepAlive = false;
    }
    return new Promise((resolve) => {
      const check = setInterval(() => {
        if (this.sockets.size > 0) return;
        clearInterval(check);
        clearTimeout(deadline);
        resolve();
      }, 20);
      const deadline = setTimeout(() => {
        clearInterval(check);
        for (const socket of this.sockets) socket.destroy();
        resolve();
      }, graceMs);
    });
  }

}
