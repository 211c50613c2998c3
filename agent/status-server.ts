/**
 * The agent's status port (15020 in a pod): plaintext, reachable by the kubelet, and excluded from
 * inbound capture by the redirect rules. It serves only what the kubelet and a Job's app need:
 *   GET  /healthz                                  the agent process is alive
 *   GET  /ready                                    the agent has its certificate and config (sidecar probes)
 *   GET  /app-health/<container>/<livez|readyz|startupz>   the app's original probe, run from inside the pod
 *   POST /quitquitquit                             drain and exit 0: loopback callers only (a Job's app)
 * The admin port, with config and certificates, stays on loopback; this one says nothing an operator
 * would not show a kubelet. It starts before the identity bootstrap, so the kubelet's liveness probe
 * passes while the agent waits for the control plane.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { Counter, type Registry } from 'prom-client';
import type { Logger } from '../common/log.js';
import type { AppProbe, AppProbeTable } from './app-probes.js';
import { runAppProbe, type ProbeResult } from './app-probe-runner.js';

export const STATUS_LIMITS = Object.freeze({
  maxHeaderBytes: 8 * 1024,
  headersTimeoutMs: 5_000,
  requestTimeoutMs: 10_000,
  keepAliveTimeoutMs: 5_000,
  maxConnections: 256,
  /** Probe runs in flight at once (identical concurrent probes share one run). */
  maxProbesInFlight: 64,
  /** Bytes of a /quitquitquit request body read before answering (nothing is expected). */
  maxQuitBodyBytes: 1024,
});

export const QUIT_PATH = '/quitquitquit';

export interface StatusServerOptions {
  readonly probes: AppProbeTable;
  /** The agent's readiness; the kubelet sees only ready or not and the reasons. */
  readonly ready: () => { readonly ready: boolean; readonly reasons?: readonly string[] };
  /** Called once, after the answer to the first loopback `POST /quitquitquit` is sent. */
  readonly onQuit: () => void;
  readonly log: Logger;
  readonly registry?: Registry;
  /** Replaces the real probe runner (tests of the server's own behaviour). */
  readonly runProbe?: (probe: AppProbe) => Promise<ProbeResult>;
}

function send(res: ServerResponse, status: number, body: string, extra: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', ...extra });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

/** 127.0.0.0/8 and ::1, also as IPv4-mapped IPv6: what a container of this pod uses to reach the agent. */
export function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  return v4.startsWith('127.') || address === '::1';
}

export function createStatusServer(options: StatusServerOptions): Server {
  const run = options.runProbe ?? runAppProbe;
  const inFlight = new Map<string, Promise<ProbeResult>>();
  const counter =
    options.registry === undefined
      ? undefined
      : new Counter({ name: 'trellis_agent_app_probes_total', help: 'App probes run for the kubelet, by path and result (pass, fail, busy)', labelNames: ['path', 'result'], registers: [options.registry] });
  let quitting = false;

  const probe = (path: string, spec: AppProbe, res: ServerResponse): void => {
    let pending = inFlight.get(path);
    if (pending === undefined) {
      if (inFlight.size >= STATUS_LIMITS.maxProbesInFlight) {
        counter?.inc({ path, result: 'busy' });
        send(res, 503, `too many probes in flight (${STATUS_LIMITS.maxProbesInFlight})\n`);
        return;
      }
      pending = run(spec)
        .catch((err: unknown): ProbeResult => ({ ok: false, detail: `probe failed to run: ${(err as Error).message}` }))
        .finally(() => inFlight.delete(path));
      inFlight.set(path, pending);
    }
    void pending.then((result) => {
      counter?.inc({ path, result: result.ok ? 'pass' : 'fail' });
      if (!result.ok) options.log.info({ path, detail: result.detail }, 'app probe failed');
      if (!res.destroyed) send(res, result.ok ? 200 : 503, `${result.detail}\n`);
    });
  };

  const quit = (req: IncomingMessage, res: ServerResponse): void => {
    if (!isLoopback(req.socket.remoteAddress)) {
      options.log.warn({ from: req.socket.remoteAddress }, 'refused /quitquitquit from outside the pod');
      send(res, 403, 'only from inside the pod (loopback)\n');
      return;
    }
    // Drain a small body, if any, so the answer is not a reset; refuse a large one.
    let bytes = 0;
    req.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > STATUS_LIMITS.maxQuitBodyBytes) req.destroy();
    });
    req.on('end', () => {
      send(res, 200, 'draining and exiting\n', { connection: 'close' });
      if (quitting) return;
      quitting = true;
      options.log.info({ from: req.socket.remoteAddress }, 'asked to quit (/quitquitquit): draining');
      res.once('finish', () => options.onQuit());
    });
  };

  const server = createServer(
    { maxHeaderSize: STATUS_LIMITS.maxHeaderBytes, headersTimeout: STATUS_LIMITS.headersTimeoutMs, requestTimeout: STATUS_LIMITS.requestTimeoutMs, keepAliveTimeout: STATUS_LIMITS.keepAliveTimeoutMs },
    (req, res) => {
      const path = (req.url ?? '/').split('?')[0] as string;
      if (path === QUIT_PATH) {
        if (req.method !== 'POST') send(res, 405, 'POST only\n', { allow: 'POST' });
        else quit(req, res);
        return;
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        send(res, 405, 'GET or HEAD only\n', { allow: 'GET, HEAD' });
        return;
      }
      if (path === '/healthz') {
        send(res, 200, 'ok\n');
        return;
      }
      if (path === '/ready') {
        const state = options.ready();
        send(res, state.ready ? 200 : 503, state.ready ? 'ready\n' : `not ready: ${(state.reasons ?? []).join('; ') || 'starting'}\n`);
        return;
      }
      const spec = options.probes.get(path);
      if (spec !== undefined) {
        probe(path, spec, res);
        return;
      }
      send(res, 404, path.startsWith('/app-health/') ? 'no such app probe\n' : 'not found: /healthz /ready /app-health/<container>/<probe> POST /quitquitquit\n');
    },
  );
  server.maxConnections = STATUS_LIMITS.maxConnections;
  return server;
}
