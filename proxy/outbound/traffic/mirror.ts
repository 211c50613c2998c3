/**
 * Request mirroring (a TrafficRoute rule's `mirror: { labels, percent }`): a copy of the request goes to an
 * endpoint with those labels, as an HTTP/2 request on the pooled tunnel sessions (the destination's sidecar
 * hands it to its app in the app's own protocol), and its response is read and discarded.
 *
 * A mirror never delays or fails the request it copies: it is started beside it, shares no state with it
 * but the request's fields, never waits (a body chunk the mirror stream cannot take at once abandons the
 * mirror instead of slowing the caller), never counts against the balancer's health or outlier detection,
 * and is cancelled when it outlives `MIRROR_TIMEOUT_MS`. At most `MAX_MIRRORS_IN_FLIGHT` run per
 * destination; beyond that a mirror is skipped, never queued. Envoy's convention is kept: the copy's
 * `:authority` gets a `-shadow` suffix, so the mirrored app can tell copies from real calls.
 *
 * Counted as `trellis_route_mirrors_total{destination,result}`: sent (the copy was answered), failed (no
 * answer), abandoned (the caller's body came faster than the mirror could take it, or the caller's request
 * failed mid-body), skipped-limit, skipped-body (an HTTP/1.1 chunked body: the lanes carry it framed, and
 * the copy is not worth decoding it for), no-endpoint.
 */
import type { ClientHttp2Stream, OutgoingHttpHeaders } from 'node:http2';
import { formatAuthority } from '../../core/destination.js';
import { TARGET_HEADER } from '../../core/tunnel-protocol.js';
import { cancelStream } from '../../core/stream-reset.js';
import { labelsMatch } from '../../../policy/traffic/index.js';
import type { LoadBalancer } from '../tunnel-client/load-balancer.js';
import type { SessionPool } from '../tunnel-client/session-pool.js';
import { openRequestStream } from '../tunnel-client/open-stream.js';
import { routeTargetPort, type OutboundRoute } from '../route.js';
import type { RequestPlan } from './request-plan.js';

/** Mirrors running at once per destination; more are skipped (mirroring is best effort, never a queue). */
export const MAX_MIRRORS_IN_FLIGHT = 64;
/** A mirror still open after this is cancelled: a slow shadow must not hold sessions and memory. */
export const MIRROR_TIMEOUT_MS = 15_000;

export type MirrorResult = 'sent' | 'failed' | 'abandoned' | 'skipped-limit' | 'skipped-body' | 'no-endpoint';

export interface MirrorDeps {
  readonly pool: Pick<SessionPool, 'openStream' | 'tryOpenStream'>;
  readonly balancer: Pick<LoadBalancer, 'pick' | 'begin' | 'end'>;
}

/** The copy's body side: chunks as the caller sends them, then the end. Every method is safe after it ended. */
export class MirrorCopy {
  private stream: ClientHttp2Stream | undefined;
  /** Chunks that came before the stream opened (bounded by the stream's own window once it is open). */
  private early: Buffer[] | undefined = [];
  private ended = false;
  private over = false;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly plan: RequestPlan,
    private readonly withBody: boolean,
  ) {
    // A copy without a body is complete from the start: nothing the caller does later can cut it.
    this.ended = !withBody;
    this.timer = setTimeout(() => this.finish('failed'), MIRROR_TIMEOUT_MS);
    this.timer.unref();
  }

  opened(stream: ClientHttp2Stream): void {
    if (this.over) {
      cancelStream(stream);
      return;
    }
    this.stream = stream;
    stream.on('error', () => this.finish('failed'));
    stream.on('data', noop);
    stream.once('close', () => this.finish(stream.rstCode === 0 || stream.rstCode === undefined ? 'sent' : 'failed'));
    const early = this.early ?? [];
    this.early = undefined;
    for (const chunk of early) if (!this.write(chunk)) return;
    if (this.ended && this.withBody) stream.end();
  }

  /** A body chunk of the caller's request; false when the mirror gave up (it never waits for a slow peer). */
  write(chunk: Buffer): boolean {
    if (this.over) return false;
    const stream = this.stream;
    if (stream === undefined) {
      (this.early as Buffer[]).push(chunk);
      return true;
    }
    if (stream.write(chunk)) return true;
    this.finish('abandoned');
    return false;
  }

  /** The caller's body ended (cleanly). */
  end(): void {
    this.ended = true;
    if (!this.over && this.stream !== undefined && this.withBody) this.stream.end();
  }

  /** The caller's request broke off mid-body: the copy must not reach the app as complete. */
  abandon(): void {
    if (!this.ended) this.finish('abandoned');
  }

  finish(result: MirrorResult): void {
    if (this.over) return;
    this.over = true;
    clearTimeout(this.timer);
    this.early = undefined;
    const stream = this.stream;
    if (stream !== undefined && !stream.destroyed && result !== 'sent') cancelStream(stream);
    this.plan.mirrorEnded(result);
  }
}

/**
 * Starts the copy of a request whose plan drew a mirror: `headers` are the tunnel request's (copied here),
 * `withBody` whether body chunks will follow (then `write`/`end`). Undefined when no copy goes.
 */
export function startMirror(deps: MirrorDeps, route: OutboundRoute, plan: RequestPlan, headers: OutgoingHttpHeaders, withBody: boolean): MirrorCopy | undefined {
  const labels = plan.mirrorLabels;
  if (labels === undefined) return undefined;
  if (!plan.takeMirrorSlot(MAX_MIRRORS_IN_FLIGHT)) return undefined;
  const picked = deps.balancer.pick(route.service, route.namespace, undefined, route.servicePort, (e) => labelsMatch(labels, e.endpoint.labels));
  if (picked === undefined) {
    plan.mirrorEnded('no-endpoint');
    return undefined;
  }
  const port = routeTargetPort(route, picked.endpoint);
  const out: OutgoingHttpHeaders = { ...headers, ':authority': `${String(headers[':authority'])}-shadow` };
  out[TARGET_HEADER] = formatAuthority({ service: route.service, namespace: route.namespace, port });
  const copy = new MirrorCopy(plan, withBody);
  // The balancer counts the copy's load, but its outcome never marks the endpoint (end(..., true)).
  deps.balancer.begin(picked);
  let released = false;
  const release = (): void => {
    if (!released) deps.balancer.end(picked, true);
    released = true;
  };
  openRequestStream(
    deps.pool,
    { endpoint: picked.endpoint, service: route.service, namespace: route.namespace, port },
    out,
    { endStream: !withBody },
    (stream) => {
      stream.once('close', release);
      copy.opened(stream);
    },
    () => {
      release();
      copy.finish('failed');
    },
  );
  return copy;
}

function noop(): void {}
