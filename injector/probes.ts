/**
 * Probe rewriting. Under strict mTLS the kubelet's plaintext probes to an app port are refused by the
 * inbound capture, so HTTP, TCP and gRPC probes are pointed at the agent's admin port instead, at
 * `/app-health/<container>/<livez|readyz|startupz>` (the paths Istio uses), and the original probe is
 * handed to the agent, which runs it against the app from inside the pod. Exec probes run inside the
 * container and never cross the capture, so they are left alone.
 */
import type { V1Container, V1ContainerPort, V1Probe } from '@kubernetes/client-node';

export type ProbeKind = 'liveness' | 'readiness' | 'startup';

export const PROBE_FIELDS: Readonly<Record<ProbeKind, 'livenessProbe' | 'readinessProbe' | 'startupProbe'>> = Object.freeze({
  liveness: 'livenessProbe',
  readiness: 'readinessProbe',
  startup: 'startupProbe',
});

const PROBE_SUFFIX: Readonly<Record<ProbeKind, string>> = Object.freeze({ liveness: 'livez', readiness: 'readyz', startup: 'startupz' });

/** What the agent runs against the app when the kubelet asks for `/app-health/<container>/<probe>`. */
export interface AppProbe {
  readonly kind: 'http' | 'tcp' | 'grpc';
  /** Always a number: named ports are resolved here, where the container's ports are known. */
  readonly port: number;
  readonly host?: string;
  readonly path?: string;
  readonly scheme?: 'HTTP' | 'HTTPS';
  readonly headers?: readonly { readonly name: string; readonly value: string }[];
  /** gRPC health service name. */
  readonly service?: string;
  readonly timeoutSeconds: number;
}

/** Keyed by the rewritten path, e.g. `/app-health/web/livez`. Serialised as JSON for the agent. */
export type AppProbes = Readonly<Record<string, AppProbe>>;

export function appHealthPath(container: string, kind: ProbeKind): string {
  return `/app-health/${container}/${PROBE_SUFFIX[kind]}`;
}

export interface ProbeRewrite {
  /** `containers`, or `initContainers` for the app's own native sidecars (the only init containers with probes). */
  readonly list: 'containers' | 'initContainers';
  readonly containerIndex: number;
  readonly field: 'livenessProbe' | 'readinessProbe' | 'startupProbe';
  readonly probe: V1Probe;
}

export interface ProbeRewriteResult {
  readonly rewrites: readonly ProbeRewrite[];
  readonly appProbes: AppProbes;
  /** Probes that could not be rewritten (a named port the container does not declare): left as they were. */
  readonly warnings: readonly string[];
}

function resolvePort(port: number | string | undefined, ports: readonly V1ContainerPort[] | undefined): number | null {
  if (typeof port === 'number') return Number.isInteger(port) && port >= 1 && port <= 65535 ? port : null;
  if (typeof port !== 'string') return null;
  if (/^\d+$/.test(port)) return resolvePort(Number(port), ports);
  const named = (ports ?? []).find((p) => p.name === port);
  return named === undefined ? null : resolvePort(named.containerPort, undefined);
}

function timing(probe: V1Probe): V1Probe {
  const out: V1Probe = {};
  for (const key of ['initialDelaySeconds', 'periodSeconds', 'timeoutSeconds', 'successThreshold', 'failureThreshold', 'terminationGracePeriodSeconds'] as const) {
    if (probe[key] !== undefined) out[key] = probe[key];
  }
  return out;
}

function describe(container: string, kind: ProbeKind): string {
  return `container "${container}" ${kind} probe`;
}

function originalOf(probe: V1Probe, container: V1Container, kind: ProbeKind, warnings: string[]): AppProbe | null {
  // The kubelet's default probe timeout is one second.
  const timeoutSeconds = probe.timeoutSeconds ?? 1;
  if (probe.httpGet !== undefined) {
    const port = resolvePort(probe.httpGet.port, container.ports);
    if (port === null) {
      warnings.push(`${describe(container.name, kind)}: port "${String(probe.httpGet.port)}" is not declared by the container; probe left unchanged`);
      return null;
    }
    const scheme = probe.httpGet.scheme === 'HTTPS' ? 'HTTPS' : 'HTTP';
    return {
      kind: 'http',
      port,
      path: probe.httpGet.path ?? '/',
      scheme,
      ...(probe.httpGet.host === undefined ? {} : { host: probe.httpGet.host }),
      ...(probe.httpGet.httpHeaders === undefined ? {} : { headers: probe.httpGet.httpHeaders.map((h) => ({ name: h.name, value: h.value })) }),
      timeoutSeconds,
    };
  }
  if (probe.tcpSocket !== undefined) {
    const port = resolvePort(probe.tcpSocket.port, container.ports);
    if (port === null) {
      warnings.push(`${describe(container.name, kind)}: port "${String(probe.tcpSocket.port)}" is not declared by the container; probe left unchanged`);
      return null;
    }
    return { kind: 'tcp', port, ...(probe.tcpSocket.host === undefined ? {} : { host: probe.tcpSocket.host }), timeoutSeconds };
  }
  if (probe.grpc !== undefined) {
    const port = resolvePort(probe.grpc.port, undefined);
    if (port === null) {
      warnings.push(`${describe(container.name, kind)}: gRPC port "${String(probe.grpc.port)}" is invalid; probe left unchanged`);
      return null;
    }
    return { kind: 'grpc', port, ...(probe.grpc.service === undefined ? {} : { service: probe.grpc.service }), timeoutSeconds };
  }
  return null;
}

/**
 * Rewrites the probes of the app's containers, and of its own native sidecars (init containers with
 * `restartPolicy: Always`), to the agent's status port. Container names are unique across both lists,
 * so the paths are too.
 */
export function rewriteProbes(containers: readonly V1Container[], initContainers: readonly V1Container[], statusPort: number): ProbeRewriteResult {
  const rewrites: ProbeRewrite[] = [];
  const appProbes: Record<string, AppProbe> = {};
  const warnings: string[] = [];
  const targets = [
    ...initContainers.map((container, containerIndex) => ({ container, containerIndex, list: 'initContainers' as const })).filter((t) => t.container.restartPolicy === 'Always'),
    ...containers.map((container, containerIndex) => ({ container, containerIndex, list: 'containers' as const })),
  ];
  for (const { container, containerIndex, list } of targets) {
    for (const kind of ['liveness', 'readiness', 'startup'] as const) {
      const field = PROBE_FIELDS[kind];
      const probe = container[field];
      if (probe === undefined || probe === null) continue;
      const original = originalOf(probe, container, kind, warnings);
      if (original === null) continue;
      const path = appHealthPath(container.name, kind);
      appProbes[path] = Object.freeze(original);
      rewrites.push({ list, containerIndex, field, probe: { ...timing(probe), httpGet: { path, port: statusPort, scheme: 'HTTP' } } });
    }
  }
  return { rewrites, appProbes: Object.freeze(appProbes), warnings };
}
