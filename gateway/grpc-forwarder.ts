/**
 * gRPC calls through the gateway. A gRPC call needs HTTP/2 end to end (its status travels in trailers),
 * so a call from an HTTP/2 client (`content-type: application/grpc…`) goes to the destination's sidecar
 * listener as h2c with prior knowledge, which every HTTP-family port of the sidecar accepts
 * (proxy/http2/preface.ts), over one kept HTTP/2 session per listener port: from there the sidecar's
 * HTTP/2 path carries it (per-call balancing, grpc-timeout deadlines, gRPC-status failures). Body and
 * answer are piped both ways; trailers are relayed; a reset on either side resets the other.
 */
import { connect, constants as h2, type ClientHttp2Session, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import type { Logger } from '../common/log.js';

/** Request fields HTTP/2 forbids or that the sidecar sets itself (node refuses connection-specific ones). */
const NOT_FORWARDED = new Set(['host', 'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'http2-settings']);

export function isGrpcRequest(req: { httpVersionMajor: number; headers: IncomingHttpHeaders }): boolean {
  const type = req.headers['content-type'];
  return req.httpVersionMajor === 2 && typeof type === 'string' && /^application\/grpc(?:$|[+;])/.test(type);
}

export class GrpcForwarder {
  private readonly sessions = new Map<number, ClientHttp2Session>();

  constructor(private readonly log: Logger) {}

  private session(port: number): ClientHttp2Session {
    const existing = this.sessions.get(port);
    if (existing !== undefined && !existing.closed && !existing.destroyed) return existing;
    const session = connect(`http://127.0.0.1:${port}`);
    session.on('error', (err) => this.log.debug({ err: err.message, port }, 'h2c session to the sidecar failed'));
    session.on('close', () => {
      if (this.sessions.get(port) === session) this.sessions.delete(port);
    });
    session.unref();
    this.sessions.set(port, session);
    return session;
  }

  /** Forwards one call; `done` gets the HTTP status (200 for any gRPC answer) once the call ended. */
  forward(port: number, authority: string, path: string, headers: OutgoingHttpHeaders, req: Http2ServerRequest, res: Http2ServerResponse, done: (status: number) => void): void {
    const out: OutgoingHttpHeaders = { ':method': 'POST', ':path': path, ':authority': authority, ':scheme': 'http' };
    for (const [name, value] of Object.entries(headers)) if (!NOT_FORWARDED.has(name) && value !== undefined) out[name] = value;
    out.te = 'trailers';
    let ended = false;
    const end = (status: number): void => {
      if (!ended) {
        ended = true;
        done(status);
      }
    };
    const up = this.session(port).request(out);
    up.on('response', (head, flags) => {
      const status = Number(head[':status'] ?? 502);
      const answer: OutgoingHttpHeaders = {};
      for (const [name, value] of Object.entries(head)) if (!name.startsWith(':') && value !== undefined) answer[name] = value;
      if ((flags & h2.NGHTTP2_FLAG_END_STREAM) !== 0) {
        // Trailers-only (an error before any message, e.g. UNIMPLEMENTED): the status is in these headers,
        // and a client reads it only if they end the stream, as here; headers then an empty end would lose it.
        res.stream.respond({ ':status': status, ...answer }, { endStream: true });
        end(status);
        return;
      }
      res.writeHead(status, answer);
      up.on('trailers', (trailers) => {
        const relayed: OutgoingHttpHeaders = {};
        for (const [name, value] of Object.entries(trailers)) if (!name.startsWith(":") && value !== undefined && value !== null) relayed[name] = value as string | string[];
        res.addTrailers(relayed);
      });
      up.pipe(res);
      up.on('end', () => end(status));
    });
    up.on('close', () => {
      // Reset by the sidecar (or its session died) before a clean end: the client's stream is reset too.
      if (!ended && up.rstCode !== h2.NGHTTP2_NO_ERROR) {
        res.stream.close(h2.NGHTTP2_INTERNAL_ERROR);
        end(502);
      }
    });
    up.on('error', () => undefined);
    res.on('close', () => {
      if (!res.writableFinished && !up.closed) up.close(h2.NGHTTP2_CANCEL);
    });
    req.pipe(up);
  }

  close(): void {
    for (const s of this.sessions.values()) s.close();
    this.sessions.clear();
  }
}
