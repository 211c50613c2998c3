/**
 * The contract between the two halves of the outbound HTTP fast path: the app connection
 * (app-connection.ts: the app socket, its phases, timers, held bytes and hand-over) and the request in
 * flight on it (lane-exchange.ts: the lane, the endpoint, the response, the accounting). The exchange
 * learns what it needs of the connection through `ExchangeOwner`; both read `FastPathDeps`.
 */
import type { BodyFramerLimits } from '../../http1/body.js';
import type { Http1HeadLimits } from '../../http1/types.js';
import type { OutboundHttpDeps } from './deps.js';
import type { LanePool } from './lane-pool.js';

export interface FastPathDeps {
  readonly http: OutboundHttpDeps;
  readonly lanes: LanePool;
  readonly headLimits: Http1HeadLimits;
  readonly bodyLimits: BodyFramerLimits;
}

/** What an exchange needs from the app connection that owns it. */
export interface ExchangeOwner {
  /** The app connection is closed (or handed over): a lane found now has no request to carry. */
  readonly closed: boolean;
  /** Neither the app (its FIN) nor shutdown asked to close: another request may follow this one. */
  readonly keepsAlive: boolean;
  /** Request body bytes read while no lane was found yet, handed over once when the lane comes. */
  takeHeldBody(): Buffer | undefined;
  /** The request body is complete; `rest` is what followed it in the same read (a pipelined request). */
  requestEnded(rest: Buffer | undefined): void;
  /** The lane took what it was given: read more of the body from the app (bound once: a 'drain' listener). */
  readonly resumeApp: () => void;
  /** The exchange ended and the app has its answer: read the next request, or close when not `keepAlive`. */
  exchangeEnded(keepAlive: boolean): void;
  /** The exchange was cut: destroy the app connection, with a TCP reset when `reset`. */
  cut(reset: boolean): void;
}
