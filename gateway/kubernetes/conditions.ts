/**
 * Status conditions as the Gateway API writes them (metav1.Condition): the plan builds drafts
 * (type, status, reason, message); the writer stamps `observedGeneration` and `lastTransitionTime`,
 * keeping the time of a condition whose status did not change, so an unchanged status compares equal
 * and is never written again.
 */
import { isObj, list, str, type Obj } from '../gateway-api.js';

export interface ConditionDraft {
  readonly type: string;
  readonly status: 'True' | 'False' | 'Unknown';
  readonly reason: string;
  readonly message: string;
}

/** The API refuses a condition message over 32768 characters; long problem lists are cut with a note. */
const MAX_MESSAGE = 32_000;

export function condition(type: string, ok: boolean, reason: string, message: string): ConditionDraft {
  const text = message.length > MAX_MESSAGE ? `${message.slice(0, MAX_MESSAGE)} … (cut)` : message;
  return { type, status: ok ? 'True' : 'False', reason, message: text };
}

/** Drafts as conditions of an object at `generation`, times kept from `previous` where the status held. */
export function stampConditions(drafts: readonly ConditionDraft[], generation: number, previous: unknown, now: string): Obj[] {
  const before = new Map(list(previous).map((c) => [str(c.type), c]));
  return drafts.map((d) => {
    const old = before.get(d.type);
    const keep = old !== undefined && str(old.status) === d.status && typeof old.lastTransitionTime === 'string';
    return { type: d.type, status: d.status, reason: d.reason, message: d.message, observedGeneration: generation, lastTransitionTime: keep ? old.lastTransitionTime : now };
  });
}

/** Deep equality of two status values as JSON (key order ignored), for "write only when it changed". */
export function sameStatus(a: unknown, b: unknown): boolean {
  return canonical(a) === canonical(b);
}

function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (isObj(v)) return `{${Object.keys(v).filter((k) => v[k] !== undefined).sort().map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(',')}}`;
  return JSON.stringify(v) ?? 'null';
}
