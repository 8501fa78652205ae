// `ftwasm inspect <file>`: the entries of a log file as a table, then counts and bytes by kind.
import { closeSync, openSync, readFileSync, readSync, statSync } from 'node:fs';

import { entryKindName, EntryKind, readLogFile } from '../log/index.ts';
import type { LogEntry } from '../log/index.ts';
import { decodeSnapshot, SNAPSHOT_BYTES_MAX } from '../vm/index.ts';

/** The first 4 bytes of a file, as text ('FTWS' starts a snapshot). */
function magicOf(path: string): string {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(4);
    return b.subarray(0, readSync(fd, b, 0, 4, 0)).toString('latin1');
  } finally {
    closeSync(fd);
  }
}

/** A snapshot file (FILE.snapshot beside a restored backup's log): what it holds. */
function inspectSnapshot(path: string, out: (s: string) => void): void {
  const size = statSync(path).size;
  if (size > SNAPSHOT_BYTES_MAX) throw new Error(`snapshot ${path} of ${size} bytes exceeds SNAPSHOT_BYTES_MAX (${SNAPSHOT_BYTES_MAX})`);
  const s = decodeSnapshot(readFileSync(path));
  out(`snapshot ${path}: ${size} bytes, taken at a recv after log seq ${s.lastSeq} (the log goes on from ${s.lastSeq + 1}), icount ${s.icount}`);
  out(`memory ${s.memory.length} bytes (${s.memory.length / 65536} pages), saved stack ${s.stack.length} bytes, ${Object.keys(s.globals).length} globals, last clock_mono ${s.lastMono}`);
  for (const [name, value] of Object.entries(s.globals)) out(`  ${name} = ${typeof value === 'bigint' ? `${value} (i64)` : value}`);
}

export async function inspectCommand(path: string, opts: { limit: string }): Promise<void> {
  if (magicOf(path) === 'FTWS') return inspectSnapshot(path, (s) => void process.stdout.write(`${s}\n`));
  const contents = await readLogFile(path);
  const { header, entries, frames } = contents;
  const out = (s: string): void => void process.stdout.write(`${s}\n`);
  out(`log ${path}: format ${header.formatVersion}, flags 0x${header.flags.toString(16)}, ftwasm ${header.ftwasmVersion}, created ${new Date(header.createdAtMs).toISOString()}`);
  out(`module sha256 ${Buffer.from(header.moduleHash).toString('hex')}`);
  out(`${entries.length} entries in ${frames.length} frames, ${statSync(path).size} bytes; tail: ${contents.tail === 'clean' ? 'clean' : `torn at byte ${contents.tail.offset}`}`);
  const limit = Number(opts.limit);
  const shown = limit > 0 ? entries.slice(0, limit) : entries;
  out('');
  out(`${'seq'.padStart(8)}  ${'kind'.padEnd(10)}  ${'icount'.padStart(14)}  payload`);
  for (const e of shown) out(`${String(e.seq).padStart(8)}  ${entryKindName(e.kind).padEnd(10)}  ${String(e.icount).padStart(14)}  ${describe(e)}`);
  if (shown.length < entries.length) out(`… ${entries.length - shown.length} more (--limit 0 shows all)`);
  const byKind = new Map<number, { count: number; bytes: number }>();
  for (const e of entries) {
    const k = byKind.get(e.kind) ?? { count: 0, bytes: 0 };
    k.count++;
    k.bytes += payloadBytes(e);
    byKind.set(e.kind, k);
  }
  const frameBytes = frames.reduce((n, f) => n + f.bytes, 0);
  out('');
  out(`${'kind'.padEnd(10)}  ${'entries'.padStart(9)}  ${'payload bytes'.padStart(13)}`);
  for (const [kind, k] of [...byKind].sort((a, b) => a[0] - b[0])) out(`${entryKindName(kind).padEnd(10)}  ${String(k.count).padStart(9)}  ${String(k.bytes).padStart(13)}`);
  out(`frames: ${frames.length}, ${frameBytes} bytes, ${(frameBytes / Math.max(1, entries.length)).toFixed(1)} bytes per entry on average`);
}

function payloadBytes(e: LogEntry): number {
  const p = e.payload as unknown;
  if (p instanceof Uint8Array) return p.length;
  if (e.kind === EntryKind.SEND || e.kind === EntryKind.LOG) return (p as { length: number }).length;
  if (e.kind === EntryKind.INVOKE) return (p as { bytes: Uint8Array }).bytes.length;
  return 8;
}

function describe(e: LogEntry): string {
  const p = e.payload as unknown;
  if (p instanceof Uint8Array) {
    const hex = Buffer.from(p.subarray(0, 24)).toString('hex');
    return `${p.length} bytes ${hex}${p.length > 24 ? '…' : ''}`;
  }
  if (typeof p === 'bigint' || typeof p === 'number') return String(p);
  return JSON.stringify(p, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v instanceof Uint8Array ? `${v.length} bytes` : v));
}
