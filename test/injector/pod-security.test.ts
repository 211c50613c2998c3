/**
 * The Pod Security table, one upstream check at a time, on pods in the API's JSON shape: each check has a
 * pod that fails it with the upstream reason and a near-identical pod that passes. Then the whole: a pod
 * that satisfies `restricted` stays clean, and the levels nest (baseline ⊂ restricted).
 */
import { describe, expect, it } from 'vitest';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { CHECKS, evaluatePodSecurity, formatViolations, parseLevel, violationsAddedBy } from '../../injector/pod-security.js';

function restrictedContainer(name: string, extra: Partial<V1Container> = {}): V1Container {
  return {
    name,
    image: 'registry.example.com/app:1',
    securityContext: { allowPrivilegeEscalation: false, runAsNonRoot: true, capabilities: { drop: ['ALL'] }, seccompProfile: { type: 'RuntimeDefault' } },
    ...extra,
  };
}

/** A pod as the API server passes it in an AdmissionReview, satisfying every `restricted` rule. */
function restrictedPod(): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { generateName: 'web-7c9f8d-', namespace: 'shop', labels: { app: 'web' } },
    spec: {
      securityContext: { runAsNonRoot: true, runAsUser: 10001, seccompProfile: { type: 'RuntimeDefault' } },
      containers: [restrictedContainer('web', { ports: [{ containerPort: 8080, name: 'http', protocol: 'TCP' }] })],
      volumes: [
        { name: 'config', configMap: { name: 'web-config' } },
        { name: 'cache', emptyDir: {} },
      ],
    },
  };
}

type Mutate = (pod: V1Pod) => void;
const c0 = (pod: V1Pod): V1Container => pod.spec!.containers[0]!;

/** [check id, reason, a change that breaks it, the expected detail]. */
const CASES: readonly [string, string, Mutate, RegExp][] = [
  ['hostProcess', 'hostProcess', (p) => void (c0(p).securityContext!.windowsOptions = { hostProcess: true }), /container "web" must not set securityContext.windowsOptions.hostProcess=true/],
  ['hostNamespaces', 'host namespaces', (p) => Object.assign(p.spec!, { hostNetwork: true, hostPID: true }), /^hostNetwork=true, hostPID=true$/],
  ['privileged', 'privileged', (p) => void (c0(p).securityContext!.privileged = true), /container "web" must not set securityContext.privileged=true/],
  ['capabilities_baseline', 'non-default capabilities', (p) => void (c0(p).securityContext!.capabilities!.add = ['NET_ADMIN', 'CHOWN', 'NET_RAW']), /container "web" must not include "NET_ADMIN", "NET_RAW" in securityContext.capabilities.add/],
  ['hostPathVolumes', 'hostPath volumes', (p) => p.spec!.volumes!.push({ name: 'docker', hostPath: { path: '/var/run/docker.sock' } }), /volume "docker"/],
  ['hostPorts', 'hostPort', (p) => void (c0(p).ports![0]!.hostPort = 80), /container "web" uses hostPort 80/],
  ['appArmorProfile', 'forbidden AppArmor profile', (p) => void (p.metadata!.annotations = { 'container.apparmor.security.beta.kubernetes.io/web': 'unconfined' }), /unconfined/],
  ['seLinuxOptions', 'seLinuxOptions', (p) => void (p.spec!.securityContext!.seLinuxOptions = { type: 'spc_t' }), /pod set forbidden securityContext.seLinuxOptions: type "spc_t"/],
  ['procMount', 'procMount', (p) => void (c0(p).securityContext!.procMount = 'Unmasked'), /container "web" must not set securityContext.procMount/],
  ['seccompProfile_baseline', 'seccompProfile', (p) => void (c0(p).securityContext!.seccompProfile = { type: 'Unconfined' }), /container "web" must not set securityContext.seccompProfile.type to "Unconfined"/],
  ['sysctls', 'forbidden sysctls', (p) => void (p.spec!.securityContext!.sysctls = [{ name: 'net.ipv4.ip_forward', value: '1' }, { name: 'net.ipv4.tcp_syncookies', value: '1' }]), /^net.ipv4.ip_forward$/],
  ['restrictedVolumes', 'restricted volume types', (p) => p.spec!.volumes!.push({ name: 'legacy', nfs: { server: 'nfs.example.com', path: '/x' } }), /volume "legacy"/],
  ['allowPrivilegeEscalation', 'allowPrivilegeEscalation != false', (p) => void delete c0(p).securityContext!.allowPrivilegeEscalation, /container "web" must set securityContext.allowPrivilegeEscalation=false/],
  ['runAsNonRoot', 'runAsNonRoot != true', (p) => void (c0(p).securityContext!.runAsNonRoot = false), /container "web" must not set securityContext.runAsNonRoot=false/],
  ['runAsUser', 'runAsUser=0', (p) => void (c0(p).securityContext!.runAsUser = 0), /container "web" must not set runAsUser=0/],
  ['seccompProfile_restricted', 'seccompProfile', (p) => {
    delete p.spec!.securityContext!.seccompProfile;
    delete c0(p).securityContext!.seccompProfile;
  }, /pod or container "web" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost"/],
  ['capabilities_restricted', 'unrestricted capabilities', (p) => void (c0(p).securityContext!.capabilities = { add: ['SYS_TIME'] }), /must set securityContext.capabilities.drop=\["ALL"\].*must not include "SYS_TIME"/],
];

describe('the Pod Security table', () => {
  it('covers every upstream check exactly once', () => {
    expect(CASES.map((c) => c[0]).sort()).toEqual(CHECKS.map((c) => c.id).sort());
  });

  it('passes a pod that satisfies restricted, at every level', () => {
    for (const level of ['privileged', 'baseline', 'restricted'] as const) expect(evaluatePodSecurity(restrictedPod(), level)).toEqual([]);
  });

  for (const [id, reason, mutate, detail] of CASES) {
    it(`${id}: fails with "${reason}" and the upstream detail`, () => {
      const pod = restrictedPod();
      mutate(pod);
      const level = CHECKS.find((c) => c.id === id)!.level;
      const found = evaluatePodSecurity(pod, 'restricted').filter((v) => v.check === id);
      expect(found).toHaveLength(1);
      expect(found[0]!.reason).toBe(reason);
      expect(found[0]!.detail).toMatch(detail);
      // A baseline check fails baseline too; a restricted-only one does not.
      expect(evaluatePodSecurity(pod, 'baseline').some((v) => v.check === id)).toBe(level === 'baseline');
      expect(evaluatePodSecurity(pod, 'privileged')).toEqual([]);
    });
  }

  it('accepts the allowed values around each rule', () => {
    const pod = restrictedPod();
    c0(pod).securityContext!.capabilities = { drop: ['ALL'], add: ['NET_BIND_SERVICE'] };
    c0(pod).securityContext!.seccompProfile = { type: 'Localhost', localhostProfile: 'profiles/web.json' };
    c0(pod).securityContext!.procMount = 'Default';
    pod.spec!.securityContext!.seLinuxOptions = { type: 'container_t', level: 's0:c123,c456' };
    pod.spec!.securityContext!.sysctls = [{ name: 'net.ipv4.ip_unprivileged_port_start', value: '0' }];
    pod.metadata!.annotations = { 'container.apparmor.security.beta.kubernetes.io/web': 'localhost/web' };
    c0(pod).ports![0]!.hostPort = 0;
    pod.spec!.volumes!.push({ name: 'token', projected: { sources: [{ serviceAccountToken: { path: 'token', audience: 'x' } }] } }, { name: 'data', persistentVolumeClaim: { claimName: 'data' } });
    expect(evaluatePodSecurity(pod, 'restricted')).toEqual([]);
  });

  it('takes runAsNonRoot from the pod for containers that do not set it, and checks init and ephemeral containers', () => {
    const pod = restrictedPod();
    delete c0(pod).securityContext!.runAsNonRoot;
    expect(evaluatePodSecurity(pod, 'restricted')).toEqual([]);
    delete pod.spec!.securityContext!.runAsNonRoot;
    expect(evaluatePodSecurity(pod, 'restricted').map((v) => v.detail)).toEqual(['pod or container "web" must set securityContext.runAsNonRoot=true']);
    const init = restrictedPod();
    init.spec!.initContainers = [{ name: 'setup', image: 'busybox', securityContext: { privileged: true } }];
    init.spec!.ephemeralContainers = [{ name: 'debugger', image: 'busybox', securityContext: { capabilities: { add: ['SYS_PTRACE'] } } }];
    const details = evaluatePodSecurity(init, 'baseline').map((v) => v.detail);
    expect(details).toContain('container "setup" must not set securityContext.privileged=true');
    expect(details).toContain('container "debugger" must not include "SYS_PTRACE" in securityContext.capabilities.add');
  });

  it('reads the namespace label as upstream does: unknown values are restricted', () => {
    expect(parseLevel(undefined)).toBe('privileged');
    expect(parseLevel('baseline')).toBe('baseline');
    expect(parseLevel('restricted')).toBe('restricted');
    expect(parseLevel('Baseline')).toBe('restricted');
  });

  it("words violations as the API server does, and separates injection's from the app's own", () => {
    const app = restrictedPod();
    c0(app).ports![0]!.hostPort = 8080;
    const injected = structuredClone(app);
    injected.spec!.initContainers = [{ name: 'trellis-init', image: 'x', securityContext: { capabilities: { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] } } }];
    const added = violationsAddedBy(app, injected, 'baseline');
    expect(added.map((v) => v.check)).toEqual(['capabilities_baseline']);
    expect(formatViolations('baseline', 'latest', added)).toBe(
      'violates PodSecurity "baseline:latest": non-default capabilities (container "trellis-init" must not include "NET_ADMIN", "NET_RAW" in securityContext.capabilities.add)',
    );
  });
});
