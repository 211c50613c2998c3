/**
 * The Pod Security Standards (`baseline` and `restricted`, as of Kubernetes 1.32) as a table of checks,
 * taken from the upstream rules in k8s.io/pod-security-admission/policy: the same fields, the same allowed
 * values, and the same reason strings the API server prints ("non-default capabilities", "runAsNonRoot !=
 * true", ...). The injector evaluates the pod it would produce against the namespace's enforce level, so
 * it can refuse with a fix instead of handing the API server a pod that Pod Security admission rejects.
 *
 * Each check sees containers, init containers and ephemeral containers alike (upstream does the same).
 * Windows-only and version-pinned subtleties (checks that changed before 1.25) are not modelled: every
 * level is evaluated as `latest`.
 */
import type { V1Container, V1Pod, V1SecurityContext } from '@kubernetes/client-node';

export type PodSecurityLevel = 'privileged' | 'baseline' | 'restricted';

export const LABEL_ENFORCE = 'pod-security.kubernetes.io/enforce';
export const LABEL_ENFORCE_VERSION = 'pod-security.kubernetes.io/enforce-version';

export interface Violation {
  /** The check's id in the upstream table, e.g. `capabilities_baseline`. */
  readonly check: string;
  /** The upstream "forbidden reason", e.g. `non-default capabilities`. */
  readonly reason: string;
  /** The upstream "forbidden detail": which containers or volumes, and what they must do. */
  readonly detail: string;
}

interface Check {
  readonly id: string;
  readonly level: Exclude<PodSecurityLevel, 'privileged'>;
  readonly reason: string;
  /** Returns the detail when the pod violates the check, null when it passes. */
  readonly test: (pod: V1Pod) => string | null;
}

/** Capabilities `baseline` allows in `capabilities.add` (upstream check_capabilities_baseline). */
export const BASELINE_CAPABILITIES: ReadonlySet<string> = new Set(['AUDIT_WRITE', 'CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'FSETID', 'KILL', 'MKNOD', 'NET_BIND_SERVICE', 'SETFCAP', 'SETGID', 'SETPCAP', 'SETUID', 'SYS_CHROOT']);
/** Sysctls `baseline` allows (check_sysctls, 1.29 list). */
export const SAFE_SYSCTLS: ReadonlySet<string> = new Set([
  'kernel.shm_rmid_forced',
  'net.ipv4.ip_local_port_range',
  'net.ipv4.ip_unprivileged_port_start',
  'net.ipv4.tcp_syncookies',
  'net.ipv4.ping_group_range',
  'net.ipv4.ip_local_reserved_ports',
  'net.ipv4.tcp_keepalive_time',
  'net.ipv4.tcp_fin_timeout',
  'net.ipv4.tcp_keepalive_intvl',
  'net.ipv4.tcp_keepalive_probes',
]);
/** Volume types `restricted` allows (check_restrictedVolumes). */
export const RESTRICTED_VOLUME_TYPES: ReadonlySet<string> = new Set(['configMap', 'csi', 'downwardAPI', 'emptyDir', 'ephemeral', 'image', 'persistentVolumeClaim', 'projected', 'secret']);
const SELINUX_TYPES: ReadonlySet<string> = new Set(['', 'container_t', 'container_init_t', 'container_kvm_t', 'container_engine_t']);
const APPARMOR_ANNOTATION_PREFIX = 'container.apparmor.security.beta.kubernetes.io/';

function containersOf(pod: V1Pod): V1Container[] {
  const spec = pod.spec;
  return [...(spec?.initContainers ?? []), ...(spec?.containers ?? []), ...((spec?.ephemeralContainers ?? []) as V1Container[])];
}

function quoted(names: readonly string[]): string {
  return names.map((n) => `"${n}"`).join(', ');
}

function containersWhere(pod: V1Pod, bad: (sc: V1SecurityContext | undefined, c: V1Container) => boolean): string[] {
  return containersOf(pod)
    .filter((c) => bad(c.securityContext, c))
    .map((c) => c.name);
}

function plural(names: readonly string[]): string {
  return `${names.length === 1 ? 'container' : 'containers'} ${quoted(names)}`;
}

function hostNamespaces(pod: V1Pod): string | null {
  const set = (['hostNetwork', 'hostPID', 'hostIPC'] as const).filter((f) => pod.spec?.[f] === true);
  return set.length === 0 ? null : set.map((f) => `${f}=true`).join(', ');
}

function capabilitiesAdded(pod: V1Pod, allowed: (cap: string) => boolean): string | null {
  const parts: string[] = [];
  for (const c of containersOf(pod)) {
    const bad = (c.securityContext?.capabilities?.add ?? []).filter((cap) => !allowed(cap));
    if (bad.length > 0) parts.push(`container "${c.name}" must not include ${quoted(bad)} in securityContext.capabilities.add`);
  }
  return parts.length === 0 ? null : parts.join('; ');
}

function hostPorts(pod: V1Pod): string | null {
  const parts: string[] = [];
  for (const c of containersOf(pod)) {
    const ports = (c.ports ?? []).map((p) => p.hostPort ?? 0).filter((p) => p !== 0);
    if (ports.length > 0) parts.push(`${plural([c.name])} uses ${ports.length === 1 ? 'hostPort' : 'hostPorts'} ${ports.join(', ')}`);
  }
  return parts.length === 0 ? null : parts.join('; ');
}

function appArmor(pod: V1Pod): string | null {
  const bad: string[] = [];
  const okType = (t: string | undefined): boolean => t === undefined || t === 'RuntimeDefault' || t === 'Localhost';
  if (!okType(pod.spec?.securityContext?.appArmorProfile?.type)) bad.push(`pod: ${pod.spec?.securityContext?.appArmorProfile?.type}`);
  for (const c of containersOf(pod)) if (!okType(c.securityContext?.appArmorProfile?.type)) bad.push(`container "${c.name}": ${c.securityContext?.appArmorProfile?.type}`);
  for (const [key, value] of Object.entries(pod.metadata?.annotations ?? {})) {
    if (key.startsWith(APPARMOR_ANNOTATION_PREFIX) && value !== 'runtime/default' && !value.startsWith('localhost/')) bad.push(`${key}="${value}"`);
  }
  return bad.length === 0 ? null : bad.join(', ');
}

function seLinux(pod: V1Pod): string | null {
  const bad: string[] = [];
  const check = (what: string, o: { type?: string; user?: string; role?: string } | undefined): void => {
    if (o === undefined) return;
    if (!SELINUX_TYPES.has(o.type ?? '')) bad.push(`${what} set forbidden securityContext.seLinuxOptions: type "${o.type}"`);
    if ((o.user ?? '') !== '' || (o.role ?? '') !== '') bad.push(`${what} set forbidden securityContext.seLinuxOptions: user or role`);
  };
  check('pod', pod.spec?.securityContext?.seLinuxOptions);
  for (const c of containersOf(pod)) check(`container "${c.name}"`, c.securityContext?.seLinuxOptions);
  return bad.length === 0 ? null : bad.join('; ');
}

function seccompBaseline(pod: V1Pod): string | null {
  const bad: string[] = [];
  if (pod.spec?.securityContext?.seccompProfile?.type === 'Unconfined') bad.push('pod');
  const containers = containersWhere(pod, (sc) => sc?.seccompProfile?.type === 'Unconfined');
  if (containers.length > 0) bad.push(plural(containers));
  return bad.length === 0 ? null : `${bad.join(' and ')} must not set securityContext.seccompProfile.type to "Unconfined"`;
}

function seccompRestricted(pod: V1Pod): string | null {
  const ok = (t: string | undefined): boolean => t === 'RuntimeDefault' || t === 'Localhost';
  const podType = pod.spec?.securityContext?.seccompProfile?.type;
  if (podType !== undefined && !ok(podType)) return `pod must not set securityContext.seccompProfile.type to "${podType}"`;
  const explicitBad = containersWhere(pod, (sc) => sc?.seccompProfile?.type !== undefined && !ok(sc.seccompProfile.type));
  if (explicitBad.length > 0) return `${plural(explicitBad)} must not set securityContext.seccompProfile.type to a value other than "RuntimeDefault" or "Localhost"`;
  if (podType !== undefined) return null;
  const unset = containersWhere(pod, (sc) => sc?.seccompProfile?.type === undefined);
  return unset.length === 0 ? null : `pod or ${plural(unset)} must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost"`;
}

function runAsNonRoot(pod: V1Pod): string | null {
  const podValue = pod.spec?.securityContext?.runAsNonRoot;
  const explicitFalse = containersWhere(pod, (sc) => sc?.runAsNonRoot === false);
  const parts: string[] = [];
  if (podValue === false) parts.push('pod must not set securityContext.runAsNonRoot=false');
  if (explicitFalse.length > 0) parts.push(`${plural(explicitFalse)} must not set securityContext.runAsNonRoot=false`);
  if (podValue !== true) {
    const unset = containersWhere(pod, (sc) => sc?.runAsNonRoot === undefined);
    if (unset.length > 0) parts.push(`pod or ${plural(unset)} must set securityContext.runAsNonRoot=true`);
  }
  return parts.length === 0 ? null : parts.join('; ');
}

function runAsUserZero(pod: V1Pod): string | null {
  const parts: string[] = [];
  if (pod.spec?.securityContext?.runAsUser === 0) parts.push('pod');
  const containers = containersWhere(pod, (sc) => sc?.runAsUser === 0);
  if (containers.length > 0) parts.push(plural(containers));
  return parts.length === 0 ? null : `${parts.join(' and ')} must not set runAsUser=0`;
}

function capabilitiesRestricted(pod: V1Pod): string | null {
  const parts: string[] = [];
  const noDrop = containersWhere(pod, (sc) => !(sc?.capabilities?.drop ?? []).includes('ALL'));
  if (noDrop.length > 0) parts.push(`${plural(noDrop)} must set securityContext.capabilities.drop=["ALL"]`);
  const added = capabilitiesAdded(pod, (cap) => cap === 'NET_BIND_SERVICE');
  if (added !== null) parts.push(added);
  return parts.length === 0 ? null : parts.join('; ');
}

/** The table: one entry per upstream check, in the order upstream lists them. */
export const CHECKS: readonly Check[] = Object.freeze([
  {
    id: 'hostProcess',
    level: 'baseline',
    reason: 'hostProcess',
    test: (pod) => {
      const bad = containersWhere(pod, (sc) => sc?.windowsOptions?.hostProcess === true);
      const podBad = pod.spec?.securityContext?.windowsOptions?.hostProcess === true;
      if (!podBad && bad.length === 0) return null;
      return `${[...(podBad ? ['pod'] : []), ...(bad.length > 0 ? [plural(bad)] : [])].join(' and ')} must not set securityContext.windowsOptions.hostProcess=true`;
    },
  },
  { id: 'hostNamespaces', level: 'baseline', reason: 'host namespaces', test: hostNamespaces },
  {
    id: 'privileged',
    level: 'baseline',
    reason: 'privileged',
    test: (pod) => {
      const bad = containersWhere(pod, (sc) => sc?.privileged === true);
      return bad.length === 0 ? null : `${plural(bad)} must not set securityContext.privileged=true`;
    },
  },
  { id: 'capabilities_baseline', level: 'baseline', reason: 'non-default capabilities', test: (pod) => capabilitiesAdded(pod, (cap) => BASELINE_CAPABILITIES.has(cap)) },
  {
    id: 'hostPathVolumes',
    level: 'baseline',
    reason: 'hostPath volumes',
    test: (pod) => {
      const bad = (pod.spec?.volumes ?? []).filter((v) => v.hostPath != null).map((v) => v.name);
      return bad.length === 0 ? null : `${bad.length === 1 ? 'volume' : 'volumes'} ${quoted(bad)}`;
    },
  },
  { id: 'hostPorts', level: 'baseline', reason: 'hostPort', test: hostPorts },
  { id: 'appArmorProfile', level: 'baseline', reason: 'forbidden AppArmor profile', test: appArmor },
  { id: 'seLinuxOptions', level: 'baseline', reason: 'seLinuxOptions', test: seLinux },
  {
    id: 'procMount',
    level: 'baseline',
    reason: 'procMount',
    test: (pod) => {
      const bad = containersWhere(pod, (sc) => sc?.procMount !== undefined && sc.procMount !== 'Default');
      return bad.length === 0 ? null : `${plural(bad)} must not set securityContext.procMount`;
    },
  },
  { id: 'seccompProfile_baseline', level: 'baseline', reason: 'seccompProfile', test: seccompBaseline },
  {
    id: 'sysctls',
    level: 'baseline',
    reason: 'forbidden sysctls',
    test: (pod) => {
      const bad = (pod.spec?.securityContext?.sysctls ?? []).map((s) => s.name).filter((n) => !SAFE_SYSCTLS.has(n));
      return bad.length === 0 ? null : bad.join(', ');
    },
  },
  {
    id: 'restrictedVolumes',
    level: 'restricted',
    reason: 'restricted volume types',
    test: (pod) => {
      const bad = (pod.spec?.volumes ?? []).filter((v) => !Object.keys(v).some((k) => k !== 'name' && RESTRICTED_VOLUME_TYPES.has(k) && (v as unknown as Record<string, unknown>)[k] != null)).map((v) => v.name);
      return bad.length === 0 ? null : `${bad.length === 1 ? 'volume' : 'volumes'} ${quoted(bad)} use${bad.length === 1 ? 's' : ''} a restricted volume type`;
    },
  },
  {
    id: 'allowPrivilegeEscalation',
    level: 'restricted',
    reason: 'allowPrivilegeEscalation != false',
    test: (pod) => {
      const bad = containersWhere(pod, (sc) => sc?.allowPrivilegeEscalation !== false);
      return bad.length === 0 ? null : `${plural(bad)} must set securityContext.allowPrivilegeEscalation=false`;
    },
  },
  { id: 'runAsNonRoot', level: 'restricted', reason: 'runAsNonRoot != true', test: runAsNonRoot },
  { id: 'runAsUser', level: 'restricted', reason: 'runAsUser=0', test: runAsUserZero },
  { id: 'seccompProfile_restricted', level: 'restricted', reason: 'seccompProfile', test: seccompRestricted },
  { id: 'capabilities_restricted', level: 'restricted', reason: 'unrestricted capabilities', test: capabilitiesRestricted },
]);

/** Parses the namespace label's value; upstream treats an unknown value as `restricted` (fail closed). */
export function parseLevel(value: string | undefined): PodSecurityLevel {
  if (value === undefined || value === 'privileged') return 'privileged';
  if (value === 'baseline') return 'baseline';
  return 'restricted';
}

/** Every check of `level` (and the levels below it) that the pod fails. */
export function evaluatePodSecurity(pod: V1Pod, level: PodSecurityLevel): Violation[] {
  if (level === 'privileged') return [];
  const out: Violation[] = [];
  for (const check of CHECKS) {
    if (check.level === 'restricted' && level !== 'restricted') continue;
    const detail = check.test(pod);
    if (detail !== null) out.push({ check: check.id, reason: check.reason, detail });
  }
  return out;
}

/** The API server's own wording: `violates PodSecurity "restricted:latest": reason (detail), ...`. */
export function formatViolations(level: PodSecurityLevel, version: string, violations: readonly Violation[]): string {
  return `violates PodSecurity "${level}:${version}": ${violations.map((v) => `${v.reason} (${v.detail})`).join(', ')}`;
}

/**
 * The violations that injecting caused: those the injected pod has and the submitted pod has not (with
 * the same detail). The app's own violations are the API server's to report, in its own words.
 */
export function violationsAddedBy(original: V1Pod, injected: V1Pod, level: PodSecurityLevel): Violation[] {
  const before = new Set(evaluatePodSecurity(original, level).map((v) => `${v.check}\u0000${v.detail}`));
  return evaluatePodSecurity(injected, level).filter((v) => !before.has(`${v.check}\u0000${v.detail}`));
}
