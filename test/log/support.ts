// Arbitraries and helpers shared by the log tests.
import fc from 'fast-check';
import {
  crc32c,
  crc32cUpdate,
  digest32,
  EntryKind,
  FrameReader,
  FrameWriter,
  type DecodedFrame,
  type FrameWriterOptions,
  type LogEntry,
} from '../../host/log/index.ts';

export const U64_MAX = (1n << 64n) - 1n;
export const I64_MIN = -(1n << 63n);
export const I64_MAX = (1n << 63n) - 1n;

/** Seed for fast-check: FTWASM_SEED when given, random otherwise; always printed. */
export function propertySeed(name: string): number {
  const seed = process.env.FTWASM_SEED ? Number(process.env.FTWASM_SEED) : (Math.random() * 2 ** 31) | 0;
  console.log(`[fast-check] ${name}: seed ${seed} (rerun with FTWASM_SEED=${seed})`);
  return seed;
}

/** Runs a property with a printed seed. */
export function checkProperty<Ts extends [unknown, ...unknown[]]>(name: string, property: fc.IProperty<Ts>, numRuns = 100): void {
  fc.assert(property, { seed: propertySeed(name), numRuns, verbose: 1 });
}

const i32 = fc.integer({ min: -0x80000000, max: 0x7fffffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const bytes = (maxLength = 300) => fc.uint8Array({ maxLength });
const text = fc.string({ unit: 'binary', maxLength: 40 });
const clock = fc.oneof(fc.bigInt({ min: I64_MIN, max: I64_MAX }), fc.constantFrom(I64_MIN, I64_MAX, 0n, -1n, 1n << 32n));

type Draft = Pick<LogEntry, 'kind' | 'payload'>;

/** A kind and a valid payload for it; every kind is drawn. */
export const arbDraft: fc.Arbitrary<Draft> = fc.oneof(
  clock.map((payload) => ({ kind: EntryKind.CLOCK_NOW, payload })),
  clock.map((payload) => ({ kind: EntryKind.CLOCK_MONO, payload })),
  bytes().map((payload) => ({ kind: EntryKind.RANDOM, payload })),
  i32.map((payload) => ({ kind: EntryKind.CPU_ID, payload })),
  fc
    .oneof(bytes(), fc.constant(0 as const), fc.constant(-1 as const))
    .map((payload) => ({ kind: EntryKind.RECV, payload })),
  fc.oneof(
    fc.record({ session: u32, digest: u32, length: u32 }),
    fc.tuple(u32, bytes()).map(([session, b]) => ({ session, digest: digest32(b), length: b.length, bytes: b })),
  ).map((payload) => ({ kind: EntryKind.SEND, payload })),
  fc.record({ digest: u32, length: u32 }).map((payload) => ({ kind: EntryKind.LOG, payload })),
  fc.record({ event: i32, arg: i32 }).map((payload) => ({ kind: EntryKind.INTERRUPT, payload })),
  bytes(64).map((payload) => ({ kind: EntryKind.CHECKPOINT, payload })),
  fc.record({ handler: text, bytes: bytes() }).map((payload) => ({ kind: EntryKind.INVOKE, payload })),
  fc.double().map((payload) => ({ kind: EntryKind.SEED, payload })),
  fc.record({ message: text, file: text, line: u32, column: u32 }).map((payload) => ({ kind: EntryKind.ABORT, payload })),
  fc
    .record({ message: text, values: fc.array(fc.double(), { maxLength: 5 }) })
    .map((payload) => ({ kind: EntryKind.TRACE, payload })),
  fc.double().map((payload) => ({ kind: EntryKind.DATE_NOW, payload })),
  i32.map((payload) => ({ kind: EntryKind.END, payload })),
) as fc.Arbitrary<Draft>;

/** icount steps: often 0 or small, sometimes across 2^32 or huge. */
const arbStep = fc.oneof(
  { weight: 3, arbitrary: fc.bigInt({ min: 0n, max: 300n }) },
  { weight: 2, arbitrary: fc.bigInt({ min: 0n, max: 1n << 34n }) },
  { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: U64_MAX }) },
);

/** A valid log: seqs from `firstSeq`, icounts non-decreasing within u64. */
export function arbLog(maxLength = 60, firstSeq = 1): fc.Arbitrary<LogEntry[]> {
  return fc
    .tuple(fc.bigInt({ min: 0n, max: U64_MAX }), fc.array(fc.tuple(arbDraft, arbStep), { minLength: 1, maxLength }))
    .map(([start, drafts]) => {
      let icount = start / 2n;
      return drafts.map(([draft, step], i) => {
        icount = icount + step > U64_MAX ? U64_MAX : icount + step;
        return { seq: firstSeq + i, kind: draft.kind, icount, payload: draft.payload } as LogEntry;
      });
    });
}

/** Encodes entries into frames. */
export function encodeFrames(entries: readonly LogEntry[], options: Partial<FrameWriterOptions> = {}): Uint8Array[] {
  const frames: Uint8Array[] = [];
  const writer = new FrameWriter({ next_seq: entries[0]?.seq ?? 1, ...options, on_frame: (f) => frames.push(f) });
  for (const entry of entries) writer.append(entry);
  writer.flush();
  return frames;
}

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Every whole frame a reader returns after the pushes so far. */
export function drain(reader: FrameReader): DecodedFrame[] {
  const out: DecodedFrame[] = [];
  for (;;) {
    const next = reader.next();
    if (next === 'incomplete') return out;
    out.push(next);
  }
}

/**
 * A frame with its header edited and/or its body replaced, both CRCs fixed: lets a test reach the checks
 * that sit behind the CRCs.
 */
export function forgeFrame(frame: Uint8Array, edit: (view: DataView) => void = () => {}, body?: Uint8Array): Uint8Array {
  const out = body === undefined ? frame.slice() : concat([frame.subarray(0, 48), body]);
  const view = new DataView(out.buffer);
  if (body !== undefined) view.setUint32(4, body.length, true);
  edit(view);
  view.setUint32(40, crc32c(out, 0, 40), true);
  view.setUint32(44, crc32cUpdate(crc32c(out, 0, 44), out, 48, out.length), true);
  return out;
}

/** A small log with every kind (19 entries), used for golden files and damage tests. */
export function sampleEntries(): LogEntry[] {
  const hello = new TextEncoder().encode('hello');
  const drafts: Omit<LogEntry, 'seq' | 'icount'>[] = [
    { kind: EntryKind.SEED, payload: 0.25 },
    { kind: EntryKind.CLOCK_NOW, payload: 1_700_000_000_000_000_000n },
    { kind: EntryKind.CLOCK_MONO, payload: 42_000n },
    { kind: EntryKind.RANDOM, payload: Uint8Array.of(9, 8, 7, 6) },
    { kind: EntryKind.CPU_ID, payload: 3 },
    { kind: EntryKind.RECV, payload: Uint8Array.of(1, 0, 0, 0, 104, 105) },
    { kind: EntryKind.RECV, payload: 0 },
    { kind: EntryKind.SEND, payload: { session: 1, digest: digest32(hello), length: 5, bytes: hello } },
    { kind: EntryKind.SEND, payload: { session: 1, digest: digest32(hello), length: 5 } },
    { kind: EntryKind.LOG, payload: { digest: 77, length: 12 } },
    { kind: EntryKind.INTERRUPT, payload: { event: 2, arg: -7 } },
    { kind: EntryKind.CHECKPOINT, payload: new Uint8Array(32).fill(0xab) },
    { kind: EntryKind.INVOKE, payload: { handler: 'on_message', bytes: Uint8Array.of(1, 2) } },
    { kind: EntryKind.DATE_NOW, payload: 1_700_000_000_123.5 },
    { kind: EntryKind.TRACE, payload: { message: 'tick', values: [1, -0] } },
    { kind: EntryKind.CLOCK_NOW, payload: 1_700_000_000_000_050_000n },
    { kind: EntryKind.ABORT, payload: { message: 'boom', file: 'kv.ts', line: 10, column: 4 } },
    { kind: EntryKind.RECV, payload: -1 },
    { kind: EntryKind.END, payload: 0 },
  ];
  return drafts.map((d, i) => ({ ...d, seq: i + 1, icount: BigInt(100 + i * 1234) }) as LogEntry);
}

