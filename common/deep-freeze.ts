/**
 * Freezes a plain config value and everything in it, so a config validated once at the edge cannot be
 * changed afterwards. URLs are left as they are: their state lives in internal slots that freezing does
 * not reach, and their setters are how they are used.
 */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value) && !(value instanceof URL)) {
    for (const v of Object.values(value as object)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
