/**
 * The one bounded HTTP server behind every admin and status port (sidecar, agent, control plane,
 * injector). Each of those is a routing table: path → a function returning the reply; this module owns
 * what they share:
 * - limits, like every listener: a small header budget, header and request timeouts, keep-alive, a
 *   connection cap;
 * - methods: GET and HEAD by default (HEAD gets the headers without the body); anything else is 405 with
 *   `allow`; a few routes (the agent's `POST /quitquitquit`) take the raw request instead;
 * - replies: text or JSON, always with content-length and `cache-control: no-store` (admin answers are
 *   live state); an unknown path gets the server's 404; a route that throws gets a 500.
 * Bind these ports to loopback unless said otherwise: they disclose topology.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { defineLimits, limitDefaults, withOverrides, type LimitValues } from './limit-schema.js';

/** Every admin and status port's listener limits (a server may pass its own, e.g. the agent's status port). */
export const ADMIN_HTTP_LIMIT_SCHEMA = defineLimits({
  maxHeaderBytes: { default: 8 * 1024, min: 1024, max: 65_536, unit: 'bytes', doc: 'largest request head on an admin port' },
  headersTimeoutMs: { default: 5_000, min: 1, max: 60_000, unit: 'ms', doc: 'a request head must arrive within this' },
  requestTimeoutMs: { default: 10_000, min: 1, max: 300_000, unit: 'ms', doc: 'a whole request must arrive within this' },
  keepAliveTimeoutMs: { default: 5_000, min: 1, max: 300_000, unit: 'ms', doc: 'an idle kept-alive connection is closed after this' },
  maxConnections: { default: 64, min: 1, max: 65_536, unit: 'count', doc: 'concurrent connections to one admin port' },
});

export type AdminHttpLimits = LimitValues<typeof ADMIN_HTTP_LIMIT_SCHEMA>;

export const DEFAULT_ADMIN_HTTP_LIMITS: AdminHttpLimits = limitDefaults(ADMIN_HTTP_LIMIT_SCHEMA);

export interface AdminReply {
  readonly status: number;
  readonly contentType: string;
  readonly body: string;
  readonly headers?: Readonly<Record<string, string>>;
}

/** A route answers with a reply, now or later. */
export type AdminRoute = (req: IncomingMessage) => AdminReply | Promise<AdminReply>;
/** A route that handles the request itself, whatever its method (reads a body, answers when it ends). */
export type AdminRawRoute = (req: IncomingMessage, res: ServerResponse) => void;

export interface AdminHttpOptions {
  /** Fixed paths (the query string is ignored). */
  readonly routes: Readonly<Record<string, AdminRoute>>;
  /** Paths not in `routes` (e.g. one per configured app probe); undefined means 404. */
  readonly lookup?: (path: string) => AdminRoute | undefined;
  /** Paths handled before the method check. */
  readonly rawRoutes?: Readonly<Record<string, AdminRawRoute>>;
  /** Default GET and HEAD. */
  readonly methods?: readonly string[];
  readonly methodNotAllowed: AdminReply;
  readonly notFound: (path: string) => AdminReply;
  /** A route that threw or rejected; default 500 "internal error". */
  readonly onError?: (err: unknown, path: string) => AdminReply;
  readonly limits?: Partial<AdminHttpLimits>;
}

export function textReply(status: number, body: string, contentType = 'text/plain'): AdminReply {
  return { status, contentType, body };
}

/** Pretty-printed, one trailing newline: these are read by people with curl as often as by programs. */
export function jsonReply(status: number, value: unknown): AdminReply {
  return { status, contentType: 'application/json', body: `${JSON.stringify(value, null, 2)}\n` };
}

export function sendReply(res: ServerResponse, reply: AdminReply): void {
  if (res.destroyed || res.headersSent) return;
  res.writeHead(reply.status, {
    'content-type': reply.contentType,
    'content-length': Buffer.byteLength(reply.body),
    'cache-control': 'no-store',
    ...reply.headers,
  });
  res.end(res.req.method === 'HEAD' ? undefined : reply.body);
}

const INTERNAL_ERROR = textReply(500, 'internal error\n');

export function createAdminHttpServer(options: AdminHttpOptions): Server {
  const limits = withOverrides(DEFAULT_ADMIN_HTTP_LIMITS, options.limits);
  const methods = options.methods ?? ['GET', 'HEAD'];
  const notAllowed: AdminReply = { ...options.methodNotAllowed, headers: { allow: methods.join(', '), ...options.methodNotAllowed.headers } };
  const routes = new Map(Object.entries(options.routes));
  const rawRoutes = new Map(Object.entries(options.rawRoutes ?? {}));
  const onError = options.onError ?? ((): AdminReply => INTERNAL_ERROR);

  const server = createServer(
    { maxHeaderSize: limits.maxHeaderBytes, headersTimeout: limits.headersTimeoutMs, requestTimeout: limits.requestTimeoutMs, keepAliveTimeout: limits.keepAliveTimeoutMs },
    (req, res) => {
      const path = (req.url ?? '/').split('?')[0] as string;
      const raw = rawRoutes.get(path);
      if (raw !== undefined) return raw(req, res);
      if (!methods.includes(req.method ?? '')) return sendReply(res, notAllowed);
      const route = routes.get(path) ?? options.lookup?.(path);
      if (route === undefined) return sendReply(res, options.notFound(path));
      const fail = (err: unknown): void => {
        if (res.headersSent) res.destroy();
        else sendReply(res, onError(err, path));
      };
      try {
        const reply = route(req);
        if (reply instanceof Promise) reply.then((r) => sendReply(res, r), fail);
        else sendReply(res, reply);
      } catch (err) {
        fail(err);
      }
    },
  );
  server.maxConnections = limits.maxConnections;
  return server;
}
