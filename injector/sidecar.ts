/**
 * The containers and volumes injected into a pod: the capture init container (`trellis agent redirect
 * install`, only NET_ADMIN and NET_RAW), the sidecar (`trellis agent run`, a fixed non-root uid, read-only
 * root, no capabilities), an in-memory emptyDir for its keys and certificates, and a projected volume that
 * only the sidecar mounts: the service-account token for audience `trellis`, plus the mesh trust bundle and
 * the app's original probes, both projected from the pod's own annotations through the downward API, so
 * the agent reads files and needs no access to the Kubernetes API.
 */
import type { V1Container, V1EnvVar, V1Probe, V1Volume } from '@kubernetes/client-node';
import type { AppPort } from './app-ports.js';
import type { InjectorConfig } from './config.js';
import type { PodInjectionOptions } from './annotations.js';
import { INIT_CONTAINER, SIDECAR_CONTAINER } from './selection.js';
import type { CaptureMode } from '../common/mesh-annotations.js';

export const ANNOTATION_CA_BUNDLE = 'trellis.dev/ca-bundle';
export const ANNOTATION_APP_PROBES = 'trellis.dev/app-probes';
export const VOLUME_DATA = 'trellis-data';
export const VOLUME_IDENTITY = 'trellis-identity';
/**
 * An empty volume mounted where the ServiceAccount admission plugin would mount `kube-api-access`: the
 * plugin runs after the webhook and skips a container that already has a mount at that path, so the
 * mesh containers carry no Kubernetes API token (the agent needs none; it has its `trellis` token).
 */
export const VOLUME_NO_API_TOKEN = 'trellis-no-api-token';
export const API_TOKEN_MOUNT_PATH = '/var/run/secrets/kubernetes.io/serviceaccount';
export const DATA_DIR = '/var/run/trellis';
export const IDENTITY_DIR = '/var/run/secrets/trellis.dev/identity';
export const TOKEN_AUDIENCE = 'trellis';
/** The agent's status endpoints that the kubelet probes (plaintext on the status port, which capture skips). */
export const AGENT_READY_PATH = '/ready';
export const AGENT_LIVE_PATH = '/healthz';

export type SidecarLayout = 'native' | 'classic';

export interface SidecarPlan {
  readonly layout: SidecarLayout;
  readonly appPorts: readonly AppPort[];
  readonly options: PodInjectionOptions;
  /** True when the pod carries rewritten probes, so the agent must serve `/app-health/...`. */
  readonly hasAppProbes: boolean;
  /** `cni`: no init container; the agent holds readiness until it sees the plugin's rules. */
  readonly captureMode: CaptureMode;
  /** The pod's `trellis.dev/subzone` label, passed as `--subzone`. */
  readonly subzone?: string;
}

const NO_API_TOKEN_MOUNT = Object.freeze({ name: VOLUME_NO_API_TOKEN, mountPath: API_TOKEN_MOUNT_PATH, readOnly: true });

function fieldEnv(name: string, fieldPath: string): V1EnvVar {
  return { name, valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath } } };
}

function statusProbe(config: InjectorConfig, path: string, periodSeconds: number, failureThreshold: number): V1Probe {
  return { httpGet: { path, port: config.ports.status, scheme: 'HTTP' }, periodSeconds, timeoutSeconds: 3, failureThreshold };
}

/**
 * `trellis agent run` flags for Kubernetes mode; `$(VAR)` is expanded by the kubelet from the container's
 * env. `--control`, `--ca-file`, `--token-file`, `--service`, `--namespace`, `--address`, `--zone`,
 * `--data-dir`, `--tunnel`, `--app-port` and `--protocol` are the agent's VM flags; the Kubernetes-mode
 * ones (`--status`, `--capture`, `--outbound-port`, `--inbound-port`, `--app-probes`, repeated
 * `--app-port`/`--protocol` pairs, no app port at all for a Job) are the contract described in
 * docs/architecture.md, "Injector and Kubernetes". No `--upstream`: under `--capture transparent` the
 * agent then subscribes to every service of the mesh, which the app may call at its cluster IP.
 */
export function agentArgs(config: InjectorConfig, plan: SidecarPlan): string[] {
  const args = [
    'agent',
    'run',
    '--control',
    config.controlUrl,
    '--ca-file',
    `${IDENTITY_DIR}/ca.pem`,
    '--token-file',
    `${IDENTITY_DIR}/token`,
    '--service',
    '$(TRELLIS_SERVICE_ACCOUNT)',
    '--namespace',
    '$(TRELLIS_POD_NAMESPACE)',
    '--address',
    '$(TRELLIS_POD_IP)',
    '--zone',
    config.zone,
    '--data-dir',
    DATA_DIR,
    '--tunnel',
    `0.0.0.0:${config.ports.tunnel}`,
    '--status',
    `0.0.0.0:${config.ports.status}`,
    '--capture',
    'transparent',
    '--outbound-port',
    String(config.ports.outbound),
    '--inbound-port',
    String(config.ports.inbound),
  ];
  for (const port of plan.appPorts) args.push('--app-port', String(port.port), '--protocol', port.protocol);
  if (plan.subzone !== undefined) args.push('--subzone', plan.subzone);
  if (plan.hasAppProbes) args.push('--app-probes', `${IDENTITY_DIR}/app-probes.json`);
  // The CNI plugin may not have run (a pod scheduled before the node agent installed it): the agent
  // stays unready, saying why, until a connection to its own address is redirected.
  if (plan.captureMode === 'cni') args.push('--require-redirect');
  return args;
}

export function sidecarContainer(config: InjectorConfig, plan: SidecarPlan): V1Container {
  const container: V1Container = {
    name: SIDECAR_CONTAINER,
    image: config.image,
    imagePullPolicy: config.imagePullPolicy,
    command: ['trellis'],
    args: agentArgs(config, plan),
    env: [
      fieldEnv('TRELLIS_POD_NAME', 'metadata.name'),
      fieldEnv('TRELLIS_POD_NAMESPACE', 'metadata.namespace'),
      fieldEnv('TRELLIS_POD_IP', 'status.podIP'),
      fieldEnv('TRELLIS_SERVICE_ACCOUNT', 'spec.serviceAccountName'),
      fieldEnv('TRELLIS_NODE_NAME', 'spec.nodeName'),
    ],
    ports: [
      { name: 'trellis-tunnel', containerPort: config.ports.tunnel, protocol: 'TCP' },
      { name: 'trellis-status', containerPort: config.ports.status, protocol: 'TCP' },
    ],
    resources: { requests: { ...config.sidecarResources.requests }, limits: { ...config.sidecarResources.limits } },
    securityContext: {
      runAsUser: config.proxyUid,
      runAsGroup: config.proxyGid,
      runAsNonRoot: true,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      privileged: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
    volumeMounts: [
      { name: VOLUME_DATA, mountPath: DATA_DIR },
      { name: VOLUME_IDENTITY, mountPath: IDENTITY_DIR, readOnly: true },
      { ...NO_API_TOKEN_MOUNT },
    ],
    readinessProbe: statusProbe(config, AGENT_READY_PATH, 2, 3),
    livenessProbe: statusProbe(config, AGENT_LIVE_PATH, 10, 3),
  };
  if (plan.layout === 'native') {
    // A native sidecar: started before the app's init containers and containers, ended after them,
    // and it does not keep a Job's pod alive. The kubelet starts the next container only once this
    // startup probe passes, i.e. once the agent has its certificate and config.
    container.restartPolicy = 'Always';
    container.startupProbe = statusProbe(config, AGENT_READY_PATH, 1, config.readyWaitSeconds);
  } else {
    // Classic layout: the kubelet runs postStart to completion before starting the next container,
    // so the app starts only once the proxy is ready. A wait that times out fails the hook, and the
    // kubelet restarts the sidecar: the app never starts with its traffic captured by a dead proxy.
    container.lifecycle = {
      postStart: {
        exec: {
          command: ['trellis', 'injector', 'wait-ready', '--url', `http://127.0.0.1:${config.ports.status}${AGENT_READY_PATH}`, '--timeout', `${config.readyWaitSeconds}s`],
        },
      },
    };
  }
  return container;
}

/** `trellis agent redirect install` flags; the same rules as on a VM, less the SSH exclusion. */
export function redirectArgs(config: InjectorConfig, options: PodInjectionOptions): string[] {
  const inboundExcluded = [config.ports.status, ...options.excludeInboundPorts.filter((p) => p !== config.ports.status)];
  const args = [
    'agent',
    'redirect',
    'install',
    '--proxy-uid',
    String(config.proxyUid),
    '--proxy-gid',
    String(config.proxyGid),
    '--outbound-port',
    String(config.ports.outbound),
    '--inbound-port',
    String(config.ports.inbound),
    '--tunnel-port',
    String(config.ports.tunnel),
    '--platform',
    'pod',
    '--exclude-inbound-ports',
    inboundExcluded.join(','),
  ];
  if (options.excludeOutboundPorts.length > 0) args.push('--exclude-outbound-ports', options.excludeOutboundPorts.join(','));
  if (options.excludeInboundCidrs.length > 0) args.push('--exclude-inbound-cidrs', options.excludeInboundCidrs.join(','));
  if (options.excludeOutboundCidrs.length > 0) args.push('--exclude-outbound-cidrs', options.excludeOutboundCidrs.join(','));
  return args;
}

export function initContainer(config: InjectorConfig, options: PodInjectionOptions): V1Container {
  return {
    name: INIT_CONTAINER,
    image: config.image,
    imagePullPolicy: config.imagePullPolicy,
    command: ['trellis'],
    args: redirectArgs(config, options),
    resources: { requests: { ...config.initResources.requests }, limits: { ...config.initResources.limits } },
    securityContext: {
      // iptables needs root in the pod's network namespace and only these two capabilities; the root
      // filesystem stays writable for the xtables lock file (as Istio's istio-init does).
      runAsUser: 0,
      runAsGroup: 0,
      runAsNonRoot: false,
      readOnlyRootFilesystem: false,
      allowPrivilegeEscalation: false,
      privileged: false,
      capabilities: { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
    volumeMounts: [{ ...NO_API_TOKEN_MOUNT }],
  };
}

export function injectedVolumes(config: InjectorConfig, plan: SidecarPlan): V1Volume[] {
  const items = [{ path: 'ca.pem', fieldRef: { apiVersion: 'v1', fieldPath: `metadata.annotations['${ANNOTATION_CA_BUNDLE}']` } }];
  if (plan.hasAppProbes) items.push({ path: 'app-probes.json', fieldRef: { apiVersion: 'v1', fieldPath: `metadata.annotations['${ANNOTATION_APP_PROBES}']` } });
  return [
    { name: VOLUME_DATA, emptyDir: { medium: 'Memory', sizeLimit: '16Mi' } },
    { name: VOLUME_NO_API_TOKEN, emptyDir: { medium: 'Memory', sizeLimit: '1Ki' } },
    {
      name: VOLUME_IDENTITY,
      projected: {
        sources: [{ serviceAccountToken: { audience: TOKEN_AUDIENCE, expirationSeconds: config.tokenExpirationSeconds, path: 'token' } }, { downwardAPI: { items } }],
      },
    },
  ];
}

/**
 * The redirect the CNI plugin installs for this pod, as JSON in the field names of the redirect options
 * (capture/options.ts): the same rules the init container's `trellis agent redirect install` flags give.
 */
export function redirectAnnotation(config: InjectorConfig, options: PodInjectionOptions): string {
  const inboundExcluded = [config.ports.status, ...options.excludeInboundPorts.filter((p) => p !== config.ports.status)];
  return JSON.stringify({
    platform: 'pod',
    proxyUids: [config.proxyUid],
    proxyGids: [config.proxyGid],
    outboundPort: config.ports.outbound,
    inboundPort: config.ports.inbound,
    tunnelPort: config.ports.tunnel,
    excludeInboundPorts: inboundExcluded.map(String),
    excludeOutboundPorts: options.excludeOutboundPorts.map(String),
    excludeInboundCidrs: [...options.excludeInboundCidrs],
    excludeOutboundCidrs: [...options.excludeOutboundCidrs],
  });
}
