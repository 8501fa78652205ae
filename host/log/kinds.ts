// Entry kinds and the payload each one carries. The numbers are part of the on-disk format: never reuse one.

/** Entry kinds by name; the numbers are written into every entry. */
export const EntryKind = {
  CLOCK_NOW: 1,
  CLOCK_MONO: 2,
  RANDOM: 3,
  CPU_ID: 4,
  RECV: 5,
  SEND: 6,
  LOG: 7,
  INTERRUPT: 8,
  CHECKPOINT: 9,
  INVOKE: 10,
  SEED: 11,
  ABORT: 12,
  TRACE: 13,
  DATE_NOW: 14,
  END: 15,
} as const;

export type EntryKindName = keyof typeof EntryKind;
export type EntryKind = (typeof EntryKind)[EntryKindName];

/** Highest kind number this build knows. */
export const ENTRY_KIND_MAX = 15;

const NAMES: readonly string[] = (() => {
  const names: string[] = [];
  for (const [name, kind] of Object.entries(EntryKind)) names[kind] = name;
  return names;
})();

/** The name of an entry kind (`CLOCK_NOW`), or `unknown(N)` for a number this build does not know. */
export function entryKindName(kind: number): string {
  return (Number.isInteger(kind) && NAMES[kind]) || `unknown(${String(kind)})`;
}

/** True when `kind` is a kind number this build knows. */
export function isEntryKind(kind: unknown): kind is EntryKind {
  return typeof kind === 'number' && Number.isInteger(kind) && kind >= 1 && kind <= ENTRY_KIND_MAX;
}

/** RECV result codes for "no message": `recv` returns them instead of a length. */
export const RECV_TIMEOUT = 0;
export const RECV_CLOSED = -1;
/** 0 (timeout), -1 (closed), or -(bytes needed) <= -4 when the guest's buffer was too small (docs/ABI.md). */
export type RecvCode = number;

/** At most this many numbers in a TRACE entry (AssemblyScript's `trace(message, n, a0..a4)`). */
export const TRACE_VALUES_MAX = 5;

/** RECV: the bytes written to the guest (4-byte LE session id + message), or a result code. */
export type RecvPayload = Uint8Array | RecvCode;

/** SEND: an output; the bytes themselves are optional, the digest and length are always kept. */
export interface SendPayload {
  /** Client session id (u32). */
  session: number;
  /** `digest32` (CRC-32C) of the bytes sent. */
  digest: number;
  /** Number of bytes sent (u32). */
  length: number;
  /** The bytes, when the writer chose to keep them; `length` and `digest` must match them. */
  bytes?: Uint8Array;
}

/** LOG: debug text printed by the primary; only its digest and length are kept. */
export interface LogOutputPayload {
  digest: number;
  length: number;
}

/** INTERRUPT: an asynchronous event delivered at a check point. */
export interface InterruptPayload {
  /** Event kind (i32). */
  event: number;
  /** Event argument (i32). */
  arg: number;
}

/** INVOKE: a reactor-style handler called by the host with an input. */
export interface InvokePayload {
  handler: string;
  bytes: Uint8Array;
}

/** ABORT: AssemblyScript `abort(message, fileName, line, column)`. */
export interface AbortPayload {
  message: string;
  file: string;
  /** u32 */
  line: number;
  /** u32 */
  column: number;
}

/** TRACE: AssemblyScript `trace(message, n, a0..a4)`, the first n numbers kept. */
export interface TracePayload {
  message: string;
  values: number[];
}

interface Entry<K extends EntryKind, P> {
  /** Position in the log, from 1 without gaps. */
  seq: number;
  kind: K;
  /** The guest's instruction count at the call (u64, non-decreasing along the log). */
  icount: bigint;
  payload: P;
}

/** CLOCK_NOW: ns since the Unix epoch (i64). */
export type ClockNowEntry = Entry<typeof EntryKind.CLOCK_NOW, bigint>;
/** CLOCK_MONO: monotonic ns (i64). */
export type ClockMonoEntry = Entry<typeof EntryKind.CLOCK_MONO, bigint>;
/** RANDOM: the bytes given to `random_fill`. */
export type RandomEntry = Entry<typeof EntryKind.RANDOM, Uint8Array>;
/** CPU_ID: the processor/host id (i32). */
export type CpuIdEntry = Entry<typeof EntryKind.CPU_ID, number>;
export type RecvEntry = Entry<typeof EntryKind.RECV, RecvPayload>;
export type SendEntry = Entry<typeof EntryKind.SEND, SendPayload>;
export type LogOutputEntry = Entry<typeof EntryKind.LOG, LogOutputPayload>;
export type InterruptEntry = Entry<typeof EntryKind.INTERRUPT, InterruptPayload>;
/** CHECKPOINT: a state hash (bytes). */
export type CheckpointEntry = Entry<typeof EntryKind.CHECKPOINT, Uint8Array>;
export type InvokeEntry = Entry<typeof EntryKind.INVOKE, InvokePayload>;
/** SEED: AssemblyScript `env.seed` (f64). */
export type SeedEntry = Entry<typeof EntryKind.SEED, number>;
export type AbortEntry = Entry<typeof EntryKind.ABORT, AbortPayload>;
export type TraceEntry = Entry<typeof EntryKind.TRACE, TracePayload>;
/** DATE_NOW: AssemblyScript `Date.now()` in ms (f64). */
export type DateNowEntry = Entry<typeof EntryKind.DATE_NOW, number>;
/** END: the guest exited with this code (i32). */
export type EndEntry = Entry<typeof EntryKind.END, number>;

/** One log entry; `kind` selects the payload's type. */
export type LogEntry =
  | ClockNowEntry
  | ClockMonoEntry
  | RandomEntry
  | CpuIdEntry
  | RecvEntry
  | SendEntry
  | LogOutputEntry
  | InterruptEntry
  | CheckpointEntry
  | InvokeEntry
  | SeedEntry
  | AbortEntry
  | TraceEntry
  | DateNowEntry
  | EndEntry;

/** The entry type of one kind. */
export type EntryOf<K extends EntryKind> = Extract<LogEntry, { kind: K }>;
/** The payload type of one kind. */
export type PayloadOf<K extends EntryKind> = EntryOf<K>['payload'];
