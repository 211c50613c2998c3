/**
 * The inbound sidecar's kept-alive HTTP/1.1 connections to its local app, one pool per app port.
 *
 * A pool is a node:http Agent with keep-alive and LIFO scheduling (the most recently used socket is the
 * one least likely to have been closed by the app's own keep-alive timer), a bound on sockets, a bound on
 * requests waiting for a socket, and an idle timeout for free sockets. Node's agent also honours the
 * app's `Keep-Alive: timeout=N` hint, closing a free socket just before the app would.
 */
import { Agent } from 'node:http';
import type { AppPort } from '../../../api/data-plane.js';
import { HTTP_FAILURES, HttpFailure } from '../../http/errors.js';
import { APP_POOL_DEFAULTS } from '../../core/limits.js';
import { withOverrides } from '../../../common/limit-schema.js';

export interface AppPoolLimits {
  /** Concurrent connections to one app port; more requests wait for a free one. */
  readonly maxSocketsPerPort: number;
  /** Idle connections kept open per app port. */
  readonly maxIdleSocketsPerPort: number;
  /** An idle kept-alive connection is closed after this. */
  readonly idleTimeoutMs: number;
  /** Requests waiting for a connection, per app port, beyond which new ones get 503 at once. */
  readonly maxPendingPerPort: number;
  /** Connecting to the app must succeed within this. */
  readonly connectTimeoutMs: number;
  /** A request whose app connection is silent for this long (no response bytes) fails with 504. */
  readonly requestIdleTimeoutMs: number;
  /** Largest response head accepted from the app. */
  readonly maxHeaderBytes: number;
}

export const DEFAULT_APP_POOL_LIMITS: AppPoolLimits = APP_POOL_DEFAULTS;

export class AppHttpPool {
  readonly agent: Agent;
  readonly appPort: AppPort;
  readonly limits: AppPoolLimits;
  /** Requests holding or waiting for a connection. */
  private inFlight = 0;

  constructor(appPort: AppPort, limits: AppPoolLimits) {
    this.appPort = appPort;
    this.limits = limits;
    this.agent = new Agent({
      keepAlive: true,
      scheduling: 'lifo',
      maxSockets: limits.maxSocketsPerPort,
      maxFreeSockets: limits.maxIdleSocketsPerPort,
      timeout: limits.idleTimeoutMs,
    });
  }

  /** Reserves a place for one request; throws the 503 failure when too many already wait. */
  acquire(): void {
    if (this.inFlight >= this.limits.maxSocketsPerPort + this.limits.maxPendingPerPort) {
      throw new HttpFailure(HTTP_FAILURES.appOverloaded, `${this.inFlight} requests in flight to port ${this.appPort.port}`);
    }
    this.inFlight += 1;
  }

  release(): void {
    if (this.inFlight > 0) this.inFlight -= 1;
  }

  get pending(): number {
    return this.inFlight;
  }

  close(): void {
    this.agent.destroy();
  }
}

/** The pools of one sidecar, by app port; created once, shared by every tunnel session. */
export class AppHttpPools {
  readonly limits: AppPoolLimits;
  private readonly pools = new Map<string, AppHttpPool>();

  constructor(limits: Partial<AppPoolLimits> = {}) {
    this.limits = withOverrides(DEFAULT_APP_POOL_LIMITS, limits);
  }

  for(appPort: AppPort): AppHttpPool {
    const key = `${appPort.host}:${appPort.port}`;
    let pool = this.pools.get(key);
    if (pool === undefined) {
      pool = new AppHttpPool(appPort, this.limits);
      this.pools.set(key, pool);
    }
    return pool;
  }

  /** Closes every app connection (in-flight requests fail); for shutdown. */
  close(): void {
    for (const pool of this.pools.values()) pool.close();
    this.pools.clear();
  }
}
