/**
 * What the injector adds to a pod, as the operator configured it: images, the proxy's user, the ports the
 * agent listens on, resources, the token's lifetime and the Kubernetes version that decides between native
 * and classic sidecars. Validated once at the edge (every error at once), then frozen; the mutation code
 * reads nothing else.
 */
import { InputError } from '../common/errors.js';
import { CODE } from '../common/error-codes.js';
import { checkLimit } from '../common/limit-schema.js';
import { INJECTOR_LIMIT_SCHEMA } from './limits.js';
import { CAPTURE_MODES, parseCaptureMode, type CaptureMode } from '../common/mesh-annotations.js';

/** The agent's well-known ports inside the pod (the capture issue fixes 15001 and 15006; 15008 is the tunnel). */
export interface AgentPorts {
  readonly outbound: number;
  readonly inbound: number;
  readonly tunnel: number;
  /**
   * The agent's status port on the pod IP: /healthz, /ready and /app-health/... for the kubelet, in
   * plaintext, so capture leaves it alone. (The agent's admin port, with config and certificates,
   * stays on loopback.)
   */
  readonly status: number;
}

export const DEFAULT_PORTS: AgentPorts = Object.freeze({ outbound: 15001, inbound: 15006, tunnel: 15008, status: 15020 });

export interface ResourceSettings {
  readonly requests: Readonly<Record<string, string>>;
  readonly limits: Readonly<Record<string, string>>;
}

/** The Kubernetes version the cluster runs, as far as the sidecar layout cares. */
export interface KubernetesVersion {
  readonly major: number;
  readonly minor: number;
}

export interface InjectorConfig {
  /** The Trellis image: the agent (sidecar) and the capture init container both run `trellis`. */
  readonly image: string;
  readonly imagePullPolicy: 'Always' | 'IfNotPresent' | 'Never';
  /** The control plane URL the agents dial, e.g. https://trellis-control.trellis-system.svc:15012. */
  readonly controlUrl: string;
  /** The zone this cluster is (`east`, `west`): agents register their endpoints in it. */
  readonly zone: string;
  /** Trust bundle (PEM) that agents use to verify the control plane; the mesh roots. */
  readonly trustBundlePem: string;
  /** The proxy's uid and gid: the capture rules exclude traffic of this user, so no app may run as it. */
  readonly proxyUid: number;
  readonly proxyGid: number;
  readonly ports: AgentPorts;
  /** Lifetime requested for the projected token (bounds: injector/limits.ts; the kubelet refreshes it at 80 %). */
  readonly tokenExpirationSeconds: number;
  readonly sidecarResources: ResourceSettings;
  readonly initResources: ResourceSettings;
  readonly kubernetesVersion: KubernetesVersion;
  /** Namespaces never injected, whatever their labels say. */
  readonly excludedNamespaces: ReadonlySet<string>;
  /** Recorded in the status annotation so `kubectl get pod -o yaml` tells which injector made a pod. */
  readonly version: string;
  /** Seconds the classic layout's post-start hook waits for the proxy before the app starts anyway. */
  readonly readyWaitSeconds: number;
  /** Mesh-wide capture mode; a namespace's `trellis.dev/capture-mode` label overrides it. */
  readonly captureMode: CaptureMode;
}

export const SYSTEM_NAMESPACES: readonly string[] = Object.freeze(['kube-system', 'kube-public', 'kube-node-lease', 'trellis-system']);

/** Native sidecars (init containers with restartPolicy Always) are beta and on by default from 1.29. */
export const NATIVE_SIDECAR_MIN_MINOR = 29;

export function supportsNativeSidecars(version: KubernetesVersion): boolean {
  return version.major > 1 || (version.major === 1 && version.minor >= NATIVE_SIDECAR_MIN_MINOR);
}

/**
 * Parses "1.29", "v1.30.2", or the API server's /version fields ("1", "29+" on some managed clusters).
 */
export function parseKubernetesVersion(text: string, minorText?: string): KubernetesVersion {
  const source = minorText === undefined ? text.trim() : `${text.trim()}.${minorText.trim()}`;
  const match = /^v?(\d+)\.(\d+)\+?(?:\.\d+)?(?:[-+].*)?$/.exec(source);
  if (match === null) {
    throw new InputError(CODE.INJECTOR_KUBERNETES_VERSION, `"${source}" is not a Kubernetes version (expected e.g. 1.30 or v1.30.2)`);
  }
  return Object.freeze({ major: Number(match[1]), minor: Number(match[2]) });
}

export interface InjectorConfigInput {
  readonly image?: string;
  readonly imagePullPolicy?: string;
  readonly controlUrl?: string;
  readonly zone?: string;
  readonly trustBundlePem?: string;
  readonly proxyUid?: number;
  readonly proxyGid?: number;
  readonly ports?: Partial<AgentPorts>;
  readonly tokenExpirationSeconds?: number;
  readonly sidecarResources?: Partial<ResourceSettings>;
  readonly initResources?: Partial<ResourceSettings>;
  readonly kubernetesVersion?: KubernetesVersion;
  readonly extraExcludedNamespaces?: readonly string[];
  readonly version?: string;
  readonly readyWaitSeconds?: number;
  readonly captureMode?: string;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const QUANTITY = /^([+-]?[0-9.]+)([eE][-+]?[0-9]+|[numkMGTPE]i?|Ki|Mi|Gi|Ti|Pi|Ei)?$/;

function checkResources(input: Partial<ResourceSettings> | undefined, defaults: ResourceSettings, what: string, errors: string[]): ResourceSettings {
  const requests = { ...defaults.requests, ...(input?.requests ?? {}) };
  const limits = { ...defaults.limits, ...(input?.limits ?? {}) };
  for (const [kind, values] of [['requests', requests], ['limits', limits]] as const) {
    for (const [name, value] of Object.entries(values)) {
      if (!QUANTITY.test(value)) errors.push(`${what} ${kind}.${name}: "${value}" is not a Kubernetes quantity (e.g. 100m, 64Mi)`);
    }
  }
  return Object.freeze({ requests: Object.freeze(requests), limits: Object.freeze(limits) });
}

function checkId(value: number, what: string, errors: string[]): void {
  if (!Number.isInteger(value) || value <= 0 || value > 2_147_483_647) errors.push(`${what}: ${value} must be a non-root id (1 to 2147483647)`);
}

/** Validates every field, reports all problems in one InputError, and returns a frozen config. */
export function createInjectorConfig(input: InjectorConfigInput): InjectorConfig {
  const errors: string[] = [];
  const image = input.image ?? '';
  if (image === '' || /\s/.test(image)) errors.push('image: required, without spaces (e.g. ghcr.io/example/trellis:0.1.0)');
  const imagePullPolicy = input.imagePullPolicy ?? 'IfNotPresent';
  if (!['Always', 'IfNotPresent', 'Never'].includes(imagePullPolicy)) errors.push(`imagePullPolicy: "${imagePullPolicy}" must be Always, IfNotPresent or Never`);
  const controlUrl = input.controlUrl ?? '';
  try {
    const url = new URL(controlUrl);
    if (url.protocol !== 'https:') errors.push(`controlUrl: "${controlUrl}" must be an https:// URL`);
  } catch {
    errors.push(`controlUrl: "${controlUrl}" is not a URL (e.g. https://trellis-control.trellis-system.svc:15012)`);
  }
  const zone = input.zone ?? 'default';
  if (!DNS_LABEL.test(zone) || zone.length > 63) errors.push(`zone: "${zone}" must be a DNS label (lowercase letters, digits, "-")`);
  const trustBundlePem = input.trustBundlePem ?? '';
  if (!trustBundlePem.includes('-----BEGIN CERTIFICATE-----')) errors.push('trustBundlePem: must hold at least one PEM certificate (the mesh roots)');
  const proxyUid = input.proxyUid ?? 1337;
  const proxyGid = input.proxyGid ?? 1337;
  checkId(proxyUid, 'proxyUid', errors);
  checkId(proxyGid, 'proxyGid', errors);
  const ports = { ...DEFAULT_PORTS, ...(input.ports ?? {}) };
  for (const [name, port] of Object.entries(ports)) {
    if (!Number.isInteger(port) || port < 1 || port > 65535) errors.push(`ports.${name}: ${port} is not a TCP port`);
  }
  if (new Set(Object.values(ports)).size !== Object.keys(ports).length) errors.push('ports: outbound, inbound, tunnel and status ports must all differ');
  const tokenExpirationSeconds = checkLimit('tokenExpirationSeconds', INJECTOR_LIMIT_SCHEMA.tokenExpirationSeconds, input.tokenExpirationSeconds, errors);
  const sidecarResources = checkResources(input.sidecarResources, { requests: { cpu: '50m', memory: '64Mi' }, limits: { memory: '512Mi' } }, 'sidecarResources', errors);
  const initResources = checkResources(input.initResources, { requests: { cpu: '10m', memory: '32Mi' }, limits: { cpu: '500m', memory: '128Mi' } }, 'initResources', errors);
  const excluded = new Set(SYSTEM_NAMESPACES);
  for (const ns of input.extraExcludedNamespaces ?? []) {
    if (!DNS_LABEL.test(ns)) errors.push(`excluded namespace "${ns}" is not a namespace name`);
    excluded.add(ns);
  }
  const readyWaitSeconds = checkLimit('readyWaitSeconds', INJECTOR_LIMIT_SCHEMA.readyWaitSeconds, input.readyWaitSeconds, errors);
  const captureMode = parseCaptureMode(input.captureMode ?? 'init');
  if (captureMode === undefined) errors.push(`captureMode: "${input.captureMode}" must be ${CAPTURE_MODES.join(' or ')}`);
  if (errors.length > 0) {
    throw new InputError(CODE.INJECTOR_CONFIG_INVALID, `invalid injector configuration:\n  - ${errors.join('\n  - ')}`, { details: { errors } });
  }
  return Object.freeze({
    image,
    imagePullPolicy: imagePullPolicy as InjectorConfig['imagePullPolicy'],
    controlUrl,
    zone,
    trustBundlePem,
    proxyUid,
    proxyGid,
    ports: Object.freeze(ports),
    tokenExpirationSeconds,
    sidecarResources,
    initResources,
    kubernetesVersion: Object.freeze({ ...(input.kubernetesVersion ?? { major: 1, minor: 29 }) }),
    excludedNamespaces: excluded,
    version: input.version ?? '0.1.0',
    readyWaitSeconds,
    captureMode: captureMode ?? 'init',
  });
}
