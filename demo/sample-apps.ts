/**
 * The demo's three small services, as plain HTTP servers on loopback (they know nothing of the mesh):
 *  - frontend  GET /checkout → POST orders /orders;  GET /sneak → GET payments /balance (not allowed)
 *  - orders    POST /orders  → POST payments /charge; GET /refund-check → GET payments /refunds (GET not allowed)
 *  - payments  answers anything with the caller's SPIFFE ID its agent verified, and counts what reached it.
 * A service calls another through its own agent's local port for that upstream, as apps in the mesh do.
 */
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface UpstreamReply {
  readonly status: number;
  readonly body: string;
  readonly deniedBy: string | undefined;
}

export interface SampleApps {
  readonly ports: { readonly frontend: number; readonly orders: number; readonly payments: number };
  paymentsHits(): number;
  close(): Promise<void>;
}

/** Where each app reaches its upstreams: local ports of its agent. */
export interface UpstreamPorts {
  readonly frontendToOrders: number;
  readonly frontendToPayments: number;
  readonly ordersToPayments: number;
}

export function callUpstream(port: number, method: string, path: string, deniedHeader: string): Promise<UpstreamReply> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, method, path, agent: false, timeout: 5_000, headers: { 'content-length': '0' } }, (res: IncomingMessage) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d.length + body.length > 4_096 ? '' : d));
      res.on('end', () => {
        const denied = res.headers[deniedHeader];
        resolve({ status: res.statusCode ?? 0, body: body.trim(), deniedBy: Array.isArray(denied) ? denied.join(', ') : denied });
      });
    });
    req.on('timeout', () => req.destroy(new Error('timed out after 5 s')));
    req.on('error', (err) => resolve({ status: 0, body: err.message, deniedBy: undefined }));
    req.end();
  });
}

function json(res: ServerResponse, status: number, value: unknown): void {
  const text = `${JSON.stringify(value)}\n`;
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function listen(server: Server): Promise<number> {
  server.keepAliveTimeout = 2_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

/** ZONE, when given, is named in every reply, so a caller sees which zone's copy of a service answered. */
export async function startSampleApps(upstreams: UpstreamPorts, deniedHeader: string, zone?: string): Promise<SampleApps> {
  const where = zone === undefined ? {} : { zone };
  let paymentsHits = 0;
  const payments = createServer((req, res) => {
    paymentsHits++;
    // Who called, as payments' own agent verified it (it sets x-forwarded-client-cert: URI=<SPIFFE ID>).
    const cert = req.headers['x-forwarded-client-cert'];
    const caller = typeof cert === 'string' && cert.startsWith('URI=') ? cert.slice(4) : null;
    req.resume();
    req.on('end', () => json(res, 200, { service: 'payments', ...where, method: req.method, path: req.url, charged: req.method === 'POST', caller }));
  });
  const orders = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      if (req.method === 'POST' && req.url === '/orders') {
        void callUpstream(upstreams.ordersToPayments, 'POST', '/charge', deniedHeader).then((payment) => json(res, payment.status === 200 ? 201 : 502, { service: 'orders', ...where, order: 'A-1001', payment }));
      } else if (req.url === '/refund-check') {
        void callUpstream(upstreams.ordersToPayments, 'GET', '/refunds', deniedHeader).then((payment) => json(res, 200, { service: 'orders', ...where, payment }));
      } else {
        json(res, 404, { service: 'orders', ...where, error: `no ${req.method} ${req.url}` });
      }
    });
  });
  const frontend = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      if (req.url === '/checkout') {
        void callUpstream(upstreams.frontendToOrders, 'POST', '/orders', deniedHeader).then((order) => json(res, order.status === 201 ? 200 : 502, { service: 'frontend', ...where, order }));
      } else if (req.url === '/sneak') {
        void callUpstream(upstreams.frontendToPayments, 'GET', '/balance', deniedHeader).then((payment) => json(res, 200, { service: 'frontend', ...where, payment }));
      } else {
        json(res, 404, { service: 'frontend', ...where, error: `no ${req.method} ${req.url}` });
      }
    });
  });
  const servers = [frontend, orders, payments];
  const [f, o, p] = await Promise.all(servers.map(listen));
  return {
    ports: { frontend: f as number, orders: o as number, payments: p as number },
    paymentsHits: () => paymentsHits,
    async close() {
      await Promise.all(servers.map((s) => new Promise((r) => {
        s.close(r);
        s.closeAllConnections();
      })));
    },
  };
}
