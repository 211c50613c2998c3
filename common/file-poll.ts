/**
 * Polls a set of files and hands over what they hold once they changed and read back valid. Polling (not
 * inotify) because rotation tools and Kubernetes Secret volumes replace files by rename or symlink swap,
 * which an inotify watch on the old inode misses. A read that fails (a half-rotated pair: new certificate,
 * old key) is reported and the previous value stays in force until the next change reads clean.
 */
import { unwatchFile, watchFile } from 'node:fs';

export interface FilePollOptions<T> {
  readonly paths: readonly string[];
  /** Reads and validates all the files; throws when they do not form a usable whole. */
  readonly read: () => Promise<T>;
  /** Equal fingerprints: nothing changed (a touch, or a rewrite with the same content). */
  readonly fingerprint: (value: T) => string;
  readonly onChange: (value: T) => void;
  readonly onError: (err: unknown) => void;
  readonly intervalMs?: number;
}

/** Starts polling; returns the function that stops it. */
export function pollFiles<T>(options: FilePollOptions<T>): () => void {
  const intervalMs = options.intervalMs ?? 1_000;
  let timer: NodeJS.Timeout | undefined;
  let last: string | undefined;
  const reload = (): void => {
    timer = undefined;
    options.read().then(
      (value) => {
        const fingerprint = options.fingerprint(value);
        if (fingerprint === last) return;
        last = fingerprint;
        options.onChange(value);
      },
      options.onError,
    );
  };
  const listener = (): void => {
    if (timer !== undefined) clearTimeout(timer);
    // Let a rotation that writes several files finish before reading them.
    timer = setTimeout(reload, Math.min(250, intervalMs));
  };
  for (const p of options.paths) watchFile(p, { interval: intervalMs, persistent: false }, listener);
  options.read().then((value) => (last ??= options.fingerprint(value)), () => undefined);
  return () => {
    if (timer !== undefined) clearTimeout(timer);
    for (const p of options.paths) unwatchFile(p, listener);
  };
}
