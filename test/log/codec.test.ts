import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  crc32c,
  crc32cUpdate,
  digest32,
  EntryKind,
  entryKindName,
  FrameReader,
  FrameWriter,
  LogEntryError,
  type LogEntry,
} from '../../host/log/index.ts';
import { arbLog, checkProperty, concat, drain, encodeFrames, I64_MAX, I64_MIN, U64_MAX } from './support.ts';

describe('entry kinds', () => {
  it('have the agreed numbers and names, both ways', () => {
    const expected = [
      'CLOCK_NOW', 'CLOCK_MONO', 'RANDOM', 'CPU_ID', 'RECV', 'SEND', 'LOG', 'INTERRUPT',
      'CHECKPOINT', 'INVOKE', 'SEED', 'ABORT', 'TRACE', 'DATE_NOW', 'END',
    ];
    expected.forEach((name, i) => {
      expect(EntryKind[name as keyof typeof EntryKind]).toBe(i + 1);
      expect(entryKindName(i + 1)).toBe(name);
    });
    expect(Object.keys(EntryKind)).toHaveLength(15);
    expect(entryKindName(0)).toBe('unknown(0)');
    expect(entryKindName(16)).toBe('unknown(16)');
    expect(entryKindName(1.5)).toBe('unknown(1.5)');
  });
});

/** Bit-at-a-time CRC-32C, the definition the table-driven one must match. */
function crcReference(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

describe('CRC-32C', () => {
  it('matches the published check value and the RFC 3720 (iSCSI) vectors', () => {
    expect(crc32c(new TextEncoder().encode('123456789'))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa);
    expect(crc32c(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43);
    expect(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i))).toBe(0x46dd794e);
    expect(crc32c(Uint8Array.from({ length: 32 }, (_, i) => 31 - i))).toBe(0x113fdb5c);
    expect(crc32c(new Uint8Array(0))).toBe(0);
  });

  it('equals the bit-at-a-time definition for any bytes and range, and chains', () => {
    checkProperty(
      'crc32c vs reference',
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.nat(), fc.nat(), (bytes, a, b) => {
        const start = bytes.length ? a % (bytes.length + 1) : 0;
        const end = start + (b % (bytes.length - start + 1));
        expect(crc32c(bytes, start, end)).toBe(crcReference(bytes.subarray(start, end)));
        const mid = start + ((end - start) >> 1);
        expect(crc32cUpdate(crc32c(bytes, start, mid), bytes, mid, end)).toBe(crc32c(bytes, start, end));
        expect(digest32(bytes)).toBe(crcReference(bytes));
      }),
      300,
    );
  });
});

/** Writes entries through a FrameWriter and reads them back through a FrameReader fed in chunks. */
function roundTrip(entries: LogEntry[], entriesMax: number, bytesMax: number, chunk: number): LogEntry[] {
  const frames = encodeFrames(entries, { entries_max: entriesMax, bytes_max: bytesMax });
  for (const f of frames) expect(f.length).toBeLessThanOrEqual(bytesMax);
  const stream = concat(frames);
  const reader = new FrameReader({ frame_bytes_max: bytesMax, next_seq: entries[0]!.seq });
  const out: LogEntry[] = [];
  for (let at = 0; at < stream.length; at += chunk) {
    reader.push(stream.subarray(at, at + chunk));
    for (const frame of drain(reader)) {
      expect(frame.count).toBeLessThanOrEqual(entriesMax);
      out.push(...frame.entries);
    }
  }
  expect(reader.finish()).toBe('clean');
  return out;
}

describe('entry codec', () => {
  it('round-trips random entries of every kind exactly (bigints, bytes, -0, NaN, strings)', () => {
    checkProperty(
      'entry round trip',
      fc.property(arbLog(80), fc.integer({ min: 1, max: 40 }), fc.integer({ min: 2048, max: 65536 }), fc.integer({ min: 1, max: 5000 }), (entries, entriesMax, bytesMax, chunk) => {
        const decoded = roundTrip(entries, entriesMax, bytesMax, chunk);
        expect(decoded).toEqual(entries);
        for (const e of decoded) {
          if (e.payload instanceof Uint8Array) expect(Object.getPrototypeOf(e.payload)).toBe(Uint8Array.prototype);
        }
      }),
      300,
    );
  });

  it('round-trips logs that start at any seq', () => {
    checkProperty(
      'first seq',
      fc.property(fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER - 100 }), (first) => {
        const entries = [
          { seq: first, kind: EntryKind.CPU_ID, icount: 5n, payload: 3 },
          { seq: first + 1, kind: EntryKind.END, icount: 9n, payload: 0 },
        ] as LogEntry[];
        expect(roundTrip(entries, 1, 4096, 7)).toEqual(entries);
      }),
    );
  });

  it('keeps clock values exact across i64 extremes, wrapping deltas and both clock kinds interleaved', () => {
    const values = [I64_MIN, I64_MAX, 0n, -1n, I64_MIN + 1n, 1n << 32n, -(1n << 32n), I64_MAX, I64_MIN, 1_700_000_000_000_000_000n, 5n];
    const entries: LogEntry[] = values.map((payload, i) => ({
      seq: i + 1,
      kind: i % 3 === 0 ? EntryKind.CLOCK_MONO : EntryKind.CLOCK_NOW,
      icount: BigInt(i) * (1n << 40n),
      payload,
    }));
    entries.push({ seq: entries.length + 1, kind: EntryKind.CLOCK_NOW, icount: U64_MAX, payload: I64_MAX });
    expect(roundTrip(entries, 100, 4096, 3)).toEqual(entries);
    // the same through the allocation-free path
    const frames: Uint8Array[] = [];
    const w = new FrameWriter({ on_frame: (f) => frames.push(f) });
    for (const e of entries) expect(w.appendClock(e.kind as 1 | 2, e.icount, e.payload as bigint)).toBe(e.seq);
    w.flush();
    expect(frames).toEqual(encodeFrames(entries));
  });

  it('writes each bin and int size class (fixint/8/16/32 bits, bin8/16/32) and reads it back', () => {
    const sizes = [0, 1, 255, 256, 65535, 65536, 70000];
    const ints = [0, 127, 128, 255, 256, 65535, 65536, 2 ** 31 - 1, -1, -32, -33, -128, -129, -32768, -32769, -(2 ** 31)];
    let seq = 0;
    const entries: LogEntry[] = [
      ...sizes.map((n) => ({ seq: ++seq, kind: EntryKind.RANDOM, icount: 0n, payload: Uint8Array.from({ length: n }, (_, i) => i & 0xff) }) as LogEntry),
      ...ints.map((payload) => ({ seq: ++seq, kind: EntryKind.CPU_ID, icount: 1n, payload }) as LogEntry),
      { seq: ++seq, kind: EntryKind.SEND, icount: 2n, payload: { session: 0xffffffff, digest: 0xffffffff, length: 0xffffffff } },
    ];
    expect(roundTrip(entries, 1000, 1 << 20, 4096)).toEqual(entries);
  });

  it('encodes a CLOCK_NOW entry with typical deltas in 8 bytes: [fixarray, kind, uint16, uint16]', () => {
    const frames = encodeFrames([
      { seq: 1, kind: EntryKind.CLOCK_NOW, icount: 1000n, payload: 1_700_000_000_000_000_000n },
      { seq: 2, kind: EntryKind.CLOCK_NOW, icount: 3000n, payload: 1_700_000_000_000_004_000n },
    ]);
    const body = frames[0]!.subarray(48);
    // first entry: delta 0, absolute value as uint64; second: deltas 2000 and 4000
    expect(Array.from(body.subarray(0, 3))).toEqual([0x93, 1, 0]);
    expect(body[3]).toBe(0xcf);
    expect(Array.from(body.subarray(12))).toEqual([0x93, 1, 0xcd, 0x07, 0xd0, 0xcd, 0x0f, 0xa0]);
  });
});

describe('entry validation', () => {
  const base = { seq: 1, icount: 10n };
  const bad: [string, unknown][] = [
    ['clock beyond i64', { ...base, kind: EntryKind.CLOCK_NOW, payload: I64_MAX + 1n }],
    ['clock as number', { ...base, kind: EntryKind.CLOCK_MONO, payload: 5 }],
    ['random not bytes', { ...base, kind: EntryKind.RANDOM, payload: [1, 2] }],
    ['cpu id beyond i32', { ...base, kind: EntryKind.CPU_ID, payload: 2 ** 31 }],
    ['recv code 1', { ...base, kind: EntryKind.RECV, payload: 1 }],
    ['send length mismatch', { ...base, kind: EntryKind.SEND, payload: { session: 1, digest: digest32(Uint8Array.of(1)), length: 2, bytes: Uint8Array.of(1) } }],
    ['send digest mismatch', { ...base, kind: EntryKind.SEND, payload: { session: 1, digest: 0, length: 1, bytes: Uint8Array.of(1) } }],
    ['send session negative', { ...base, kind: EntryKind.SEND, payload: { session: -1, digest: 0, length: 0 } }],
    ['log fraction', { ...base, kind: EntryKind.LOG, payload: { digest: 0.5, length: 0 } }],
    ['interrupt missing arg', { ...base, kind: EntryKind.INTERRUPT, payload: { event: 1 } }],
    ['invoke lone surrogate', { ...base, kind: EntryKind.INVOKE, payload: { handler: 'a\uD800', bytes: new Uint8Array(0) } }],
    ['seed bigint', { ...base, kind: EntryKind.SEED, payload: 1n }],
    ['abort line negative', { ...base, kind: EntryKind.ABORT, payload: { message: '', file: '', line: -1, column: 0 } }],
    ['trace 6 values', { ...base, kind: EntryKind.TRACE, payload: { message: '', values: [1, 2, 3, 4, 5, 6] } }],
    ['end string', { ...base, kind: EntryKind.END, payload: '0' }],
    ['unknown kind', { ...base, kind: 16, payload: 0 }],
    ['wrong seq', { ...base, seq: 2, kind: EntryKind.END, payload: 0 }],
    ['icount negative', { ...base, icount: -1n, kind: EntryKind.END, payload: 0 }],
    ['icount beyond u64', { ...base, icount: U64_MAX + 1n, kind: EntryKind.END, payload: 0 }],
    ['icount as number', { ...base, icount: 10, kind: EntryKind.END, payload: 0 }],
  ];
  for (const [name, entry] of bad) {
    it(`refuses ${name} with FTW_LOG_ENTRY naming the seq, and stays usable`, () => {
      const frames: Uint8Array[] = [];
      const w = new FrameWriter({ on_frame: (f) => frames.push(f) });
      let error: unknown;
      try {
        w.append(entry as LogEntry);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(LogEntryError);
      expect((error as LogEntryError).code).toBe('FTW_LOG_ENTRY');
      expect((error as LogEntryError).message).toMatch(/entry seq 1 /);
      expect(w.append({ seq: 1, kind: EntryKind.END, icount: 10n, payload: 0 })).toBe(1);
      w.flush();
      expect(frames).toHaveLength(1);
    });
  }

  it('refuses an icount below the previous entry, also across frames and through appendClock', () => {
    const w = new FrameWriter({ entries_max: 1, on_frame: () => {} });
    w.appendClock(EntryKind.CLOCK_NOW, 100n, 0n);
    expect(() => w.appendClock(EntryKind.CLOCK_NOW, 99n, 0n)).toThrow(/icount 99 is below the previous entry's 100/);
    expect(() => w.append({ seq: 2, kind: EntryKind.END, icount: 50n, payload: 0 })).toThrow(LogEntryError);
    expect(() => w.appendClock(EntryKind.RANDOM as never, 100n, 0n)).toThrow(/CLOCK_NOW or CLOCK_MONO/);
    expect(() => w.appendClock(EntryKind.CLOCK_NOW, 100n, I64_MIN - 1n)).toThrow(/not an i64/);
    expect(w.appendClock(EntryKind.CLOCK_MONO, 100n, -5n)).toBe(2);
  });
});
