/**
 * A Gateway's listeners judged one by one, as the Gateway API asks: a listener that cannot be served is
 * left out with its reason in `status.listeners[]` and the others are served.
 *
 * - `Accepted` False: a protocol other than HTTP/HTTPS (`UnsupportedProtocol`), TLS other than
 *   Terminate (`UnsupportedValue`), a port an earlier listener holds (`PortUnavailable`: this gateway
 *   binds one listener per port).
 * - `ResolvedRefs` False: a certificateRef that is not a Secret, missing, not `kubernetes.io/tls`, or
 *   whose key does not match its certificate (`InvalidCertificateRef`); one into another namespace
 *   without a ReferenceGrant (`RefNotPermitted`); `allowedRoutes.kinds` naming a kind not served
 *   (`InvalidRouteKinds`). A listener with a bad certificateRef is not served (no fallback certificate).
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { GATEWAY_API_GROUP, Problems, isObj, list, meta, str, translateListener, type Obj } from '../gateway-api.js';
import type { Snapshot } from './cluster-view.js';
import { condition, type ConditionDraft } from './conditions.js';
import { referenceAllowed } from './references.js';

export type RouteKind = 'HTTPRoute' | 'GRPCRoute';
const SERVED_KINDS: readonly RouteKind[] = ['HTTPRoute', 'GRPCRoute'];

export interface SecretPem {
  readonly cert: string;
  readonly key: string;
}

export interface ListenerPlan {
  readonly spec: Obj;
  readonly name: string;
  readonly port: number;
  readonly hostname: string | undefined;
  readonly kinds: readonly RouteKind[];
  /** The gateway's listener (its config value) when served; undefined when left out. */
  readonly served: Obj | undefined;
  /** Accepted and ResolvedRefs (Programmed is added once the config is applied). */
  readonly conditions: readonly ConditionDraft[];
  /** Secrets to write (key `<namespace>/<name>`). */
  readonly secrets: ReadonlyMap<string, SecretPem>;
}

function decode(v: unknown): string | undefined {
  return typeof v === 'string' ? Buffer.from(v, 'base64').toString('utf8') : undefined;
}

/** The Secret's certificate and key, or why it cannot serve. */
function readSecret(secret: Obj | undefined): SecretPem | string {
  if (secret === undefined) return 'not found (or not of type kubernetes.io/tls)';
  const data = isObj(secret.data) ? secret.data : {};
  const cert = decode(data['tls.crt']);
  const key = decode(data['tls.key']);
  if (cert === undefined || key === undefined) return 'has no tls.crt and tls.key';
  try {
    if (!new X509Certificate(cert).checkPrivateKey(createPrivateKey(key))) return 'tls.key does not match tls.crt';
  } catch (err) {
    return `cannot be read as a PEM certificate and key (${(err as Error).message})`;
  }
  return { cert, key };
}

function routeKinds(l: Obj, problems: string[]): RouteKind[] {
  const asked = isObj(l.allowedRoutes) ? list(l.allowedRoutes.kinds) : [];
  if (asked.length === 0) return [...SERVED_KINDS];
  const out: RouteKind[] = [];
  for (const k of asked) {
    const kind = str(k.kind) ?? '';
    if ((str(k.group) ?? GATEWAY_API_GROUP) === GATEWAY_API_GROUP && (SERVED_KINDS as readonly string[]).includes(kind)) out.push(kind as RouteKind);
    else problems.push(`route kind ${str(k.group) ?? GATEWAY_API_GROUP}/${kind} is not served (HTTPRoute, GRPCRoute)`);
  }
  return out;
}

function certificates(gw: Obj, l: Obj, snapshot: Snapshot): { secrets: Map<string, SecretPem>; reason?: string; message?: string } {
  const { namespace } = meta(gw);
  const secrets = new Map<string, SecretPem>();
  for (const ref of list(isObj(l.tls) ? l.tls.certificateRefs : undefined)) {
    const ns = str(ref.namespace) ?? namespace;
    const name = str(ref.name) ?? '';
    if ((str(ref.group) ?? '') !== '' || (str(ref.kind) ?? 'Secret') !== 'Secret') return { secrets, reason: 'InvalidCertificateRef', message: `certificateRef ${str(ref.group) ?? ''}/${str(ref.kind) ?? ''} ${name}: only core Secrets are served` };
    if (!referenceAllowed(snapshot.referencegrants.values(), { group: GATEWAY_API_GROUP, kind: 'Gateway', namespace }, { group: '', kind: 'Secret', namespace: ns, name })) {
      return { secrets, reason: 'RefNotPermitted', message: `certificateRef Secret ${ns}/${name}: no ReferenceGrant in ${ns} lets Gateways of ${namespace} use it` };
    }
    const pem = readSecret(snapshot.secrets.get(`${ns}/${name}`));
    if (typeof pem === 'string') return { secrets, reason: 'InvalidCertificateRef', message: `certificateRef Secret ${ns}/${name} ${pem}` };
    secrets.set(`${ns}/${name}`, pem);
  }
  return { secrets };
}

/** Every listener of `gw`, judged in order (a port is held by the first listener served on it). */
export function planListeners(gw: Obj, snapshot: Snapshot, certDir: string, listenAddress: string): ListenerPlan[] {
  const ports = new Set<number>();
  return list(isObj(gw.spec) ? gw.spec.listeners : undefined).map((l, i) => {
    const name = str(l.name) ?? `listener-${i}`;
    const port = typeof l.port === 'number' ? l.port : 0;
    const kindProblems: string[] = [];
    const kinds = routeKinds(l, kindProblems);
    const base = { spec: l, name, port, hostname: str(l.hostname), kinds };
    const p = new Problems();
    const translated = translateListener(gw, l, i, certDir, p);
    const out = (served: Obj | undefined, conditions: ConditionDraft[], secrets = new Map<string, SecretPem>()): ListenerPlan => ({ ...base, served, conditions, secrets });
    const refsOk = condition('ResolvedRefs', true, 'ResolvedRefs', 'every reference resolved');
    if (translated === undefined) {
      const unsupportedProtocol = str(l.protocol) !== 'HTTP' && str(l.protocol) !== 'HTTPS';
      return out(undefined, [condition('Accepted', false, unsupportedProtocol ? 'UnsupportedProtocol' : 'UnsupportedValue', p.items.join('; ')), refsOk]);
    }
    if (ports.has(port)) return out(undefined, [condition('Accepted', false, 'PortUnavailable', `port ${port} is held by an earlier listener: this gateway serves one listener per port`), refsOk]);
    const certs = str(l.protocol) === 'HTTPS' ? certificates(gw, l, snapshot) : { secrets: new Map<string, SecretPem>() };
    if (certs.reason !== undefined) return out(undefined, [condition('Accepted', true, 'Accepted', 'listener accepted'), condition('ResolvedRefs', false, certs.reason, certs.message ?? '')]);
    ports.add(port);
    const refs = kindProblems.length > 0 ? condition('ResolvedRefs', false, 'InvalidRouteKinds', kindProblems.join('; ')) : refsOk;
    return out({ ...translated, address: listenAddress }, [condition('Accepted', true, 'Accepted', 'listener accepted'), refs], certs.secrets);
  });
}
