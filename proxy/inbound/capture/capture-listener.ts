/**
 * Inbound capture: the listener on the inbound capture port (15006) that iptables sends every TCP
 * connection addressed to the workload's app ports (capture/). Mesh peers never arrive here: they
 * dial the tunnel port, which the rules leave alone. So everything here is plaintext from outside the
 * mesh, with no identity to authorize:
 *
 * - `strict`: refused (reset), counted and logged. The mesh's promise (every call authenticated and
 *   authorized) holds for the app.
 * - `permissive` (migration, while callers join the mesh): handed to the app at the port it was dialled
 *   on, counted and logged, so an operator can see who still calls without the mesh before turning
 *   strict on.
 *
 * The hand-off goes where mesh traffic for that port goes (the app port's host); for a port the config does
 * not declare, to the original destination itself. A non-loopback target is dialled from the hand-off
 * source (127.0.0.6, `::6`), which the rules exempt, so the hand-off is not captured straight back here.
 */
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { AppPort, InboundMode } from '../../../api/data-plane.js';
import { describeError, isTrellisError } from '../../../common/errors.js';
import type { Logger } from '../../../common/log.js';
import { nextCorrelationId } from '../../core/correlation.js';
import { getSocketOriginalDst, originalDstUnavailableReason, type OriginalDestination } from '../../core/original-dst.js';
import { resetSocket, spliceSockets, type SocketSpliceHandle } from '../../core/socket-splice.js';
import { closeWithGrace, listenForCapture } from '../../core/listen.js';
import { CAPTURE_DEFAULTS } from '../../core/limits.js';
import { withOverrides } from '../../../common/limit-schema.js';
import type { CaptureMetrics, CaptureResult } from './capture-metrics.js';
import { appLocalAddress, HANDOFF_SOURCE } from '../app-source.js';
import { CODE } from '../../../common/error-codes.js';

export const DEFAULT_INBOUND_CAPTURE_PORT = 15006;
export { HANDOFF_SOURCE_V4, HANDOFF_SOURCE_V6 } from '../app-source.js';

export interface CaptureListenerLimits {
  readonly maxConnections: number;
  /** The app must accept a handed-off connection within this. */
  readonly appConnectTimeoutMs: number;
  /** A handed-off connection silent both ways this long is closed (0 = never). */
  readonly idleTimeoutMs: number;
}

export const DEFAULT_CAPTURE_LIMITS: CaptureListenerLimits = CAPTURE_DEFAULTS;

export interface CaptureListenerOptions {
  /** Default 0.0.0.0 (REDIRECT sends to the address of the interface the connection came in on). */
  readonly address?: string;
  /** Default 15006; 0 binds any free port (tests). */
  readonly port?: number;
  readonly mode: InboundMode;
  readonly appPorts: readonly AppPort[];
  readonly limits?: Partial<CaptureListenerLimits>;
  readonly metrics: CaptureMetrics;
  readonly logger: Logger;
  /** One line per handed-off connection at its end (refusals are always logged). */
  readonly accessLog: boolean;
  readonly originalDst?: (socket: Socket) => OriginalDestination;
  readonly unavailableReason?: () => string | null;
  /** Source addresses of the hand-off (tests on loopback may need others). */
  readonly handoffSource?: { readonly v4: string; readonly v6: string };
}

export interface CaptureListener {
  listen(): Promise<AddressInfo>;
  /** New app ports (config change): used for new connections. */
  setAppPorts(appPorts: readonly AppPort[]): void;
  setMode(mode: InboundMode): void;
  address(): AddressInfo | undefined;
  connectionCount(): number;
  close(graceMs?: number): Promise<void>;
}

export function createCaptureListener(options: CaptureListenerOptions): CaptureListener {
  const limits = withOverrides(DEFAULT_CAPTURE_LIMITS, options.limits);
  const readOriginalDst = options.originalDst ?? getSocketOriginalDst;
  const unavailable = options.unavailableReason ?? originalDstUnavailableReason;
  const source = options.handoffSource ?? HANDOFF_SOURCE;
  const log = options.logger;
  const metrics = options.metrics;
  let mode = options.mode;
  let appPorts = portMap(options.appPorts);
  const sockets = new Set<Socket>();
  const handles = new Set<SocketSpliceHandle>();
  const server: Server = createServer({ allowHalfOpen: true, noDelay: true });

  const count = (result: CaptureResult): void => {
    metrics.connections.inc({ mode, result });
  };

  server.on('connection', (client: Socket) => {
    client.on('error', () => undefined);
    const caller = `${client.remoteAddress}:${client.remotePort}`;
    if (sockets.size >= limits.maxConnections) {
      count('max-connections');
      log.warn({ caller, maxConnections: limits.maxConnections }, 'inbound capture: connection reset, connection limit reached');
      resetSocket(client);
      return;
    }
    sockets.add(client);
    client.once('close', () => sockets.delete(client));
    let destination: OriginalDestination;
    try {
      destination = readOriginalDst(client);
    } catch (err) {
      const code = isTrellisError(err) ? err.code : CODE.CAPTURE_ORIGINAL_DST_FAILED;
      const notRedirected = code === CODE.CAPTURE_NOT_REDIRECTED;
      count(notRedirected ? 'not-redirected' : 'original-dst-failed');
      log.warn({ caller, code, err: describeError(err) }, notRedirected ? 'connection to the inbound capture port itself refused: it was not redirected' : 'inbound capture: original destination unreadable; connection reset');
      resetSocket(client);
      return;
    }
    const correlationId = nextCorrelationId();
    if (mode === 'strict') {
      count('refused');
      log.warn({ correlationId, caller, port: destination.port, mode }, 'plaintext connection from outside the mesh refused (inbound mode strict)');
      resetSocket(client);
      return;
    }
    handOff(client, destination, correlationId, caller, { appPorts, source, limits, log, metrics, count, handles, accessLog: options.accessLog });
  });

  return {
    listen(): Promise<AddressInfo> {
      const bind = { host: options.address ?? '0.0.0.0', port: options.port ?? DEFAULT_INBOUND_CAPTURE_PORT };
      return listenForCapture(server, bind, 'inbound capture', unavailable(), log, { mode });
    },
    setAppPorts(next: readonly AppPort[]): void {
      appPorts = portMap(next);
    },
    setMode(next: InboundMode): void {
      mode = next;
    },
    address(): AddressInfo | undefined {
      const a = server.address();
      return a !== null && typeof a === 'object' ? a : undefined;
    },
    connectionCount(): number {
      return sockets.size;
    },
    close(graceMs = 5_000): Promise<void> {
      return closeWithGrace(server, graceMs, () => {
        for (const handle of [...handles]) handle.cut();
        for (const socket of [...sockets]) resetSocket(socket);
      });
    },
  };
}


/** What a hand-off needs of its listener. */
interface HandOffContext {
  readonly appPorts: ReadonlyMap<number, AppPort>;
  readonly source: { readonly v4: string; readonly v6: string };
  readonly limits: CaptureListenerLimits;
  readonly log: CaptureListenerOptions['logger'];
  readonly metrics: CaptureListenerOptions['metrics'];
  readonly count: (result: CaptureResult) => void;
  readonly handles: Set<SocketSpliceHandle>;
  readonly accessLog: boolean | undefined;
}

/**
 * Permissive mode: a plaintext connection from outside the mesh goes to the app port it was sent to (dialled
 * from the hand-off source the redirect rules exempt), spliced once the app accepts, reset when it does not.
 */
function handOff(client: Socket, destination: OriginalDestination, correlationId: string, caller: string, ctx: HandOffContext): void {
  const { appPorts, source, limits, log, metrics, count, handles } = ctx;
  const started = Date.now();
  const declared = appPorts.get(destination.port);
  const host = declared?.host ?? destination.address;
  const localAddress = appLocalAddress(host, source);
  const app = connect({ host, port: destination.port, allowHalfOpen: true, noDelay: true, ...(localAddress === undefined ? {} : { localAddress }) });
  client.pause();
  const timer = setTimeout(() => app.destroy(new Error(`the app did not accept within ${limits.appConnectTimeoutMs} ms`)), limits.appConnectTimeoutMs);
  const onClientGone = (): void => {
    app.destroy();
  };
  client.once('close', onClientGone);
  let spliced = false;
  app.once('error', (err: NodeJS.ErrnoException) => {
    clearTimeout(timer);
    if (spliced) return; // the splice handles errors from here on
    client.off('close', onClientGone);
    count('app-unreachable');
    log.warn({ correlationId, caller, port: destination.port, app: `${host}:${destination.port}`, code: err.code, err: err.message }, 'permissive inbound: the app did not accept a connection from outside the mesh');
    resetSocket(client);
  });
  app.once('connect', () => {
    spliced = true;
    clearTimeout(timer);
    client.off('close', onClientGone);
    if (client.destroyed) {
      app.destroy();
      return;
    }
    count('passed');
    const handle = spliceSockets(client, app, limits.idleTimeoutMs, (result) => {
      handles.delete(handle);
      metrics.bytes.inc({ flow: 'to_destination' }, app.bytesWritten);
      metrics.bytes.inc({ flow: 'to_source' }, app.bytesRead);
      if (ctx.accessLog) {
        log.info(
          { correlationId, direction: 'inbound', mode: 'permissive', caller, port: destination.port, result, bytesToDestination: app.bytesWritten, bytesToSource: app.bytesRead, durationMs: Date.now() - started },
          'tcp from outside the mesh',
        );
      }
    });
    handles.add(handle);
    client.resume();
  });
}

function portMap(appPorts: readonly AppPort[]): ReadonlyMap<number, AppPort> {
  return new Map(appPorts.map((p) => [p.port, p]));
}

