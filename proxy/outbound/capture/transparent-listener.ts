/**
 * Outbound transparent capture: the listener on the outbound capture port (15001) that iptables sends
 * every outbound TCP connection of the workload to (capture/).
 *
 *   accept → original destination (SO_ORIGINAL_DST) → index lookup (virtual IP or endpoint address)
 *     ├ a mesh service port → the same outbound path as explicit listeners (TCP forwarder, or the HTTP
 *     │                        listener's handleConnection for `http` ports)
 *     └ anything else       → passthrough to the original destination (default), or refused
 *                             (`outsideMesh: 'refuse'`, a mesh that allows only mesh destinations)
 *
 * A connection that was not redirected (someone dialled 15001 itself) has no other destination: it is
 * refused, never looped back to ourselves. Each outcome is counted and logged.
 *
 * The index is rebuilt once per config (`setUpstreams`) and swapped whole; a connection reads it once, at
 * accept, so it is routed by one consistent config.
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { UpstreamService } from '../../../api/data-plane.js';
import { describeError, isTrellisError } from '../../../common/errors.js';
import type { Logger } from '../../../common/log.js';
import { nextCorrelationId } from '../../core/correlation.js';
import { getSocketOriginalDst, originalDstUnavailableReason, type OriginalDestination } from '../../core/original-dst.js';
import { resetSocket } from '../../core/socket-splice.js';
import { closeWithGrace, listenForCapture } from '../../core/listen.js';
import { TRANSPARENT_DEFAULTS } from '../../core/limits.js';
import { withOverrides } from '../../../common/limit-schema.js';
import type { OutboundRoute } from '../route.js';
import { buildTransparentIndex, type TransparentIndex } from './destination-index.js';
import type { TransparentMetrics } from './transparent-metrics.js';
import { passThrough } from './passthrough.js';
import { CODE } from '../../../common/error-codes.js';
import { isHttpFamily } from '../../../api/port-protocol.js';

/** What happens to a captured connection whose destination is not a mesh service. */
export type OutsideMeshPolicy = 'passthrough' | 'refuse';

export const DEFAULT_OUTBOUND_CAPTURE_PORT = 15001;

export interface TransparentListenerLimits {
  /** Concurrent captured connections; more are reset and counted (`max-connections`). */
  readonly maxConnections: number;
  /** A passthrough destination must accept within this. */
  readonly connectTimeoutMs: number;
  /** A passthrough connection silent both ways this long is closed (0 = never). */
  readonly idleTimeoutMs: number;
}

export const DEFAULT_TRANSPARENT_LIMITS: TransparentListenerLimits = TRANSPARENT_DEFAULTS;

export interface TransparentListenerOptions {
  /** Default 0.0.0.0; `::` for dual stack (IPv4 clients are looked up in the IPv4 table). */
  readonly address?: string;
  /** Default 15001; 0 binds any free port (tests). */
  readonly port?: number;
  readonly outsideMesh: OutsideMeshPolicy;
  readonly limits?: Partial<TransparentListenerLimits>;
  readonly metrics: TransparentMetrics;
  readonly logger: Logger;
  /** One line per passthrough connection at its end (mesh connections log on their own path). */
  readonly accessLog: boolean;
  /** The mesh's TCP path for a connection with its route (the sidecar's `forwardTcp`). */
  readonly forwardTcp: (socket: Socket, route: OutboundRoute) => void;
  /** The mesh's HTTP path (`OutboundHttpListener.handleConnection`); without it `http` ports go as TCP. */
  readonly forwardHttp?: (socket: Socket, route: OutboundRoute) => void;
  /** Reads where a connection was going; `getSocketOriginalDst` unless a test hands in its own. */
  readonly originalDst?: (socket: Socket) => OriginalDestination;
  /** Why original destinations cannot be read here, or null; `originalDstUnavailableReason` by default. */
  readonly unavailableReason?: () => string | null;
}

export interface TransparentListener {
  /** Binds the capture port; fails with TRELLIS_CAPTURE_UNAVAILABLE when the addon cannot be used. */
  listen(): Promise<AddressInfo>;
  /** New config: the index is rebuilt and swapped whole. */
  setUpstreams(upstreams: readonly UpstreamService[]): void;
  /** Changes what happens to destinations outside the mesh, for new connections. */
  setOutsideMesh(policy: OutsideMeshPolicy): void;
  address(): AddressInfo | undefined;
  /** Captured connections open now (all outcomes). */
  connectionCount(): number;
  /** Stops accepting; passthrough connections may finish within `graceMs`, then are cut. */
  close(graceMs?: number): Promise<void>;
}

export function createTransparentListener(options: TransparentListenerOptions): TransparentListener {
  const limits = withOverrides(DEFAULT_TRANSPARENT_LIMITS, options.limits);
  const readOriginalDst = options.originalDst ?? getSocketOriginalDst;
  const unavailable = options.unavailableReason ?? originalDstUnavailableReason;
  const log = options.logger;
  const metrics = options.metrics;
  let index: TransparentIndex = buildTransparentIndex([]);
  let outsideMesh = options.outsideMesh;
  const sockets = new Set<Socket>();
  const passthroughs = new Set<() => void>();
  const track = (cut: () => void): (() => void) => {
    passthroughs.add(cut);
    return () => passthroughs.delete(cut);
  };
  const server: Server = createServer({ allowHalfOpen: true, noDelay: true });

  const refuse: Refuse = (socket, result, fields, message) => {
    metrics.connections.inc({ result, destination: 'outside-mesh' });
    log.warn({ result, ...fields }, message);
    resetSocket(socket);
  };

  server.on('connection', (socket: Socket) => {
    socket.on('error', () => undefined);
    if (sockets.size >= limits.maxConnections) {
      refuse(socket, 'max-connections', { maxConnections: limits.maxConnections }, 'captured connection reset: connection limit reached');
      return;
    }
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    const destination = originalDestination(socket, readOriginalDst, refuse);
    if (destination === undefined) return;
    const route = index.lookup(destination.address, destination.port);
    if (route !== undefined) {
      metrics.connections.inc({ result: 'mesh', destination: `${route.namespace}/${route.service}` });
      if (isHttpFamily(route.protocol) && options.forwardHttp !== undefined) options.forwardHttp(socket, route);
      else options.forwardTcp(socket, route);
      return;
    }
    const correlationId = nextCorrelationId();
    const target = destination.family === 6 ? `[${destination.address}]:${destination.port}` : `${destination.address}:${destination.port}`;
    if (outsideMesh === 'refuse') {
      refuse(socket, 'refused-outside-mesh', { correlationId, destination: target }, 'connection to a destination outside the mesh refused (only mesh destinations are allowed)');
      return;
    }
    passThrough(socket, destination, correlationId, { metrics, logger: log, accessLog: options.accessLog, connectTimeoutMs: limits.connectTimeoutMs, idleTimeoutMs: limits.idleTimeoutMs, track });
  });

  return {
    listen(): Promise<AddressInfo> {
      const bind = { host: options.address ?? '0.0.0.0', port: options.port ?? DEFAULT_OUTBOUND_CAPTURE_PORT };
      return listenForCapture(server, bind, 'outbound capture', unavailable(), log, { outsideMesh });
    },
    setUpstreams(upstreams: readonly UpstreamService[]): void {
      const next = buildTransparentIndex(upstreams);
      for (const conflict of next.conflicts) log.warn({ conflict }, 'two services claim one address and port for transparent capture');
      index = next;
    },
    setOutsideMesh(policy: OutsideMeshPolicy): void {
      outsideMesh = policy;
    },
    address(): AddressInfo | undefined {
      const a = server.address();
      return a !== null && typeof a === 'object' ? a : undefined;
    },
    connectionCount(): number {
      return sockets.size;
    },
    close(graceMs = 5_000): Promise<void> {
      // Passthroughs are cut by their own handle (so their log line says `cut`); whatever the mesh paths
      // still hold after the grace period (kept-alive HTTP connections, say) is reset here, so close() ends.
      return closeWithGrace(server, graceMs, () => {
        for (const cut of [...passthroughs]) cut();
        for (const socket of [...sockets]) resetSocket(socket);
      });
    },
  };
}

type Refuse = (socket: Socket, result: 'refused-outside-mesh' | 'not-redirected' | 'original-dst-failed' | 'max-connections', fields: Record<string, unknown>, message: string) => void;

/** Where a captured connection was going, or undefined when that cannot be read (the connection is refused). */
function originalDestination(socket: Socket, read: (socket: Socket) => OriginalDestination, refuse: Refuse): OriginalDestination | undefined {
  try {
    return read(socket);
  } catch (err) {
    const code = isTrellisError(err) ? err.code : CODE.CAPTURE_ORIGINAL_DST_FAILED;
    if (code === CODE.CAPTURE_NOT_REDIRECTED) {
      refuse(socket, 'not-redirected', { code, client: `${socket.remoteAddress}:${socket.remotePort}` }, 'connection to the outbound capture port itself refused: it was not redirected, so it has no destination');
    } else {
      refuse(socket, 'original-dst-failed', { code, err: describeError(err) }, 'captured connection reset: its original destination cannot be read');
    }
    return undefined;
  }
}
