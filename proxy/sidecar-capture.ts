/**
 * Assembly of transparent capture (docs/architecture.md, "Transparent capture"): the outbound capture
 * listener, fed to the same TCP and HTTP paths as the explicit listeners, and the inbound capture listener.
 * The iptables redirect that feeds them is installed separately (`trellis agent redirect install`).
 */
import type { Socket } from 'node:net';
import type { Registry } from 'prom-client';
import type { Logger } from 'pino';
import type { AppPort, UpstreamService } from '../api/data-plane.js';
import { createCaptureListener, type CaptureListener } from './inbound/capture/capture-listener.js';
import { createCaptureMetrics } from './inbound/capture/capture-metrics.js';
import { createTransparentListener, type TransparentListener } from './outbound/capture/transparent-listener.js';
import { createTransparentMetrics } from './outbound/capture/transparent-metrics.js';
import type { OutboundHttpListener } from './outbound/http/listener.js';
import type { OutboundRoute } from './outbound/route.js';
import type { SidecarCaptureOptions } from './sidecar-api.js';

/** The capture listeners of one sidecar, and the HTTP listener their `http` connections are handed to. */
export interface CaptureParts {
  readonly transparent: TransparentListener;
  readonly http: OutboundHttpListener;
  readonly inbound: CaptureListener;
}

export interface CaptureAssembly {
  readonly capture: SidecarCaptureOptions;
  readonly registry: Registry;
  readonly log: Logger;
  readonly accessLog: boolean;
  readonly upstreams: readonly UpstreamService[];
  readonly appPorts: readonly AppPort[];
  /** The outbound TCP path (outbound/tcp/tcp-forwarder.ts). */
  readonly forwardTcp: (socket: Socket, route: OutboundRoute) => void;
  /** The outbound HTTP path's listener for captured `http` connections. */
  readonly http: OutboundHttpListener;
}

export function createCaptureParts(a: CaptureAssembly): CaptureParts {
  const { capture, http } = a;
  // An injected reader (tests) stands in for the addon, so its availability does not matter then.
  const unavailableReason = capture.originalDst === undefined ? undefined : (): null => null;
  const transparent = createTransparentListener({
    address: capture.outbound?.address,
    port: capture.outbound?.port,
    outsideMesh: capture.outsideMesh ?? 'passthrough',
    metrics: createTransparentMetrics(a.registry),
    logger: a.log.child({ part: 'outbound-capture' }),
    accessLog: a.accessLog,
    forwardTcp: a.forwardTcp,
    forwardHttp: (socket, route) => http.handleConnection(socket, route),
    originalDst: capture.originalDst,
    unavailableReason,
  });
  transparent.setUpstreams(a.upstreams);
  const inbound = createCaptureListener({
    address: capture.inbound?.address,
    port: capture.inbound?.port,
    mode: capture.inboundMode ?? 'strict',
    appPorts: a.appPorts,
    metrics: createCaptureMetrics(a.registry),
    logger: a.log.child({ part: 'inbound-capture' }),
    accessLog: a.accessLog,
    originalDst: capture.originalDst,
    unavailableReason,
  });
  return { transparent, http, inbound };
}
