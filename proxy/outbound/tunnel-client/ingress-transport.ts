/**
 * The caller's side of a zone ingress (proxy/ingress/): the way to an endpoint of another zone.
 *
 * Nested design. Per ingress address the sidecar keeps one pooled mTLS HTTP/2 session, authenticating as
 * itself (its own workload certificate); the ingress must present the ingress identity of the trust
 * domain the destination endpoint names (`.../sa/trellis-ingress`; ours unless the endpoint says
 * `trustDomain`). Toward a zone of another trust domain (its own PKI, federated) the outer session is
 * verified against that trust domain's roots alone, and names ours in its server name
 * (`t<label>.ingress.trellis`, api/sni.ts) so the ingress verifies us against our roots alone. Each tunnel session to a remote service is one CONNECT stream on it,
 * `:authority` naming the destination as on a tunnel (`<service>.<namespace>:<port>`); inside that stream
 * the tunnel client (session-dial.ts) runs its usual TLS 1.3 + HTTP/2 session with the destination sidecar,
 * so the destination authorizes the caller's own SPIFFE ID and the ingress sees only ciphertext. The inner
 * sessions are pooled like any tunnel session, so a request costs no handshake at all, and the outer one
 * only a stream per inner session.
 *
 * An ingress that refuses answers the CONNECT with a status and a typed `trellis-reason`
 * (`no-healthy-endpoint`, `unknown-service`, `zone-not-admitted`, `identity-refused`, ...): it is logged,
 * counted (`trellis_ingress_refusals_total{zone,reason}`) and handed to the dial as its error, so the
 * balancer takes that (zone, service) endpoint out and the caller fails over.
 */
import { connect as h2connect, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { INGRESS_SERVICE } from '../../../api/zone-ingress.js';
import { ingressSni } from '../../../api/sni.js';
import type { SecureContext } from 'node:tls';
import { TrellisError } from '../../../common/errors.js';
import { CODE } from '../../../common/error-codes.js';
import type { ProxyLimits } from '../../core/limits.js';
import { checkPeer } from '../../core/peer-identity.js';
import type { TlsMaterial } from '../../core/tls-material.js';
import { REASON_HEADER, TUNNEL_ALPN } from '../../core/tunnel-protocol.js';


export interface IngressTransportHost {
  readonly limits: ProxyLimits;
  readonly trustDomain: string;
  readonly log: Logger;
  material(): TlsMaterial;
  generation(): number;
  /** Counts a refusal (or an unreachable ingress, reason `unreachable`) of a zone's ingress. */
  refused(zone: string, reason: string): void;
}

interface OuterSession {
  readonly session: ClientHttp2Session;
  readonly generation: number;
  verified: boolean;
}

/** Why an ingress refused: the reason it named, or what went wrong on the way. */
/**
 * A PING on each outer session this often, and one unanswered this long ends it: an ingress gone silent (a
 * cut link) must not keep swallowing new inner sessions; the next one opens a fresh outer session, and the
 * zone's endpoints are refused meanwhile, so calls fail over. A silent cut is found within interval +
 * timeout (3.5 s), inside the 5 s a zone's traffic must move in, whatever the global's zone lease (30 s
 * by default). The cost is one 8-byte frame a second per ingress a sidecar talks to; 2.5 s leaves room
 * for a loaded ingress's event loop before a healthy session is cut.
 */
export const OUTER_PING_INTERVAL_MS = 1_000;
export const OUTER_PING_TIMEOUT_MS = 2_500;

export class IngressRefusal extends TrellisError {
  constructor(
    readonly ingress: string,
    readonly reason: string,
    detail: string,
  ) {
    super(CODE.TUNNEL_INGRESS_REFUSED, `zone ingress ${ingress} refused the stream (${reason}): ${detail}`, { side: 'upstream', retryable: true });
  }
}

export class IngressTransport {
  /** One outer session per ingress `host:port` and trust domain, replaced when it closes or our identity changes. */
  private readonly outer = new Map<string, OuterSession>();
  private closed = false;

  constructor(private readonly host: IngressTransportHost) {}

  /**
   * A CONNECT stream through the ingress at `address:port` to `authority`, as a duplex the inner TLS runs on.
   * It can be written at once (bytes wait for the session); a refusal destroys it with an `IngressRefusal`.
   */
  open(zone: string, address: string, port: number, authority: string, trustDomain: string = this.host.trustDomain): ClientHttp2Stream {
    if (this.closed) throw new TrellisError(CODE.TUNNEL_POOL_CLOSED, 'the tunnel pool is shutting down', { side: 'internal' });
    const ingress = `${address}:${port}`;
    const outer = this.session(zone, address, port, trustDomain);
    const stream = outer.session.request({ ':method': 'CONNECT', ':authority': authority }, { endStream: false });
    stream.once('response', (headers) => {
      const status = Number(headers[':status']);
      if (status === 200) return;
      const reason = String(headers[REASON_HEADER] ?? `status-${status}`).slice(0, 40);
      this.host.refused(zone, reason);
      this.host.log.warn({ zone, ingress, destination: authority, reason, status }, 'zone ingress refused the stream');
      stream.destroy(new IngressRefusal(ingress, reason, `status ${status} for ${authority}`));
    });
    return stream;
  }

  /** Ends every outer session at once (the inner sessions on them are the pool's, ended before this). */
  close(): void {
    this.closed = true;
    for (const o of this.outer.values()) o.session.destroy();
    this.outer.clear();
  }

  /** One keepalive PING on an outer session; no answer in time ends it (and the next open dials anew). */
  private ping(zone: string, key: string, outer: OuterSession): void {
    const session = outer.session;
    if (session.closed || session.destroyed) return;
    const timer = setTimeout(() => {
      if (this.outer.get(key) === outer) this.outer.delete(key);
      this.host.refused(zone, 'ping-timeout');
      session.destroy(new IngressRefusal(key, 'ping-timeout', `no PING answer within ${OUTER_PING_TIMEOUT_MS} ms`));
    }, OUTER_PING_TIMEOUT_MS);
    timer.unref();
    try {
      session.ping(() => clearTimeout(timer));
    } catch {
      clearTimeout(timer);
    }
  }

  private session(zone: string, address: string, port: number, trustDomain: string): OuterSession {
    const ingressAddress = `${address}:${port}`;
    const key = trustDomain === this.host.trustDomain ? ingressAddress : `${ingressAddress}|${trustDomain}`;
    const existing = this.outer.get(key);
    if (existing !== undefined && !existing.session.closed && !existing.session.destroyed && existing.generation === this.host.generation()) return existing;
    if (existing !== undefined && !existing.session.closed) existing.session.close();
    const limits = this.host.limits;
    const material = this.host.material();
    // The ingress's roots: its trust domain's alone; and ours named to it when they differ.
    const context = trustDomain === this.host.trustDomain ? material.clientContext : material.federation.clientContext(trustDomain);
    const servername = ingressSni(trustDomain === this.host.trustDomain ? undefined : material.federation.ownLabel);
    let socket: TLSSocket | undefined;
    const session = h2connect(`https://${ingressAddress}`, {
      createConnection: () => (socket = outerTls(address, port, context ?? material.clientContext, servername)),
      settings: { enablePush: false, initialWindowSize: limits.streamWindowBytes, maxHeaderListSize: limits.maxHeaderListSize },
      maxSessionMemory: limits.maxSessionMemoryMb,
    });
    const outer: OuterSession = { session, generation: this.host.generation(), verified: false };
    this.outer.set(key, outer);
    let pinger: NodeJS.Timeout | undefined;
    const timer = setTimeout(() => fail('unreachable', `no session within ${limits.tunnelConnectTimeoutMs} ms`), limits.tunnelConnectTimeoutMs);
    timer.unref();
    const fail = (reason: string, detail: string): void => {
      clearTimeout(timer);
      if (this.outer.get(key) === outer) this.outer.delete(key);
      this.host.refused(zone, reason);
      this.host.log.warn({ zone, ingress: key, reason }, `zone ingress session failed: ${detail}`);
      session.destroy(new IngressRefusal(key, reason, detail));
    };
    if (context === undefined) {
      // Not a trust domain we federate with: nothing of it can be verified (fails at once, counted).
      queueMicrotask(() => fail('trust-domain-not-federated', `${ingressAddress} serves trust domain ${trustDomain}, which this sidecar does not federate with`));
    }
    session.once('connect', () => {
      clearTimeout(timer);
      const check = socket === undefined ? undefined : checkPeer(socket, trustDomain);
      if (check === undefined || !check.ok) return fail('untrusted-ingress', check?.message ?? 'no TLS socket');
      // Only an ingress identity may carry our inner sessions: a workload answering on that address is refused.
      if (check.peer.service !== INGRESS_SERVICE) return fail('untrusted-ingress', `${key} presented ${check.peer.spiffeId}, not a zone ingress`);
      outer.verified = true;
      try {
        session.setLocalWindowSize(limits.sessionWindowBytes);
      } catch {
        // Closed meanwhile.
      }
      pinger = setInterval(() => this.ping(zone, key, outer), OUTER_PING_INTERVAL_MS);
      pinger.unref();
    });
    session.on('error', (err: Error) => {
      if (!outer.verified && !(err instanceof IngressRefusal)) fail('unreachable', err.message);
    });
    session.on('goaway', () => {
      if (this.outer.get(key) === outer) this.outer.delete(key);
    });
    session.once('close', () => {
      clearTimeout(timer);
      if (pinger !== undefined) clearInterval(pinger);
      if (this.outer.get(key) === outer) this.outer.delete(key);
    });
    // The outer session lives as long as inner sessions use it; it never holds the process open by itself.
    session.unref();
    return outer;
  }
}

function outerTls(host: string, port: number, context: SecureContext, servername: string): TLSSocket {
  const socket = tlsConnect({
    host,
    port,
    servername,
    secureContext: context,
    ALPNProtocols: [TUNNEL_ALPN],
    minVersion: 'TLSv1.3',
    // The ingress's identity is a SPIFFE URI: node:tls checks the chain, checkPeer the ID.
    checkServerIdentity: () => undefined,
  });
  socket.setNoDelay(true);
  return socket;
}
