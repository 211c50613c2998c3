/**
 * Runs one of the app's original probes as the kubelet would, from inside the pod: an HTTP(S) GET with
 * the probe's headers (2xx and 3xx pass; redirects are not followed, and count as passing, as for the
 * kubelet), a TCP connect, or a gRPC health check. Each run has the probe's own timeout.
 *
 * The app is reached on loopback unless the probe names a host: the proxy's own connections to loopback
 * are never captured, while its connections to the pod's address would be sent back to inbound capture.
 */
import { connect } from 'node:net';
import { request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { AppProbe, HttpAppProbe, TcpAppProbe } from './app-probes.js';
import { grpcHealthProbe, type ProbeResult } from './grpc-health-probe.js';

export type { ProbeResult } from './grpc-health-probe.js';

export const APP_PROBE_HOST = '127.0.0.1';
/** What the kubelet sends; apps that tell probes apart by it keep working. */
const PROBE_USER_AGENT = 'kube-probe/trellis-agent';

function bracket(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

function headersOf(probe: HttpAppProbe, host: string): OutgoingHttpHeaders {
  const headers: Record<string, string | string[]> = { host: `${bracket(host)}:${probe.port}`, 'user-agent': PROBE_USER_AGENT, accept: '*/*', connection: 'close' };
  const given = new Set<string>();
  for (const { name, value } of probe.headers) {
    const key = name.toLowerCase();
    // The probe's own headers replace the defaults; a name given twice is sent twice.
    if (!given.has(key)) {
      given.add(key);
      headers[key] = value;
    } else {
      const existing = headers[key] as string | string[];
      headers[key] = Array.isArray(existing) ? [...existing, value] : [existing, value];
    }
  }
  return headers;
}

function httpProbe(probe: HttpAppProbe): Promise<ProbeResult> {
  const host = probe.host ?? APP_PROBE_HOST;
  const url = `${probe.scheme.toLowerCase()}://${bracket(host)}:${probe.port}${probe.path}`;
  return new Promise((resolve) => {
    let settled = false;
    const finish = (result: ProbeResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      resolve(result);
    };
    const options = { host, port: probe.port, path: probe.path, method: 'GET', headers: headersOf(probe, host), agent: false as const, maxHeaderSize: 16 * 1024 };
    const onResponse = (res: IncomingMessage): void => {
      const status = res.statusCode ?? 0;
      res.resume();
      finish({ ok: status >= 200 && status < 400, detail: `GET ${url}: HTTP ${status}` });
    };
    // Like the kubelet, HTTPS probes do not verify the app's certificate.
    const req = probe.scheme === 'HTTPS' ? httpsRequest({ ...options, rejectUnauthorized: false }, onResponse) : httpRequest(options, onResponse);
    const timer = setTimeout(() => finish({ ok: false, detail: `GET ${url}: no answer within ${probe.timeoutMs} ms` }), probe.timeoutMs);
    req.on('error', (err) => finish({ ok: false, detail: `GET ${url}: ${err.message}` }));
    req.end();
  });
}

function tcpProbe(probe: TcpAppProbe): Promise<ProbeResult> {
  const host = probe.host ?? APP_PROBE_HOST;
  const target = `${bracket(host)}:${probe.port}`;
  return new Promise((resolve) => {
    let settled = false;
    const socket = connect({ host, port: probe.port });
    const finish = (result: ProbeResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => finish({ ok: false, detail: `tcp connect to ${target}: no answer within ${probe.timeoutMs} ms` }), probe.timeoutMs);
    socket.once('connect', () => finish({ ok: true, detail: `tcp connect to ${target}: open` }));
    socket.once('error', (err) => finish({ ok: false, detail: `tcp connect to ${target}: ${err.message}` }));
  });
}

export function runAppProbe(probe: AppProbe): Promise<ProbeResult> {
  switch (probe.kind) {
    case 'http':
      return httpProbe(probe);
    case 'tcp':
      return tcpProbe(probe);
    case 'grpc':
      return grpcHealthProbe(APP_PROBE_HOST, probe.port, probe.service, probe.timeoutMs);
  }
}
