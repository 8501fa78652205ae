// A snapshot of a running guest, taken at a `recv` (docs/SNAPSHOT.md): its memory and mutable globals as they
// were when it called recv, the call stack under that recv as Asyncify saved it, its icount and the seq of
// the last log entry before it. Restored into a fresh instance of the same prepared module, and followed by
// the log from lastSeq + 1, it passes through the same states as the guest it was taken from.
import { VmStateError } from './errors.ts';

export interface GuestSnapshot {
  /** The icount at the recv call (the icount its RECV entry, seq lastSeq + 1, carries). */
  icount: bigint;
  /** Seq of the last log entry before the snapshot; the log goes on from lastSeq + 1. */
  lastSeq: number;
  /** The whole of memory 0 at the recv call. */
  memory: Uint8Array;
  /** Every mutable global but the fuel, by export name: a number (i32, f32, f64) or a bigint (i64). */
  globals: Record<string, number | bigint>;
  /** Asyncify's saved stack: the locals and places of the functions under recv. */
  stack: Uint8Array;
  /** The tables as the state hash reads them: they cannot be carried, so a restore checks they are alike. */
  tables: string;
  /** The last clock_mono value the guest saw (-1: none), so a restored guest's clock never goes back. */
  lastMono: bigint;
}

/** Largest snapshot encoded or decoded: 4 GiB of memory cannot be sent whole, and no message may be unbounded. */
export const SNAPSHOT_BYTES_MAX = 1 << 30;
const MAGIC = 0x53575446; // 'FTWS' little-endian
const VERSION = 1;
const TEXT = new TextEncoder();
const UNTEXT = new TextDecoder('utf-8', { fatal: true });

/**
 * The snapshot as bytes, in parts (the memory is not copied): magic u32, version u32, icount u64, lastSeq
 * u64, lastMono i64, then four length-prefixed (u32) sections: globals, tables text, stack, memory. A global
 * is a u16 name length, the name, a type byte (0: f64 bits of a number, 1: i64) and 8 value bytes.
 */
export function encodeSnapshot(s: GuestSnapshot): Uint8Array[] {
  const globals: Buffer[] = [];
  for (const [name, value] of Object.entries(s.globals)) {
    const n = Buffer.from(name);
    const g = Buffer.alloc(2 + n.length + 9);
    g.writeUInt16LE(n.length, 0);
    n.copy(g, 2);
    if (typeof value === 'bigint') {
      g[2 + n.length] = 1;
      g.writeBigInt64LE(BigInt.asIntN(64, value), 3 + n.length);
    } else {
      g[2 + n.length] = 0;
      g.writeDoubleLE(value, 3 + n.length);
    }
    globals.push(g);
  }
  const g = Buffer.concat(globals);
  const tables = TEXT.encode(s.tables);
  const total = 32 + 16 + g.length + tables.length + s.stack.length + s.memory.length;
  if (total > SNAPSHOT_BYTES_MAX) throw new VmStateError(`snapshot of ${total} bytes exceeds SNAPSHOT_BYTES_MAX (${SNAPSHOT_BYTES_MAX})`);
  const head = Buffer.alloc(32);
  head.writeUInt32LE(MAGIC, 0);
  head.writeUInt32LE(VERSION, 4);
  head.writeBigUInt64LE(s.icount, 8);
  head.writeBigUInt64LE(BigInt(s.lastSeq), 16);
  head.writeBigInt64LE(s.lastMono, 24);
  const len = (n: number): Buffer => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n, 0);
    return b;
  };
  return [head, len(g.length), g, len(tables.length), tables, len(s.stack.length), s.stack, len(s.memory.length), s.memory];
}

/** Reads encodeSnapshot's bytes; a damaged or unknown snapshot is a VmStateError naming the byte offset. */
export function decodeSnapshot(bytes: Uint8Array): GuestSnapshot {
  if (bytes.length > SNAPSHOT_BYTES_MAX) throw new VmStateError(`snapshot of ${bytes.length} bytes exceeds SNAPSHOT_BYTES_MAX (${SNAPSHOT_BYTES_MAX})`);
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fail = (what: string, at: number): never => {
    throw new VmStateError(`snapshot: ${what} at byte ${at} of ${b.length}`);
  };
  if (b.length < 32) fail('truncated header', b.length);
  if (b.readUInt32LE(0) !== MAGIC) fail('bad magic', 0);
  if (b.readUInt32LE(4) !== VERSION) fail(`unknown version ${b.readUInt32LE(4)}`, 4);
  let at = 32;
  const section = (what: string): Uint8Array => {
    if (at + 4 > b.length) fail(`truncated ${what} length`, at);
    const n = b.readUInt32LE(at);
    if (at + 4 + n > b.length) fail(`${what} of ${n} bytes runs past the end`, at);
    const out = bytes.subarray(at + 4, at + 4 + n);
    at += 4 + n;
    return out;
  };
  const g = Buffer.from(section('globals'));
  const tables = UNTEXT.decode(section('tables'));
  const stack = section('stack');
  const memory = section('memory');
  if (at !== b.length) fail('trailing bytes', at);
  if (memory.length % 65536 !== 0) fail(`memory of ${memory.length} bytes is not whole pages`, at);
  const globals: Record<string, number | bigint> = {};
  for (let i = 0; i < g.length; ) {
    if (i + 2 > g.length) fail('truncated global', 36 + i);
    const n = g.readUInt16LE(i);
    if (i + 2 + n + 9 > g.length) fail('truncated global', 36 + i);
    const name = g.subarray(i + 2, i + 2 + n).toString();
    const type = g[i + 2 + n];
    if (type === 0) globals[name] = g.readDoubleLE(i + 3 + n);
    else if (type === 1) globals[name] = g.readBigInt64LE(i + 3 + n);
    else fail(`global ${name} of unknown type ${type}`, 36 + i);
    i += 2 + n + 9;
  }
  return {
    icount: b.readBigUInt64LE(8), lastSeq: Number(b.readBigUInt64LE(16)), lastMono: b.readBigInt64LE(24),
    globals, tables, stack, memory,
  };
}
