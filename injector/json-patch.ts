/**
 * RFC 6902 JSON Patch operations, the only patch type admission webhooks may return, and RFC 6901
 * pointer escaping: `~` becomes `~0` and `/` becomes `~1`, so the annotation key `trellis.dev/status`
 * is addressed as `/metadata/annotations/trellis.dev~1status`.
 */

export type JsonPatchOperation =
  | { readonly op: 'add' | 'replace' | 'test'; readonly path: string; readonly value: unknown }
  | { readonly op: 'remove'; readonly path: string };

export function escapePointerSegment(segment: string): string {
  return segment.replace(/~/g, '~0').replace(/\//g, '~1');
}

export function pointer(...segments: readonly (string | number)[]): string {
  return segments.map((s) => `/${escapePointerSegment(String(s))}`).join('');
}
