/**
 * Correlation ids for refusals, errors and access log lines: a random per-process prefix and a counter,
 * so making one costs no randomness or crypto per connection and two processes never collide in practice.
 */
import { randomBytes } from 'node:crypto';

const PREFIX = randomBytes(5).toString('hex');
let sequence = 0;

export function nextCorrelationId(): string {
  sequence = (sequence + 1) % Number.MAX_SAFE_INTEGER;
  return `${PREFIX}-${sequence.toString(36)}`;
}
