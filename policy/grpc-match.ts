/**
 * gRPC conditions of a rule: `grpc: { services: [pkg.Service], methods: [pkg.Service/Method] }`.
 *
 * A gRPC call is an HTTP/2 `POST` to `/<package>.<Service>/<Method>`, and that path is what every gRPC
 * server routes on, so the condition is a condition on the request's normalised path (the one the app
 * receives): it matches a `POST` whose path has exactly two segments, the first naming a listed service,
 * or the two naming a listed method. Listing both services and methods matches either. Nothing is read
 * from the body or from `content-type`, which a caller controls and the app's router does not consult.
 * A request whose path is not of that form (or cannot be normalised) never matches an allow rule with
 * gRPC conditions and always matches a deny rule with them, as for `http` conditions.
 */
import type { ConfigNode } from '../common/config-node.js';

export interface GrpcConditions {
  /** Fully qualified service names (`pkg.sub.Service`, or `Service` without a package); absent: none. */
  readonly services?: readonly string[];
  /** `pkg.Service/Method`; absent: none. */
  readonly methods?: readonly string[];
}

export const GRPC_LIMITS = Object.freeze({ services: 256, methods: 256, nameLength: 256 });

const IDENT = '[A-Za-z_][A-Za-z0-9_]*';
const SERVICE_NAME = new RegExp(`^${IDENT}(?:\\.${IDENT})*$`);
const METHOD_NAME = new RegExp(`^(${IDENT}(?:\\.${IDENT})*)/(${IDENT})$`);

export function grpcServiceProblem(text: string): string | undefined {
  if (text.length > GRPC_LIMITS.nameLength) return `at most ${GRPC_LIMITS.nameLength} characters`;
  if (SERVICE_NAME.test(text)) return undefined;
  if (text.includes('/')) return `expected a service name such as "shop.v1.Orders" (a method goes under "methods"), got ${JSON.stringify(text)}`;
  return `expected a fully qualified gRPC service name such as "shop.v1.Orders", got ${JSON.stringify(text)}`;
}

export function grpcMethodProblem(text: string): string | undefined {
  if (text.length > GRPC_LIMITS.nameLength) return `at most ${GRPC_LIMITS.nameLength} characters`;
  if (METHOD_NAME.test(text)) return undefined;
  const hint = text.startsWith('/') ? ' (without the leading "/")' : '';
  return `expected "package.Service/Method" such as "shop.v1.Orders/Get"${hint}, got ${JSON.stringify(text)}`;
}

/** Validates a rule's `grpc` field; reports problems at their place and returns undefined when any. */
export function validateGrpc(node: ConfigNode): GrpcConditions | undefined {
  const grpc = node.object({ optional: ['services', 'methods'] });
  if (grpc === undefined) return undefined;
  const servicesNode = grpc.field('services');
  const methodsNode = grpc.field('methods');
  if (servicesNode === undefined && methodsNode === undefined) {
    return node.report('expected "services", "methods" or both (leave "grpc" out to match any request)');
  }
  const services = names(servicesNode, GRPC_LIMITS.services, grpcServiceProblem);
  const methods = names(methodsNode, GRPC_LIMITS.methods, grpcMethodProblem);
  if (services === null || methods === null) return undefined;
  return Object.freeze({
    ...(services === undefined ? {} : { services }),
    ...(methods === undefined ? {} : { methods }),
  });
}

/** undefined: the field is absent; null: it had problems (reported). */
function names(node: ConfigNode | undefined, max: number, problemOf: (text: string) => string | undefined): readonly string[] | undefined | null {
  if (node === undefined) return undefined;
  let ok = true;
  const out: string[] = [];
  for (const item of node.list({ minItems: 1, maxItems: max }) ?? []) {
    const text = item.string();
    const problem = text === undefined ? 'expected a string' : problemOf(text);
    if (text === undefined) ok = false;
    else if (problem !== undefined) {
      item.report(problem);
      ok = false;
    } else out.push(text);
  }
  if (!ok || out.length === 0) return null;
  return Object.freeze(out);
}

/** The gRPC method a request path names (`pkg.Service/Method`), or undefined when it names none. */
export function grpcMethodOfPath(path: string): string | undefined {
  if (path.charCodeAt(0) !== 0x2f) return undefined;
  const rest = path.slice(1);
  return METHOD_NAME.test(rest) ? rest : undefined;
}

export class GrpcMatcher {
  private readonly services: ReadonlySet<string>;
  private readonly methods: ReadonlySet<string>;

  constructor(conditions: GrpcConditions) {
    this.services = new Set(conditions.services ?? []);
    this.methods = new Set(conditions.methods ?? []);
    Object.freeze(this);
  }

  /** `path` is already normalised (policy/http-match.ts). */
  matches(method: string, path: string): boolean {
    if (method !== 'POST') return false;
    const slash = path.indexOf('/', 1);
    if (slash < 0 || path.indexOf('/', slash + 1) >= 0 || slash === path.length - 1) return false;
    if (this.services.size > 0 && this.services.has(path.slice(1, slash))) return true;
    return this.methods.size > 0 && this.methods.has(path.slice(1));
  }
}
