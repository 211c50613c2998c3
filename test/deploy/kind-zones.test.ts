/**
 * The two-zone kind demo (deploy/kind/up.sh), checked without a cluster (no Docker engine here):
 *  - each zone's ingress, as kustomize renders it: its args go through the real `trellis ingress run`
 *    parser with the values the kubelet and up.sh give them; its ports, probes, token and CA are what that
 *    command needs; its Service is the node port up.sh publishes;
 *  - the samples of each zone (payments in west only, frontend in east only, orders and both Services in
 *    both, exported), and their policy deciding the demo's calls as up.sh expects;
 *  - the sample apps and up.sh's in-pod scripts, run on loopback: their output is what up.sh's checks match.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Script } from 'node:vm';
import { afterAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { parseIngressArgs } from '../../cli/ingress.js';
import { parseZoneGlobal } from '../../cli/control-global.js';
import { INGRESS_SERVICE } from '../../api/zone-ingress.js';
import { TRELLIS_TOKEN_AUDIENCE } from '../../control/kubernetes/token-review-authenticator.js';
import { EXPORT_LABEL } from '../../control/kubernetes/kubernetes-objects.js';
import { DEFAULT_ROOT_NAMESPACE, compilePolicy, validatePolicyObjects, type TrafficPermission } from '../../policy/index.js';
import { requires } from '../helpers/requirements.js';

const ROOT = resolve(import.meta.dirname, '../..');
const UP = readFileSync(join(ROOT, 'deploy/kind/up.sh'), 'utf8');
const TRUST_DOMAIN = /^TRUST_DOMAIN="([^"]+)"$/m.exec(UP)?.[1] ?? '';

interface Container {
  name: string;
  args?: string[];
  command?: string[];
  env?: { name: string; value?: string; valueFrom?: { configMapKeyRef?: { name: string; key: string } } }[];
  ports?: { name: string; containerPort: number }[];
  readinessProbe?: { httpGet?: { path: string; port: string } };
  livenessProbe?: { httpGet?: { path: string; port: string } };
  volumeMounts?: { name: string; mountPath: string }[];
}
interface PodSpec {
  serviceAccountName: string;
  containers: Container[];
  volumes?: { name: string; configMap?: { name: string }; projected?: { sources: { serviceAccountToken?: { audience: string; path: string } }[] } }[];
}
type K8sObject = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> }; spec?: Record<string, unknown>; data?: Record<string, string> };

function render(dir: string): K8sObject[] {
  const text = execFileSync('kubectl', ['kustomize', join(ROOT, dir)], { encoding: 'utf8' });
  return parseAllDocuments(text).map((d) => d.toJS() as K8sObject).filter((o) => o !== null);
}

function find(objects: readonly K8sObject[], kind: string, name: string): K8sObject {
  const found = objects.find((o) => o.kind === kind && (o.metadata.name === name || (kind === 'ConfigMap' && o.metadata.name.startsWith(`${name}-`))));
  if (found === undefined) throw new Error(`no ${kind} ${name}`);
  return found;
}

const podOf = (deployment: K8sObject): PodSpec => (deployment.spec as { template: { spec: PodSpec } }).template.spec;

/** `$(VAR)` expanded as the kubelet does, from the container's env (ConfigMap keys read from `data`). */
function expand(args: readonly string[], container: Container, configMaps: Record<string, Record<string, string>>): string[] {
  const env = new Map<string, string>();
  for (const e of container.env ?? []) {
    const ref = e.valueFrom?.configMapKeyRef;
    const value = e.value ?? (ref === undefined ? undefined : configMaps[ref.name]?.[ref.key]);
    if (value !== undefined) env.set(e.name, value);
  }
  return args.map((a) => a.replace(/\$\(([A-Z_]+)\)/g, (whole, name: string) => env.get(name) ?? whole));
}

/** The address up.sh patches into trellis-mesh's ingressAddress, with a kind node's address. */
function upShIngressAddress(nodeIp: string): string {
  const port = /^INGRESS_NODE_PORT=(\d+)$/m.exec(UP)?.[1];
  expect(UP).toContain('ingress_address="$(node_ip "$cluster"):$INGRESS_NODE_PORT"');
  expect(UP).toMatch(/"ingressAddress\\":\\"\$ingress_address\\"/);
  return `${nodeIp}:${port}`;
}

const scratch = mkdtempSync(join(tmpdir(), 'trellis-kind-zones-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe.skipIf(requires({ tools: ['kubectl'] }).skip)('each kind zone\'s ingress', () => {
  for (const zone of ['east', 'west']) {
    const objects = render(`deploy/kind/overlays/${zone}`);
    const deployment = find(objects, 'Deployment', 'trellis-ingress');
    const pod = podOf(deployment);
    const container = pod.containers[0] as Container;
    const mesh = find(objects, 'ConfigMap', 'trellis-mesh').data as Record<string, string>;

    it(`${zone}: its args pass the real \`trellis ingress run\` parser with the address up.sh publishes`, () => {
      const [command, sub, ...flags] = container.args ?? [];
      expect([command, sub]).toEqual(['ingress', 'run']);
      // Files the kubelet mounts, put at the same names under a scratch directory.
      const mounted = (arg: string): string => arg.replace(/=\/var\/run\/secrets\//, `=${scratch}/`);
      for (const m of container.volumeMounts ?? []) mkdirSync(`${scratch}/${m.mountPath.replace('/var/run/secrets/', '')}`, { recursive: true });
      const ingressAddress = upShIngressAddress('172.18.0.3');
      const args = expand(flags, container, { 'trellis-mesh': { ...mesh, ingressAddress } }).map(mounted);
      const caFile = args.find((a) => a.startsWith('--ca-file='))?.slice('--ca-file='.length) as string;
      writeFileSync(caFile, 'roots\n');
      const { config, graceMs } = parseIngressArgs(args);
      expect(config.publicAddress).toEqual({ host: '172.18.0.3', port: 30443 });
      expect(config.controlUrl.toString()).toBe('https://trellis-control.trellis-system.svc:15012/');
      expect(config.rootNamespace).toBe(DEFAULT_ROOT_NAMESPACE);
      expect(config.tokenFile).toMatch(/identity\/token$/);
      expect(graceMs).toBeGreaterThan(0);
      // The placeholder kustomize leaves, unexpanded, is refused: the parser really checks the address.
      expect(() => parseIngressArgs(flags.map(mounted))).toThrow(/--public-address/);
      // The zone control plane publishes the same address upward (--ingress-address), which it accepts too.
      const problems: string[] = [];
      parseZoneGlobal({ global: ['https://172.18.0.2:30020'], 'global-ca': caFile, 'ingress-address': [ingressAddress] }, problems);
      expect(problems).toEqual([]);
    });

    it(`${zone}: joins as ${DEFAULT_ROOT_NAMESPACE}/${INGRESS_SERVICE} with a projected token for audience "${TRELLIS_TOKEN_AUDIENCE}" and the trust bundle up.sh creates`, () => {
      expect(deployment.metadata.namespace).toBe(DEFAULT_ROOT_NAMESPACE);
      expect(pod.serviceAccountName).toBe(INGRESS_SERVICE);
      const arg = (flag: string): string => (container.args ?? []).find((a) => a.startsWith(`${flag}=`))?.slice(flag.length + 1) as string;
      const volumeAt = (file: string): NonNullable<PodSpec['volumes']>[number] => {
        const mount = (container.volumeMounts ?? []).find((m) => file.startsWith(`${m.mountPath}/`));
        const volume = pod.volumes?.find((v) => v.name === mount?.name);
        if (mount === undefined || volume === undefined) throw new Error(`nothing mounted at ${file}`);
        return volume;
      };
      const token = volumeAt(arg('--token-file')).projected?.sources.find((s) => s.serviceAccountToken !== undefined)?.serviceAccountToken;
      expect(token).toEqual(expect.objectContaining({ audience: TRELLIS_TOKEN_AUDIENCE }));
      expect(arg('--token-file').endsWith(`/${token?.path}`)).toBe(true);
      const bundle = volumeAt(arg('--ca-file')).configMap?.name as string;
      const key = arg('--ca-file').split('/').at(-1) as string;
      expect(UP).toContain(`create configmap ${bundle} \\\n    --from-file=${key}="$WORK/root/bundle.pem"`);
    });

    it(`${zone}: listens, answers probes and is exposed where up.sh says`, () => {
      writeFileSync(join(scratch, 'ca.pem'), 'roots\n');
      const { config } = parseIngressArgs(expand(container.args?.slice(2) ?? [], container, { 'trellis-mesh': { ...mesh, ingressAddress: '10.0.0.1:30443' } }).map((a) => (a.startsWith('--ca-file=') ? `--ca-file=${join(scratch, 'ca.pem')}` : a)));
      const port = (name: string): number | undefined => container.ports?.find((p) => p.name === name)?.containerPort;
      expect(config.listen.port).toBe(port('tls-ingress'));
      // The kubelet probes from outside the pod's loopback: the admin listener must not stay on 127.0.0.1.
      expect(config.admin).toEqual({ host: '0.0.0.0', port: port('admin') });
      expect(container.readinessProbe?.httpGet).toEqual({ path: '/ready', port: 'admin' });
      expect(container.livenessProbe?.httpGet).toEqual({ path: '/healthz', port: 'admin' });
      const service = find(objects, 'Service', 'trellis-ingress').spec as { type: string; ports: { targetPort: string; nodePort?: number }[] };
      expect(service.type).toBe('NodePort');
      expect(service.ports).toEqual([expect.objectContaining({ targetPort: 'tls-ingress', nodePort: Number(/^INGRESS_NODE_PORT=(\d+)$/m.exec(UP)?.[1]) })]);
      // Two replicas, and voluntary disruptions (a node drain) leave one: the zone stays reachable.
      expect((deployment.spec as { replicas: number }).replicas).toBeGreaterThanOrEqual(2);
      const budget = find(objects, 'PodDisruptionBudget', 'trellis-ingress').spec as { minAvailable: number; selector: { matchLabels: Record<string, string> } };
      expect(budget.minAvailable).toBe(1);
      expect(budget.selector.matchLabels).toEqual((deployment.spec as { selector: { matchLabels: Record<string, string> } }).selector.matchLabels);
      const global = render('deploy/kubernetes/overlays/global');
      const globalPorts = (find(global, 'Service', 'trellis-global').spec as { ports: { nodePort: number }[] }).ports;
      expect(globalPorts[0]?.nodePort).toBe(Number(/^GLOBAL_NODE_PORT=(\d+)$/m.exec(UP)?.[1]));
    });
  }

  it('up.sh restarts the ingress with the control plane after patching the address, and waits for it', () => {
    expect(UP).toContain('rollout restart deploy/trellis-control deploy/trellis-ingress');
    expect(UP).toContain('rollout status deploy/trellis-ingress');
    // `kubectl rollout status` refuses more than one object ("only supported on individual resources").
    const waits = [...UP.matchAll(/rollout status (\S+)/g)].map((m) => m[1] as string);
    expect(waits.length).toBeGreaterThan(5);
    for (const target of waits) expect(target, `rollout status ${target}`).toMatch(/^(?:(?:deploy|ds)\/[a-z-]+|"\$deployment")$/);
  });
});

describe.skipIf(requires({ tools: ['kubectl'] }).skip)('the kind samples per zone', () => {
  const zones = { east: render('deploy/kind/samples/east'), west: render('deploy/kind/samples/west') };
  const deployments = (objects: readonly K8sObject[]): string[] => objects.filter((o) => o.kind === 'Deployment').map((o) => o.metadata.name).sort();

  it('validate against the published schemas; TrafficPermissions against the CRD\'s policy validator', async () => {
    for (const objects of Object.values(zones)) {
      for (const object of objects) {
        if (object.apiVersion === 'trellis.dev/v1alpha1') {
          validatePolicyObjects([object], 'sample');
          continue;
        }
        const path = object.apiVersion.includes('/') ? `kubernetes-models/${object.apiVersion}` : `kubernetes-models/v1`;
        const Model = ((await import(path)) as Record<string, new (d: unknown) => { validate(): void }>)[object.kind];
        if (Model === undefined) throw new Error(`no schema for ${object.kind}`);
        new Model(object).validate();
      }
    }
  });

  it('put payments in west only, frontend in east only, orders and both (exported) Services in both', () => {
    expect(deployments(zones.east)).toEqual(['frontend', 'orders']);
    expect(deployments(zones.west)).toEqual(['orders', 'payments']);
    for (const [zone, objects] of Object.entries(zones)) {
      for (const name of ['orders', 'payments']) {
        const service = find(objects, 'Service', name);
        expect(service.metadata.labels?.[EXPORT_LABEL], `${zone} ${name}`).toBe('true');
        // A number: a zone with no ready pod of it still defines the port (no EndpointSlice to resolve a name).
        const ports = (service.spec as { ports: { port: number; targetPort: unknown }[] }).ports;
        expect(ports).toEqual([expect.objectContaining({ name: 'http', port: 8080, targetPort: 8080 })]);
        if (deployments(objects).includes(name)) expect(podOf(find(objects, 'Deployment', name)).containers[0]?.ports).toEqual([{ name: 'http', containerPort: 8080 }]);
      }
      // Each app names its zone from the zone's ConfigMap (its generated name, as kustomize rewrote the reference).
      const zoneMap = find(objects, 'ConfigMap', 'shop-zone');
      expect(zoneMap.data).toEqual({ zone });
      const ref = podOf(find(objects, 'Deployment', 'orders')).containers[0]?.env?.[0]?.valueFrom?.configMapKeyRef;
      expect(ref).toEqual({ name: zoneMap.metadata.name, key: 'zone' });
    }
  });

  it('carry the policy that decides the demo\'s calls as up.sh expects, in any zone', () => {
    const policies = zones.west.filter((o) => o.kind === 'TrafficPermission') as unknown as TrafficPermission[];
    expect(zones.east.filter((o) => o.kind === 'TrafficPermission')).toEqual(policies);
    const policy = compilePolicy(policies, { trustDomain: TRUST_DOMAIN, rootNamespace: DEFAULT_ROOT_NAMESPACE });
    const call = (from: string, to: string, method: string, path: string): string => {
      const d = policy.evaluate({ source: { trustDomain: TRUST_DOMAIN, namespace: 'shop', service: from, zone: 'east' }, destination: { namespace: 'shop', service: to }, protocol: 'http', http: { method, path } });
      return `${d.allowed ? 'allow' : 'deny'} ${d.policy ?? 'default-deny'}${d.rule === null ? '' : `#${d.rule}`}`;
    };
    expect(call('frontend', 'orders', 'GET', '/')).toBe('allow shop/orders-callers#0');
    expect(call('orders', 'payments', 'POST', '/pay')).toBe('allow shop/payments-callers#0');
    expect(call('orders', 'payments', 'GET', '/pay')).toBe('deny default-deny');
    const denied = call('frontend', 'payments', 'GET', '/balance');
    expect(denied).toBe('deny shop/payments-callers#1');
    // up.sh calls exactly that and matches the rule the 403 names.
    expect(UP).toContain('denied="$(call "$PAYMENTS/balance" GET || true)"');
    expect(UP).toContain(`"403 ${denied.slice('deny '.length)}"*)`);
  });
});

/** A JavaScript program embedded in a manifest's args or up.sh, run as the pod runs it (`node -e SCRIPT ARGS`). */
function runNode(script: string, args: readonly string[], env: Record<string, string>, preload?: string): ChildProcess {
  return spawn(process.execPath, [...(preload === undefined ? [] : ['--require', preload]), '-e', script, ...args], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
}

async function output(child: ChildProcess): Promise<string> {
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  await once(child, 'exit');
  return out.trim();
}

/** An app script from a sample manifest, listening on PORT instead of 8080; resolves once it answers. */
async function startApp(file: string, name: string, env: Record<string, string>, preload?: string): Promise<{ url: string; child: ChildProcess }> {
  const docs = parseAllDocuments(readFileSync(join(ROOT, file), 'utf8')).map((d) => d.toJS() as K8sObject);
  const container = podOf(docs.find((d) => d.kind === 'Deployment' && d.metadata.name === name) as K8sObject).containers[0] as Container;
  expect(container.command).toEqual(['node', '-e']);
  const script = (container.args?.[0] ?? '').replace('.listen(8080)', '.listen(Number(process.env.PORT))');
  const port = await freePort();
  const child = runNode(script, [], { ...env, PORT: String(port) }, preload);
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 100 && (await fetch(`${url}/healthz`).then((r) => r.ok, () => false)) === false; i++) await new Promise((r) => setTimeout(r, 50));
  return { url, child };
}

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  server.close();
  return port;
}

/** A quoted shell variable of up.sh (`NAME='...'`), i.e. one of its in-pod Node scripts. */
function upShScript(name: string): string {
  const match = new RegExp(`^${name}='([^']*)'$`, 'm').exec(UP);
  if (match === null) throw new Error(`no ${name}='...' in up.sh`);
  return match[1] as string;
}

/** Whether bash's `case` in up.sh's check of the allowed call matches TEXT. */
function upShAllowedCaseMatches(text: string): boolean {
  const pattern = /^ {4}("200 - orders in east .*)\) break ;;$/m.exec(UP)?.[1];
  expect(pattern).toBeDefined();
  const out = execFileSync('bash', ['-c', `TRUST_DOMAIN=${TRUST_DOMAIN}; case "$1" in ${pattern as string}) echo yes ;; *) echo no ;; esac`, 'check', text], { encoding: 'utf8' });
  return out.trim() === 'yes';
}

describe('the sample apps and up.sh\'s in-pod scripts, run on loopback', () => {
  const children: ChildProcess[] = [];
  afterAll(() => {
    for (const c of children) c.kill();
  });

  it('orders in east charging payments in west answers what up.sh\'s first check matches, naming the caller payments saw', async () => {
    const payments = await startApp('deploy/kind/samples/west/payments.yaml', 'payments', { ZONE: 'west', HOSTNAME: 'payments-7c9-x2' });
    children.push(payments.child);
    // orders reaches payments at its cluster DNS name; here that name is the loopback payments.
    const preload = join(scratch, 'payments-dns.cjs');
    writeFileSync(preload, `const real = globalThis.fetch; globalThis.fetch = (u, i) => real(String(u).replace('http://payments.shop.svc.cluster.local:8080', ${JSON.stringify(payments.url)}), i);`);
    const orders = await startApp('deploy/kind/samples/base/shop.yaml', 'orders', { ZONE: 'east', HOSTNAME: 'orders-5f-abc' }, preload);
    children.push(orders.child);
    // In the mesh, payments' sidecar sets x-forwarded-client-cert from the verified caller; here the test
    // stands in for it, then sees payments report it. Without it, payments says so (and the check fails).
    const call = upShScript('CALL');
    const callOrders = (): Promise<string> => output(runNode(call, [`${orders.url}/`, 'GET'], {}));
    const bare = await callOrders();
    expect(bare).toMatch(/^200 - orders in east \(orders-5f-abc\) -> payments: 200 payments in west \(payments-7c9-x2\): POST \/pay from no caller identity$/);
    expect(upShAllowedCaseMatches(bare)).toBe(false);
    const seen = await output(runNode(call, [`${payments.url}/pay`, 'POST'], {}));
    expect(seen).toBe('200 - payments in west (payments-7c9-x2): POST /pay from no caller identity');
    const withCaller = `200 - orders in east (orders-5f-abc) -> payments: 200 payments in west (payments-7c9-x2): POST /pay from spiffe://${TRUST_DOMAIN}/ns/shop/sa/orders`;
    expect(upShAllowedCaseMatches(withCaller)).toBe(true);
    expect(upShAllowedCaseMatches(withCaller.replace('orders in east', 'orders in west'))).toBe(false);
    const xfcc = await fetch(`${payments.url}/pay`, { method: 'POST', headers: { 'x-forwarded-client-cert': `URI=spiffe://${TRUST_DOMAIN}/ns/shop/sa/orders` } }).then((r) => r.text());
    expect(`200 - orders in east (orders-5f-abc) -> payments: 200 ${xfcc.trim()}`).toBe(withCaller);
  });

  it('every other Node one-liner up.sh runs in a pod is valid JavaScript', () => {
    const inline = [...UP.matchAll(/node -e '([^']+)'/g)].map((m) => m[1] as string);
    expect(inline.length).toBeGreaterThanOrEqual(2);
    for (const code of [...inline, upShScript('CALL'), upShScript('PROBE')]) expect(() => new Script(code), code).not.toThrow();
    expect(() => new Script('fetch(("x")')).toThrow();
  });

  it('the failover probe reports the first answer from west with the calls that failed, as up.sh reads it', async () => {
    let calls = 0;
    const orders: Server = createServer((req, res) => {
      calls++;
      if (calls <= 3) res.end('orders in east (orders-a): ...\n');
      else if (calls <= 5) res.writeHead(503).end('no healthy upstream\n');
      else res.end('orders in west (orders-b): ...\n');
    });
    orders.listen(0, '127.0.0.1');
    await once(orders, 'listening');
    try {
      const url = `http://127.0.0.1:${(orders.address() as AddressInfo).port}/`;
      const log = await output(runNode(upShScript('PROBE'), [url, '20'], {}));
      const lines = log.split('\n');
      expect(lines.map((l) => l.replace(/^\d{13} /, 'T '))).toEqual(['T 200 east', 'T 503 none', 'T 200 west', expect.stringMatching(/^west \d{13} 6 2$/)]);
      // up.sh: `read -r outcome t1 calls failed < <(grep -E '^(west|timeout) ' ...)`, then t1 - t0.
      const parsed = execFileSync('bash', ['-c', 'read -r outcome t1 calls failed < <(grep -E "^(west|timeout) " <<<"$1"); echo "$outcome $((t1 - $2)) $calls $failed"', 'check', log, lines[0]?.split(' ')[0] as string], { encoding: 'utf8' }).trim();
      expect(parsed).toMatch(/^west \d+ 6 2$/);
      expect(UP).toContain(`read -r outcome t1 calls failed < <(grep -E '^(west|timeout) ' "$probe_log")`);
      expect(UP).toContain(`until grep -q ' 200 east$' "$probe_log"`);
    } finally {
      orders.close();
    }
  });
});
