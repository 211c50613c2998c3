/**
 * Step 1 of the agent's start: its workload identity. The certificate saved in `--data-dir` if it is still
 * usable, else one issued with the join token (or projected service-account token). An unreachable
 * control plane is retried with backoff; a refused credential, our own bad input or a control plane whose
 * certificate does not verify stop the start with a clear error, since waiting cannot fix them.
 */
import { promises as fs } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { ControlError, type ControlEndpoint } from '../api/control-client.js';
import { Backoff } from '../common/backoff.js';
import { CODE } from '../common/error-codes.js';
import { TrellisError, describeError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { AgentMetrics } from './agent-metrics.js';
import { bootstrapTrustDomain } from './bootstrap-trust-domain.js';
import type { AgentConfig } from './config.js';
import { holdIdentity, IdentityManager, type HeldIdentity } from './identity-manager.js';
import type { AgentStateDir } from './state-dir.js';

/** What the identity steps read of the agent's config (the zone ingress gives the same fields: ingress/ingress-run.ts). */
export type IdentityConfig = Pick<AgentConfig, 'controlUrl' | 'rootNamespace' | 'tokenFile' | 'caFile' | 'trustDomain' | 'namespace' | 'service'>;

/** How the agent reaches its control plane: with the identity it holds, or with `--ca-file` before it has one. */
export type EndpointFor = (held: HeldIdentity | undefined) => ControlEndpoint;

export function controlEndpointFor(config: IdentityConfig, caBundle: string | undefined): EndpointFor {
  return (held) => {
    const bundle = held?.trustBundlePem ?? caBundle;
    if (bundle === undefined) throw new TrellisError(CODE.AGENT_NO_TRUST, 'no trust bundle for the first contact with the control plane: give --ca-file', { side: 'input' });
    return { url: config.controlUrl, trustBundlePem: bundle, rootNamespace: config.rootNamespace, ...(held === undefined ? {} : { trustDomain: held.trustDomain }) };
  };
}

/** The bootstrap credential, re-read at every attempt (the kubelet rotates projected tokens). */
async function readToken(config: IdentityConfig): Promise<string | undefined> {
  if (config.tokenFile === undefined) return undefined;
  try {
    return (await fs.readFile(config.tokenFile, 'utf8')).trim();
  } catch (err) {
    // A typo in the path does not fix itself: fail the start (exit 2) instead of retrying forever.
    const code = (err as NodeJS.ErrnoException).code ?? describeError(err);
    throw new TrellisError(CODE.AGENT_TOKEN_FILE, `--token-file ${config.tokenFile}: ${code === 'ENOENT' ? 'no such file' : `cannot be read (${code})`}`, { side: 'input', cause: err });
  }
}

export interface IdentityDeps {
  readonly config: IdentityConfig;
  readonly caBundle: string | undefined;
  readonly endpointFor: EndpointFor;
  readonly stateDir: AgentStateDir | undefined;
  readonly metrics: Pick<AgentMetrics, 'renewals'>;
  readonly log: Logger;
  /** The renewed identity goes to the sidecar, once there is one. */
  readonly onRenewed: (next: HeldIdentity) => void;
}

export function createIdentityManager(deps: IdentityDeps): IdentityManager {
  const { config, caBundle, stateDir, metrics, log } = deps;
  return new IdentityManager({
    endpoint: deps.endpointFor,
    readToken: () => readToken(config),
    wantedId: (token) => {
      // A projected service-account token names no trust domain: it is then read from the mesh roots.
      const trustDomain = bootstrapTrustDomain({ configured: config.trustDomain, token, bundlePem: caBundle, bundleSource: config.caFile ?? '--ca-file' });
      return `spiffe://${trustDomain}/ns/${config.namespace}/sa/${config.service}`;
    },
    log,
    onRenewed: (next) => {
      metrics.renewals.inc({ result: 'ok' });
      deps.onRenewed(next);
      void stateDir?.saveIdentity(next).catch((err: unknown) => log.error({ err: describeError(err) }, 'cannot save the renewed certificate'));
    },
    onRenewalFailed: () => metrics.renewals.inc({ result: 'failed' }),
  });
}

/** OpenSSL's verify codes that a retry cannot fix: the server's chain does not lead to the given roots. */
const TLS_VERIFY_CODES = new Set(['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'UNABLE_TO_GET_ISSUER_CERT', 'CERT_SIGNATURE_FAILURE']);

function tlsVerifyFailure(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth += 1) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== undefined && TLS_VERIFY_CODES.has(code)) return code;
  }
  return undefined;
}

/** The saved identity if it is usable (adopted into `identity`); false when there is none or it is not. */
async function adoptSavedIdentity(identity: IdentityManager, stateDir: AgentStateDir | undefined, log: Logger): Promise<boolean> {
  const saved = await stateDir?.loadIdentity().catch((err: unknown) => {
    log.warn({ err: describeError(err) }, 'saved identity unreadable; bootstrapping again');
    return undefined;
  });
  if (saved === undefined) return false;
  try {
    return identity.adopt(holdIdentity(saved));
  } catch (err) {
    log.warn({ err: describeError(err) }, 'saved identity unusable; bootstrapping again');
    return false;
  }
}

/** The error that ends the start, or undefined when waiting and trying again may help. */
function fatalBootstrapError(err: unknown, config: IdentityConfig): TrellisError | undefined {
  // 429: too many refused attempts from this address (the control plane's limit); waiting helps.
  const refused = err instanceof ControlError && err.status >= 400 && err.status < 500 && err.status !== 429;
  if (refused) return new TrellisError(CODE.AGENT_BOOTSTRAP_REFUSED, `the control plane refused this workload's credential: ${describeError(err)}`, { side: 'input', cause: err });
  // Our own input (no --ca-file, an unreadable --token-file): nothing was sent, so say what it is.
  if (err instanceof TrellisError && err.side === 'input') return err;
  const untrusted = tlsVerifyFailure(err);
  if (untrusted !== undefined) {
    return new TrellisError(CODE.AGENT_CONTROL_UNTRUSTED, `the control plane's certificate does not verify against the roots in --ca-file ${config.caFile ?? '(none)'} (${untrusted}): give its trust bundle (<control data-dir>/trust-bundle.pem)`, { side: 'input', cause: err });
  }
  return undefined;
}

/** Holds an identity when it returns: the saved one, or a new one issued with the token (retried until `signal`). */
export async function obtainIdentity(identity: IdentityManager, deps: Pick<IdentityDeps, 'config' | 'stateDir' | 'log'>, signal: AbortSignal | undefined): Promise<{ held: HeldIdentity; fromDisk: boolean }> {
  const { config, stateDir, log } = deps;
  const fromDisk = await adoptSavedIdentity(identity, stateDir, log);
  const backoff = new Backoff({ initialMs: 500, maxMs: 15_000 });
  while (!fromDisk) {
    try {
      const held = await identity.issueWithToken();
      await stateDir?.saveIdentity(held);
      break;
    } catch (err) {
      const fatal = fatalBootstrapError(err, config);
      if (fatal !== undefined) throw fatal;
      const wait = backoff.next();
      log.warn({ err: describeError(err), retryInMs: wait }, 'cannot get a certificate yet; retrying');
      try {
        await sleep(wait, undefined, signal === undefined ? {} : { signal });
      } catch {
        throw new TrellisError(CODE.AGENT_START_ABORTED, 'stopped before the first certificate arrived', { side: 'internal' });
      }
    }
  }
  const held = identity.current as HeldIdentity;
  log.info({ spiffeId: held.spiffeId, notAfter: held.notAfter.toISOString(), fromDisk }, 'workload identity ready');
  return { held, fromDisk };
}
