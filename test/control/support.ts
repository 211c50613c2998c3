/**
 * Test support for control-plane suites: a control plane in this process on loopback port 0 with a temp
 * data dir, and a small client that speaks the protocol (issue, renew, watch) with real certificates.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IncomingMessage } from 'node:http';
import { CONTROL_PATHS, type IssueResponse, type Registration, type WatchMessage } from '../../api/control-protocol.js';
import { controlRequest, openControlStream, type ClientCertificate, type ControlEndpoint } from '../../api/control-client.js';
import { createCsr, generateWorkloadKey } from '../../ca/csr.js';
import { silentLogger } from '../../common/log.js';
import { CONTROL_DEFAULTS, type ControlPlaneConfig } from '../../control/config.js';
import { startControlPlane, type RunningControlPlane } from '../../control/control-plane.js';

export interface TestControlPlane {
  readonly cp: RunningControlPlane;
  readonly dir: string;
  readonly endpoint: ControlEndpoint;
  close(): Promise<void>;
}

export async function startTestControlPlane(overrides: Partial<ControlPlaneConfig> = {}, dir = mkdtempSync(join(tmpdir(), 'trellis-cp-'))): Promise<TestControlPlane> {
  const config: ControlPlaneConfig = {
    ...CONTROL_DEFAULTS,
    dataDir: join(dir, 'data'),
    caDir: undefined,
    policyDir: undefined,
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    ...overrides,
  };
  const cp = await startControlPlane(config, silentLogger());
  return {
    cp,
    dir,
    endpoint: { url: new URL(`https://127.0.0.1:${cp.apiAddress.port}`), trustBundlePem: cp.trustBundlePem, rootNamespace: config.rootNamespace },
    async close() {
      await cp.close();
    },
  };
}

/**
 * A policy directory under `parent` whose one root-namespace policy lets every workload call every service:
 * for suites about distribution, since wildcard subscribers only learn services policy lets them call.
 */
export function allowAllPolicyDir(parent: string): string {
  const dir = join(parent, 'policy');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'allow-all.yaml'), `apiVersion: trellis.dev/v1alpha1
kind: TrafficPermission
metadata: { name: allow-all, namespace: ${CONTROL_DEFAULTS.rootNamespace} }
spec:
  destination: '*'
  mode: enforce
  rules:
    - action: allow
      from: ['*']
`);
  return dir;
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export interface IssuedTestIdentity extends ClientCertificate {
  readonly issued: IssueResponse;
}

export async function issueWithToken(endpoint: ControlEndpoint, token: string, spiffeId: string): Promise<IssuedTestIdentity> {
  const key = await generateWorkloadKey();
  const issued = await controlRequest<IssueResponse>(endpoint, { method: 'POST', path: CONTROL_PATHS.issue, bearer: token, body: { csrPem: await createCsr(key, spiffeId) } });
  return { issued, certChainPem: issued.certChainPem, keyPem: key.keyPem };
}

export function registration(instanceId: string, tunnelPort: number, extra: Partial<Registration> = {}): Registration {
  return { instanceId, address: '127.0.0.1', tunnelPort, ports: [{ port: 8080, protocol: 'http' }], healthy: true, upstreams: [], agentVersion: 'test', ...extra };
}

/** An open watch: messages as they arrive, and a way to wait for the next matching one. */
export class TestWatch {
  readonly messages: WatchMessage[] = [];
  private waiters: { match: (m: WatchMessage) => boolean; resolve: (m: WatchMessage) => void }[] = [];
  private partial = '';

  private constructor(readonly response: IncomingMessage) {
    response.on('data', (chunk: Buffer) => {
      const text = this.partial + chunk.toString('utf8');
      const lines = text.split('\n');
      this.partial = lines.pop() ?? '';
      for (const line of lines) {
        if (line === '') continue;
        const message = JSON.parse(line) as WatchMessage;
        this.messages.push(message);
        this.waiters = this.waiters.filter((w) => {
          if (!w.match(message)) return true;
          w.resolve(message);
          return false;
        });
      }
    });
  }

  static async open(endpoint: ControlEndpoint, cert: ClientCertificate, reg: Registration): Promise<TestWatch> {
    const res = await openControlStream(endpoint, { method: 'POST', path: CONTROL_PATHS.watch, body: { registration: reg }, clientCert: cert });
    if (res.statusCode !== 200) {
      let body = '';
      for await (const c of res as AsyncIterable<Buffer>) body += c.toString();
      throw new Error(`watch refused ${res.statusCode}: ${body}`);
    }
    return new TestWatch(res);
  }

  next(match: (m: WatchMessage) => boolean, timeoutMs = 5_000): Promise<WatchMessage> {
    const found = this.messages.find(match);
    if (found !== undefined) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching watch message within ${timeoutMs} ms; got ${JSON.stringify(this.messages).slice(0, 2000)}`)), timeoutMs);
      this.waiters.push({ match, resolve: (m) => (clearTimeout(timer), resolve(m)) });
    });
  }

  close(): void {
    this.response.destroy();
  }
}
