/**
 * `trellis check` against a control plane on VMs: its admin API (/ready, /policy, /registry), its API
 * port's TLS certificate (verified against the mesh trust bundle), the trust bundle itself, and, for
 * each agent admin URL given, whether the agent runs the control plane's current config version.
 * Every request has a time limit; an unreachable endpoint is a finding, never a hang.
 */
import { connect as tlsConnect } from 'node:tls';
import { certificateFindings, fail, ok, warn, type Finding } from './check-findings.js';

export interface ControlCheckInput {
  readonly adminUrl: string;
  /** host:port of the control API (TLS), to check its serving certificate. */
  readonly apiAddress?: string;
  readonly trustBundlePem?: string;
  readonly agentAdminUrls: readonly string[];
  readonly now: Date;
  readonly warnDays: number;
  readonly timeoutMs: number;
}

async function getJson(url: string, timeoutMs: number): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  const text = await res.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new Error(`${url} answered ${res.status} with something that is not JSON`);
  }
  return { status: res.status, body: (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown> };
}

function reason(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (err as Error).message;
}

async function readiness(input: ControlCheckInput, findings: Finding[]): Promise<number | undefined> {
  let ready;
  try {
    ready = await getJson(new URL('/ready', input.adminUrl).toString(), input.timeoutMs);
  } catch (err) {
    findings.push(fail('control plane reachable', `no answer from ${input.adminUrl} (${reason(err)})`, 'start the control plane (`trellis control run`, or `systemctl status trellis-control`), and pass its --admin address as --control-admin'));
    return undefined;
  }
  findings.push(ok('control plane reachable', `${input.adminUrl} answers`));
  const body = ready.body;
  const version = typeof body.configVersion === 'number' ? body.configVersion : undefined;
  if (ready.status === 200 && body.ready === true) findings.push(ok('control plane ready', `mode ${String(body.mode)}, zone ${String(body.zone)}, config version ${String(version)}, ${String(body.agents)} agent stream(s)`));
  else findings.push(fail('control plane ready', `not ready: ${JSON.stringify(body)}`, 'read its log: it says what it waits for (the CA, the store, the Kubernetes API, the global control plane)'));
  return version;
}

async function policy(input: ControlCheckInput, findings: Finding[]): Promise<void> {
  try {
    const { body } = await getJson(new URL('/policy', input.adminUrl).toString(), input.timeoutMs);
    const error = body.error as { message?: string; issues?: string[]; at?: string } | undefined;
    const count = Array.isArray(body.policies) ? body.policies.length : 0;
    if (error != null) {
      findings.push(fail('policies valid', `the last change was rejected at ${String(error.at)}: ${String(error.message)}${(error.issues ?? []).map((i) => `\n      ${i}`).join('')}`, `fix the files (\`trellis policy check FILE...\` shows every problem); the previous policy (${count} in force, revision ${String(body.revision)}) stays in force meanwhile`));
    } else {
      findings.push(ok('policies valid', `${count} in force, revision ${String(body.revision)}`));
    }
  } catch (err) {
    findings.push(fail('policies valid', `cannot read ${input.adminUrl}/policy (${reason(err)})`, 'check the control plane admin address'));
  }
}

async function registry(input: ControlCheckInput, findings: Finding[]): Promise<void> {
  try {
    const { body } = await getJson(new URL('/registry', input.adminUrl).toString(), input.timeoutMs);
    const endpoints = (Array.isArray(body.endpoints) ? body.endpoints : []) as { instanceId: string; service: string; namespace: string; healthy: boolean; agent?: unknown }[];
    const unhealthy = endpoints.filter((e) => e.healthy !== true);
    if (unhealthy.length === 0) findings.push(ok('agents healthy', `${endpoints.length} registered instance(s), all healthy`));
    else findings.push(warn('agents healthy', `${unhealthy.length} of ${endpoints.length} unhealthy: ${unhealthy.slice(0, 10).map((e) => `${e.namespace}/${e.service} (${e.instanceId})`).join(', ')}`, 'look at those agents (`curl http://127.0.0.1:15000/ready` on the workload) and their apps'));
  } catch (err) {
    findings.push(fail('agents healthy', `cannot read ${input.adminUrl}/registry (${reason(err)})`, 'check the control plane admin address'));
  }
}

function servingCertificate(address: string, bundle: string | undefined, timeoutMs: number): Promise<{ pem: string; authorized: boolean; error: string | undefined }> {
  const [host, port] = [address.slice(0, address.lastIndexOf(':')).replace(/^\[|\]$/g, ''), Number(address.slice(address.lastIndexOf(':') + 1))];
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host, port, ...(bundle === undefined ? {} : { ca: bundle }), rejectUnauthorized: false, servername: /^[\d.:]+$/.test(host) ? undefined : host, timeout: timeoutMs }, () => {
      const cert = socket.getPeerX509Certificate();
      socket.destroy();
      resolve({ pem: cert?.toString() ?? '', authorized: socket.authorized, error: socket.authorizationError?.toString() });
    });
    socket.once('timeout', () => socket.destroy(new Error(`no TLS handshake within ${timeoutMs} ms`)));
    socket.once('error', reject);
  });
}

async function agentVersions(input: ControlCheckInput, current: number | undefined, findings: Finding[]): Promise<void> {
  for (const url of input.agentAdminUrls) {
    try {
      const { body } = await getJson(new URL('/config', url).toString(), input.timeoutMs);
      const version = typeof body.version === 'number' ? body.version : undefined;
      if (version === undefined) findings.push(fail(`agent ${url} config`, 'holds no config from the control plane yet', 'check that the agent reaches the control plane (its /ready says why not)'));
      else if (current !== undefined && version < current) findings.push(warn(`agent ${url} config`, `version ${version}, the control plane is at ${current}`, 'the agent is behind: check its connection to the control plane (`/ready` shows controlPlane.connected and lastError)'));
      else findings.push(ok(`agent ${url} config`, `version ${version} (current)`));
    } catch (err) {
      findings.push(fail(`agent ${url} config`, `no answer (${reason(err)})`, 'pass the agent admin address (--admin of `trellis agent run`, 127.0.0.1:15000 by default) reachable from here'));
    }
  }
}

export async function controlFindings(input: ControlCheckInput): Promise<Finding[]> {
  const findings: Finding[] = [];
  const version = await readiness(input, findings);
  if (version === undefined && !findings.some((f) => f.check === 'control plane ready')) return findings;
  await policy(input, findings);
  await registry(input, findings);
  if (input.trustBundlePem !== undefined) findings.push(...certificateFindings('trust bundle', input.trustBundlePem, input.now, input.warnDays, 'add the new root to the bundle (`trellis ca rotate`) before the old one expires, and distribute it'));
  if (input.apiAddress !== undefined) {
    try {
      const served = await servingCertificate(input.apiAddress, input.trustBundlePem, input.timeoutMs);
      if (input.trustBundlePem !== undefined && !served.authorized) findings.push(fail('control API certificate trusted', `${input.apiAddress} presents a certificate the trust bundle does not verify (${served.error ?? 'unknown'})`, 'the control plane and the agents must share the mesh roots: check --ca-dir of the control plane and the bundle given here'));
      else if (input.trustBundlePem !== undefined) findings.push(ok('control API certificate trusted', `${input.apiAddress} verifies against the trust bundle`));
      findings.push(...certificateFindings('control API certificate', served.pem, input.now, input.warnDays, 'the control plane renews its own serving certificate: restart it if it did not, and check its CA (`trellis ca inspect`)'));
    } catch (err) {
      findings.push(fail('control API reachable', `no TLS handshake with ${input.apiAddress} (${(err as Error).message})`, 'check the --listen address of the control plane and the firewall'));
    }
  }
  await agentVersions(input, version, findings);
  return findings;
}
