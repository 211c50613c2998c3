/**
 * The workload's identity over its lifetime: the first certificate (with the join token), then renewal
 * at about half-life with jitter (authenticated by the current certificate over mutual TLS, so an expired
 * token never strands a running workload), retries with backoff, and a warning well before the
 * certificate would expire. Every renewal makes a fresh ECDSA P-256 key in memory; the previous
 * certificate stays in use until the new one is handed over.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { CONTROL_PATHS, type IssueResponse } from '../api/control-protocol.js';
import { ControlError, controlRequest, type ControlEndpoint } from '../api/control-client.js';
import type { WorkloadIdentity } from '../api/data-plane.js';
import { createCsr, generateWorkloadKey } from '../ca/csr.js';
import { formatDuration } from '../common/duration.js';
import { TrellisError, describeError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { Backoff } from '../common/backoff.js';
import { CODE } from '../common/error-codes.js';

export interface HeldIdentity extends WorkloadIdentity {
  readonly spiffeId: string;
  readonly trustDomain: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /**
   * When this agent received it; rotation counts the lifetime from here, not from the back-dated
   * NotBefore (with short test lifetimes the back-dating minute would otherwise put half-life in the past).
   */
  readonly receivedAt: Date | undefined;
}

export interface IdentityManagerOptions {
  readonly endpoint: (identity: HeldIdentity | undefined) => ControlEndpoint;
  /** Reads the join token (the file may be replaced by the operator at any time). */
  readonly readToken: () => Promise<string | undefined>;
  /** The SPIFFE ID this workload asks for, given the bootstrap credential (the control plane refuses a mismatch). */
  readonly wantedId: (token: string) => string;
  readonly log: Logger;
  readonly onRenewed: (identity: HeldIdentity) => void;
  readonly onRenewalFailed?: (err: unknown) => void;
  /** Renew at this fraction of the lifetime, ± `renewJitter` (default 0.5 ± 0.1). */
  readonly renewAt?: number;
  readonly renewJitter?: number;
  /** Warn when less than this fraction of the lifetime is left and renewal has not succeeded (default 0.25). */
  readonly warnAt?: number;
  readonly random?: () => number;
  readonly now?: () => number;
  readonly retry?: { readonly initialMs: number; readonly maxMs: number };
  /** The transport (tests pass a fake; the default speaks HTTPS to the control plane). */
  readonly request?: typeof controlRequest;
}

/** Parses a certificate chain and key into the identity the agent holds; refuses a key that does not match. */
export function holdIdentity(identity: WorkloadIdentity, receivedAt?: Date): HeldIdentity {
  const leaf = new X509Certificate(identity.certChainPem);
  if (!leaf.checkPrivateKey(createPrivateKey(identity.keyPem))) {
    throw new TrellisError(CODE.AGENT_KEY_MISMATCH, 'the private key does not belong to the certificate', { side: 'internal' });
  }
  const uri = (leaf.subjectAltName ?? '').split(', ').find((s) => s.startsWith('URI:spiffe://'))?.slice(4);
  if (uri === undefined) throw new TrellisError(CODE.AGENT_NO_SPIFFE_ID, 'the certificate carries no SPIFFE ID', { side: 'upstream' });
  const trustDomain = uri.slice('spiffe://'.length).split('/')[0] as string;
  return Object.freeze({ certChainPem: identity.certChainPem, keyPem: identity.keyPem, trustBundlePem: identity.trustBundlePem, spiffeId: uri, trustDomain, notBefore: new Date(leaf.validFrom), notAfter: new Date(leaf.validTo), receivedAt });
}

export class IdentityManager {
  private held: HeldIdentity | undefined;
  private timer: NodeJS.Timeout | undefined;
  private warnTimer: NodeJS.Timeout | undefined;
  private readonly backoff: Backoff;
  private readonly now: () => number;
  private readonly random: () => number;
  private stopped = false;
  private readonly request: typeof controlRequest;
  /** Renewals that failed since the last success (for readiness and metrics). */
  failures = 0;
  lastError: string | undefined;

  constructor(private readonly options: IdentityManagerOptions) {
    this.now = options.now ?? Date.now;
    this.random = options.random ?? Math.random;
    this.request = options.request ?? controlRequest;
    this.backoff = new Backoff(options.retry ?? { initialMs: 1_000, maxMs: 60_000 }, this.random);
  }

  get current(): HeldIdentity | undefined {
    return this.held;
  }

  /** Adopts an identity loaded from disk, if it is still valid for a while. */
  adopt(identity: HeldIdentity): boolean {
    if (identity.notAfter.getTime() <= this.now()) return false;
    this.held = identity;
    return true;
  }

  /** First certificate from the join token. Throws ControlError: the caller decides whether to retry. */
  async issueWithToken(): Promise<HeldIdentity> {
    const token = await this.options.readToken();
    if (token === undefined) throw new TrellisError(CODE.AGENT_NO_TOKEN, 'no join token to bootstrap with (--token-file)', { side: 'input' });
    const key = await generateWorkloadKey();
    const wanted = this.options.wantedId(token);
    const csrPem = await createCsr(key, wanted);
    // The token goes only to a control plane of the trust domain this workload joins (a federated root in
    // the bundle does not make another mesh's control plane ours).
    const endpoint = this.options.endpoint(this.held);
    const trustDomain = endpoint.trustDomain ?? /^spiffe:\/\/([^/]+)\//.exec(wanted)?.[1];
    const issued = await this.request<IssueResponse>(trustDomain === undefined ? endpoint : { ...endpoint, trustDomain }, { method: 'POST', path: CONTROL_PATHS.issue, bearer: token, body: { csrPem } });
    return this.accept(issued, key.keyPem);
  }

  /** A new certificate for the same identity, authenticated by the current one. */
  async renew(): Promise<HeldIdentity> {
    const held = this.held;
    if (held === undefined || held.notAfter.getTime() <= this.now()) {
      // Nothing valid to authenticate with (the agent was off past its certificate's end): fall back to the token.
      return this.issueWithToken();
    }
    const key = await generateWorkloadKey();
    const csrPem = await createCsr(key, held.spiffeId);
    const issued = await this.request<IssueResponse>(this.options.endpoint(held), {
      method: 'POST',
      path: CONTROL_PATHS.renew,
      body: { csrPem },
      clientCert: { certChainPem: held.certChainPem, keyPem: held.keyPem },
    });
    return this.accept(issued, key.keyPem);
  }

  /** Starts the rotation schedule for the identity held now. */
  schedule(): void {
    if (this.stopped || this.held === undefined) return;
    clearTimeout(this.timer);
    clearTimeout(this.warnTimer);
    const { notBefore, notAfter, receivedAt } = this.held;
    const start = Math.max(notBefore.getTime(), receivedAt?.getTime() ?? 0);
    const lifetime = notAfter.getTime() - start;
    const at = this.options.renewAt ?? 0.5;
    const jitter = this.options.renewJitter ?? 0.1;
    const fraction = at + (this.random() * 2 - 1) * jitter;
    const due = start + lifetime * fraction;
    this.timer = setTimeout(() => void this.rotate(), Math.max(0, due - this.now()));
    this.timer.unref?.();
    const warnAt = notAfter.getTime() - lifetime * (this.options.warnAt ?? 0.25);
    this.warnTimer = setTimeout(() => this.warnIfNotRenewed(notAfter), Math.max(0, warnAt - this.now()));
    this.warnTimer.unref?.();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.warnTimer);
  }

  private async rotate(): Promise<void> {
    if (this.stopped) return;
    try {
      const next = await this.renew();
      this.failures = 0;
      this.lastError = undefined;
      this.backoff.reset();
      this.options.log.info({ spiffeId: next.spiffeId, notAfter: next.notAfter.toISOString() }, 'certificate renewed');
      this.options.onRenewed(next);
      this.schedule();
    } catch (err) {
      this.failures++;
      this.lastError = describeError(err);
      this.options.onRenewalFailed?.(err);
      const held = this.held;
      const left = held === undefined ? 0 : held.notAfter.getTime() - this.now();
      // Never wait past the end of the current certificate for the next attempt.
      const wait = Math.max(500, Math.min(this.backoff.next(), left > 0 ? left / 4 : 1_000));
      this.options.log.warn({ err: this.lastError, retryInMs: wait, expiresIn: formatDuration(left) }, 'certificate renewal failed; retrying');
      if (this.stopped) return;
      this.timer = setTimeout(() => void this.rotate(), wait);
      this.timer.unref?.();
    }
  }

  private warnIfNotRenewed(notAfter: Date): void {
    if (this.stopped || this.held === undefined || this.held.notAfter.getTime() !== notAfter.getTime()) return;
    this.options.log.warn({ spiffeId: this.held.spiffeId, notAfter: notAfter.toISOString(), expiresIn: formatDuration(notAfter.getTime() - this.now()), lastError: this.lastError }, 'workload certificate not yet renewed and expiring soon: check that the control plane is reachable');
  }

  private accept(issued: IssueResponse, keyPem: string): HeldIdentity {
    if (typeof issued?.certChainPem !== 'string' || typeof issued.trustBundlePem !== 'string') {
      throw new ControlError(502, CODE.CONTROL_BAD_RESPONSE, 'the control plane returned no certificate');
    }
    const next = holdIdentity({ certChainPem: issued.certChainPem, keyPem, trustBundlePem: issued.trustBundlePem }, new Date(this.now()));
    if (this.held !== undefined && next.spiffeId !== this.held.spiffeId) {
      throw new TrellisError(CODE.AGENT_IDENTITY_CHANGED, `the control plane issued ${next.spiffeId}, this agent is ${this.held.spiffeId}`, { side: 'upstream' });
    }
    this.held = next;
    return next;
  }
}
