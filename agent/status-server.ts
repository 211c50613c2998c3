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
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { Counter, type Registry } from 'prom-client';
import { createAdminHttpServer, sendReply, textReply, type AdminReply, type AdminRoute } from '../common/admin-http.js';
import type { Logger } from '../common/log.js';
import type { AppProbe, AppProbeTable } from './app-probes.js';
import { runAppProbe, type ProbeResult } from './app-probe-runner.js';
import { STATUS_LIMITS } from './limits.js';

export { STATUS_LIMITS } from './limits.js';

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

function text(status: number, body: string, headers?: Record<string, string>): AdminReply {
  return { ...textReply(status, body, 'text/plain; charset=utf-8'), ...(headers === undefined ? {} : { headers }) };
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

  const probe = (path: string, spec: AppProbe): AdminRoute => () => {
    let pending = inFlight.get(path);
    if (pending === undefined) {
      if (inFlight.size >= STATUS_LIMITS.maxProbesInFlight) {
        counter?.inc({ path, result: 'busy' });
        return text(503, `too many probes in flight (${STATUS_LIMITS.maxProbesInFlight})\n`);
      }
      pending = run(spec)
        .catch((err: unknown): ProbeResult => ({ ok: false, detail: `probe failed to run: ${(err as Error).message}` }))
        .finally(() => inFlight.delete(path));
      inFlight.set(path, pending);
    }
    return pending.then((result) => {
      counter?.inc({ path, result: result.ok ? 'pass' : 'fail' });
      if (!result.ok) options.log.info({ path, detail: result.detail }, 'app probe failed');
      return text(result.ok ? 200 : 503, `${result.detail}\n`);
    });
  };

  const quit = (req: IncomingMessage, res: ServerResponse): void => {
    if (!isLoopback(req.socket.remoteAddress)) {
      options.log.warn({ from: req.socket.remoteAddress }, 'refused /quitquitquit from outside the pod');
      sendReply(res, text(403, 'only from inside the pod (loopback)\n'));
      return;
    }
    // Drain a small body, if any, so the answer is not a reset; refuse a large one.
    let bytes = 0;
    req.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > STATUS_LIMITS.maxQuitBodyBytes) req.destroy();
    });
    req.on('end', () => {
      sendReply(res, text(200, 'draining and exiting\n', { connection: 'close' }));
      if (quitting) return;
      quitting = true;
      options.log.info({ from: req.socket.remoteAddress }, 'asked to quit (/quitquitquit): draining');
      res.once('finish', () => options.onQuit());
    });
  };

  return createAdminHttpServer({
    rawRoutes: {
      [QUIT_PATH]: (req, res) => {
        if (req.method !== 'POST') sendReply(res, text(405, 'POST only\n', { allow: 'POST' }));
        else quit(req, res);
      },
    },
    routes: {
      '/healthz': () => text(200, 'ok\n'),
      '/ready': () => {
        const state = options.ready();
        return text(state.ready ? 200 : 503, state.ready ? 'ready\n' : `not ready: ${(state.reasons ?? []).join('; ') || 'starting'}\n`);
      },
    },
    lookup: (path) => {
      const spec = options.probes.get(path);
      return spec === undefined ? undefined : probe(path, spec);
    },
    methodNotAllowed: text(405, 'GET or HEAD only\n'),
    notFound: (path) => text(404, path.startsWith('/app-health/') ? 'no such app probe\n' : 'not found: /healthz /ready /app-health/<container>/<probe> POST /quitquitquit\n'),
    limits: STATUS_LIMITS,
  });
}
