/**
 * Places for verified tunnel sessions: in total (`maxSessions`), per peer SPIFFE ID
 * (`maxSessionsPerIdentity`) and per source address (`maxSessionsPerAddress`). Checked once the peer's
 * certificate is verified, before any frame of the session is read, so one identity (even one the policy
 * denies every stream of) or one address cannot take every place and lock other callers out. An identity
 * whose session was ended for rapid reset is refused for `abusePenaltyMs`.
 */
export type SessionRefusal = 'sessions-full' | 'sessions-per-identity' | 'sessions-per-address' | 'identity-penalized';

export interface SessionAdmissionLimits {
  readonly maxSessions: number;
  readonly maxSessionsPerIdentity: number;
  readonly maxSessionsPerAddress: number;
  readonly abusePenaltyMs: number;
}

export type Admission = { readonly ok: true; readonly release: () => void } | { readonly ok: false; readonly reason: SessionRefusal };

export class SessionAdmission {
  private total = 0;
  private readonly perIdentity = new Map<string, number>();
  private readonly perAddress = new Map<string, number>();
  /** Identity → epoch ms until which its new sessions are refused; only identities that abused, each needs a valid certificate. */
  private readonly penalties = new Map<string, number>();

  constructor(private readonly limits: SessionAdmissionLimits) {}

  get size(): number {
    return this.total;
  }

  /** Takes a place for a session of `spiffeId` from `address`, or says which cap refuses it. */
  admit(spiffeId: string, address: string, now = Date.now()): Admission {
    const penalty = this.penalties.get(spiffeId);
    if (penalty !== undefined) {
      if (penalty > now) return { ok: false, reason: 'identity-penalized' };
      this.penalties.delete(spiffeId);
    }
    if (this.total >= this.limits.maxSessions) return { ok: false, reason: 'sessions-full' };
    if ((this.perIdentity.get(spiffeId) ?? 0) >= this.limits.maxSessionsPerIdentity) return { ok: false, reason: 'sessions-per-identity' };
    if ((this.perAddress.get(address) ?? 0) >= this.limits.maxSessionsPerAddress) return { ok: false, reason: 'sessions-per-address' };
    this.total += 1;
    increment(this.perIdentity, spiffeId, 1);
    increment(this.perAddress, address, 1);
    let released = false;
    return {
      ok: true,
      release: () => {
        if (released) return;
        released = true;
        this.total -= 1;
        increment(this.perIdentity, spiffeId, -1);
        increment(this.perAddress, address, -1);
      },
    };
  }

  /** Refuses new sessions of `spiffeId` for `abusePenaltyMs` from `now`. */
  penalize(spiffeId: string, now = Date.now()): void {
    if (this.limits.abusePenaltyMs > 0) this.penalties.set(spiffeId, now + this.limits.abusePenaltyMs);
  }
}

function increment(counts: Map<string, number>, key: string, by: number): void {
  const next = (counts.get(key) ?? 0) + by;
  if (next <= 0) counts.delete(key);
  else counts.set(key, next);
}
