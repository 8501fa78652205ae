// Typed wrappers over the ftwasm guest ABI (import module `ft`). docs/ABI.md is the contract; this file
// only adds types, buffer management and UTF-8. Every wrapper makes exactly the import calls its doc
// names, so a guest's sequence of imports (which the log records) is easy to predict from its source.

import { utf8Decode, utf8Encode } from "./utf8";

// ---- raw imports -------------------------------------------------------------------------------------

// @ts-ignore: decorator
@external("ft", "clock_now")
declare function ft_clock_now(): i64;

// @ts-ignore: decorator
@external("ft", "clock_mono")
declare function ft_clock_mono(): i64;

// @ts-ignore: decorator
@external("ft", "random_fill")
declare function ft_random_fill(ptr: usize, len: i32): void;

// @ts-ignore: decorator
@external("ft", "cpu_id")
declare function ft_cpu_id(): i32;

// @ts-ignore: decorator
@external("ft", "recv")
declare function ft_recv(ptr: usize, cap: i32, timeout_ms: i32): i32;

// @ts-ignore: decorator
@external("ft", "send")
declare function ft_send(session: u32, ptr: usize, len: i32): void;

// @ts-ignore: decorator
@external("ft", "log")
declare function ft_log(ptr: usize, len: i32): void;

// ---- constants shared with the host (docs/ABI.md) ----------------------------------------------------

/** `timeout_ms` that makes `recv` wait until a message arrives or input closes. */
export const WAIT_FOREVER: i32 = -1;
/** `recv` result: no message within the timeout. */
export const RECV_TIMEOUT: i32 = 0;
/** `recv` result: input is closed for good; every later call returns it again. */
export const RECV_CLOSED: i32 = -1;
/** Bytes `recv` writes before the payload: the session id, u32 little-endian. */
export const RECV_HEADER_BYTES: i32 = 4;
/** Most bytes one `random_fill` call may ask for; the host traps above it. */
export const RANDOM_FILL_BYTES_MAX: i32 = 65536;
/** `ft_interrupt` kind: timer tick, arg = tick number (strictly increasing, not necessarily consecutive). */
export const INTERRUPT_TIMER: i32 = 1;
/** `ft_interrupt` kind: input ready (a message is queued or input closed), arg = 0. */
export const INTERRUPT_INPUT: i32 = 2;

// ---- SDK limits --------------------------------------------------------------------------------------

/** The receive buffer starts this big (header included) and grows to fit larger messages. */
const RECV_BUFFER_BYTES_INITIAL: i32 = 4096 + RECV_HEADER_BYTES;
/** Largest message (header included) the SDK will grow its buffer for; beyond it the guest aborts. */
export const RECV_BUFFER_BYTES_MAX: i32 = (16 << 20) + RECV_HEADER_BYTES;

// ---- clocks, randomness, cpu ---------------------------------------------------------------------------

/** Wall-clock time in ns since the Unix epoch (one `clock_now` call). May jump, e.g. across a failover. */
export function clockNow(): i64 {
  return ft_clock_now();
}

/** Monotonic time in ns (one `clock_mono` call); never decreases during the guest's life. */
export function clockMono(): i64 {
  return ft_clock_mono();
}

/** Fills `bytes` with random bytes (one `random_fill` call per RANDOM_FILL_BYTES_MAX bytes). */
export function randomFill(bytes: Uint8Array): void {
  const base = bytes.dataStart;
  const length = bytes.byteLength;
  for (let done = 0; done < length; done += RANDOM_FILL_BYTES_MAX) {
    ft_random_fill(base + <usize>done, min(length - done, RANDOM_FILL_BYTES_MAX));
  }
}

/** `n` fresh random bytes (see randomFill). */
export function randomBytes(n: i32): Uint8Array {
  assert(n >= 0, "ft.randomBytes: negative length");
  const bytes = new Uint8Array(n);
  randomFill(bytes);
  return bytes;
}

// Scratch space for the fixed-size random helpers, so they never allocate.
const randomScratch: usize = memory.data(8, 8);

/** A random u32 (one `random_fill` call of 4 bytes); allocates nothing. */
export function randomU32(): u32 {
  ft_random_fill(randomScratch, 4);
  return load<u32>(randomScratch);
}

/** A random u64 (one `random_fill` call of 8 bytes); allocates nothing. */
export function randomU64(): u64 {
  ft_random_fill(randomScratch, 8);
  return load<u64>(randomScratch);
}

/** The id of the processor/host running the guest (one `cpu_id` call); changes after a failover. */
export function cpuId(): i32 {
  return ft_cpu_id();
}

// ---- messages ----------------------------------------------------------------------------------------

/** One message from a client session. */
export class Message {
  constructor(
    /** The client session it came from; pass it to `send` to answer. */
    public session: u32,
    /** The message bytes (a copy the guest owns). */
    public payload: Uint8Array,
  ) {}

  /** The payload decoded as UTF-8 (malformed bytes give unspecified text; check with utf8Valid). */
  text(): string {
    return utf8Decode(this.payload);
  }
}

// Unmanaged (not GC-tracked) buffer that recv writes into; grown on demand, never shrunk.
let recvBuffer: usize = 0;
let recvBufferBytes: i32 = 0;
let closedSeen: bool = false;

function growRecvBuffer(bytes: i32): void {
  if (bytes > RECV_BUFFER_BYTES_MAX) {
    abort("ft.recv: message larger than RECV_BUFFER_BYTES_MAX");
  }
  if (recvBuffer != 0) heap.free(recvBuffer);
  recvBuffer = heap.alloc(<usize>bytes);
  recvBufferBytes = bytes;
}

/**
 * Waits up to `timeoutMs` (0 = poll, WAIT_FOREVER = no limit) for the next message. Returns null on
 * timeout or when input is closed; `inputClosed()` tells the two apart. A message too big for the
 * buffer is not lost: the host keeps it queued and says how much room it needs, the SDK grows the buffer
 * to that and calls `recv` again (so one message may take two `recv` calls).
 */
export function recv(timeoutMs: i32 = WAIT_FOREVER): Message | null {
  if (recvBuffer == 0) growRecvBuffer(RECV_BUFFER_BYTES_INITIAL);
  let result = ft_recv(recvBuffer, recvBufferBytes, timeoutMs);
  // Each round needs more room than the last, and growRecvBuffer aborts past the maximum: this ends.
  while (result <= -RECV_HEADER_BYTES) {
    const needed = -result;
    if (needed <= recvBufferBytes) abort("ft.recv: host asked for room it already had");
    growRecvBuffer(needed);
    result = ft_recv(recvBuffer, recvBufferBytes, timeoutMs);
  }
  if (result == RECV_TIMEOUT) return null;
  if (result == RECV_CLOSED) {
    closedSeen = true;
    return null;
  }
  if (result < RECV_HEADER_BYTES || result > recvBufferBytes) {
    abort("ft.recv: host returned an invalid length");
  }
  const session = load<u32>(recvBuffer);
  const payloadBytes = result - RECV_HEADER_BYTES;
  const payload = new Uint8Array(payloadBytes);
  memory.copy(payload.dataStart, recvBuffer + <usize>RECV_HEADER_BYTES, <usize>payloadBytes);
  return new Message(session, payload);
}

/** True once a `recv` call has reported that input is closed for good. */
export function inputClosed(): bool {
  return closedSeen;
}

/** Sends `data` (a string, sent as UTF-8, or a Uint8Array) to a client session (one `send` call). */
export function send<T>(session: u32, data: T): void {
  if (isString<T>()) {
    const bytes = utf8Encode(changetype<string>(data));
    ft_send(session, bytes.dataStart, bytes.byteLength);
  } else if (data instanceof Uint8Array) {
    const bytes = changetype<Uint8Array>(data);
    ft_send(session, bytes.dataStart, bytes.byteLength);
  } else {
    ERROR("ft.send: data must be a string or a Uint8Array");
  }
}

/** Debug text, printed by the primary only (one `log` call). */
export function log(text: string): void {
  const bytes = utf8Encode(text);
  ft_log(bytes.dataStart, bytes.byteLength);
}
