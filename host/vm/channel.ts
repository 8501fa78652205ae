// A bounded single-producer single-consumer message queue over a SharedArrayBuffer, so a guest running in
// a worker can block on input (Atomics.wait) while the main thread's event loop keeps running. Messages
// are byte strings framed by a u32 length; the ring never grows: a full ring refuses the write.

const HEAD = 0; // next byte the consumer reads (monotonic, wraps by modulo)
const TAIL = 1; // next byte the producer writes
const CLOSED = 2; // 1 once the producer closed the queue for good
/**
 * How long a reader spins on an empty ring before it sleeps in Atomics.wait (50 us). Requests that come in
 * bursts then stop costing a wake each (a notify on the writer's side, a futex wake on this one): the kv
 * guest replicated to a backup process, get90 with the client load in a process of its own, went from 34k
 * to 51k req/s (two runs each way; solo 83k and 73-80k). The price: an idle guest burns up to 50 us of CPU
 * per message before it sleeps.
 */
const SPIN_MS = 0.05;
const WAITING = 3; // 1 while the consumer is (about to be) blocked in Atomics.wait: only then does a write notify
const HEADER_INTS = 4;

export const RING_TIMEOUT = 0;
export const RING_CLOSED = -1;

/** The shared memory of a ring; pass it to the other thread and open it there with `new SharedRing(buffer)`. */
export function createRingBuffer(capacityBytes: number): SharedArrayBuffer {
  // A power of two, so that the u32 positions wrapping at 2^32 stay aligned with the buffer.
  if (!Number.isInteger(capacityBytes) || capacityBytes < 64 || capacityBytes > 1 << 30 || (capacityBytes & (capacityBytes - 1)) !== 0) {
    throw new RangeError(`ring capacity must be a power of two in [64, 2^30], got ${capacityBytes}`);
  }
  return new SharedArrayBuffer(HEADER_INTS * 4 + capacityBytes);
}

export class SharedRing {
  private readonly header: Int32Array;
  private readonly data: Uint8Array;
  readonly capacityBytes: number;

  constructor(readonly buffer: SharedArrayBuffer) {
    this.header = new Int32Array(buffer, 0, HEADER_INTS);
    this.data = new Uint8Array(buffer, HEADER_INTS * 4);
    this.capacityBytes = this.data.length;
  }

  /** Bytes in use, framing included. */
  usedBytes(): number {
    return (Atomics.load(this.header, TAIL) - Atomics.load(this.header, HEAD)) >>> 0;
  }

  /** Largest message that could ever fit. */
  get messageBytesMax(): number {
    return this.capacityBytes - 4;
  }

  /** Appends one message; false when the ring has no room for it now (the caller keeps it and retries). */
  write(message: Uint8Array): boolean {
    return this.append(message, -1);
  }

  /**
   * Appends one message made of a u32 (little-endian) and `payload`, without building it first (the input
   * ring's session id + request). False when the ring has no room for it now.
   */
  writeWithPrefix(prefix: number, payload: Uint8Array): boolean {
    return this.append(payload, prefix >>> 0);
  }

  private append(payload: Uint8Array, prefix: number): boolean {
    if (Atomics.load(this.header, CLOSED) === 1) throw new Error('write to a closed ring');
    const len = payload.length + (prefix >= 0 ? 4 : 0);
    if (len > this.messageBytesMax) {
      throw new RangeError(`message of ${len} bytes exceeds the ring's limit of ${this.messageBytesMax}`);
    }
    if (this.capacityBytes - this.usedBytes() < 4 + len) return false;
    let tail = Atomics.load(this.header, TAIL) >>> 0;
    tail = this.putU32(tail, len);
    if (prefix >= 0) tail = this.putU32(tail, prefix);
    tail = this.put(tail, payload);
    Atomics.store(this.header, TAIL, tail | 0);
    // Waking a thread costs a system call: only when the consumer said it is waiting, and once per wait (the
    // flag is taken back here, so the writes after this one in the same burst do not notify again). It sets
    // WAITING before its last look at TAIL, and Atomics are sequentially consistent: it sees this TAIL or we
    // see its flag.
    if (Atomics.compareExchange(this.header, WAITING, 1, 0) === 1) Atomics.notify(this.header, TAIL);
    return true;
  }

  /** No more messages will come; a blocked reader wakes and sees RING_CLOSED once the ring is drained. */
  close(): void {
    Atomics.store(this.header, CLOSED, 1);
    Atomics.notify(this.header, TAIL);
  }

  get closed(): boolean {
    return Atomics.load(this.header, CLOSED) === 1;
  }

  /**
   * Takes the next message, waiting up to `timeoutMs` (Infinity: no limit) with Atomics.wait. Returns the
   * message, RING_TIMEOUT or RING_CLOSED. Only the consumer thread may call it.
   */
  read(timeoutMs: number): Uint8Array | typeof RING_TIMEOUT | typeof RING_CLOSED {
    const deadline = timeoutMs === Infinity ? Infinity : Date.now() + Math.max(0, timeoutMs);
    for (;;) {
      const message = this.tryRead();
      if (message !== undefined) return message;
      if (Atomics.load(this.header, CLOSED) === 1 && this.usedBytes() === 0) return RING_CLOSED;
      const left = deadline - Date.now();
      if (left <= 0) return RING_TIMEOUT;
      const tail = Atomics.load(this.header, TAIL);
      if (tail !== Atomics.load(this.header, HEAD)) continue;
      this.block(tail, left);
    }
  }

  /**
   * Waits up to `timeoutMs` (Infinity: no limit) until a message is waiting; false on timeout, when closed and
   * empty, or when `stop` says so (checked each time the reader wakes: see wake()).
   */
  waitForMessage(timeoutMs: number, stop?: () => boolean): boolean {
    const deadline = timeoutMs === Infinity ? Infinity : Date.now() + Math.max(0, timeoutMs);
    for (;;) {
      if (this.usedBytes() > 0) return true;
      if (Atomics.load(this.header, CLOSED) === 1 || stop?.()) return false;
      const left = deadline - Date.now();
      if (left <= 0) return false;
      const tail = Atomics.load(this.header, TAIL);
      if (tail !== Atomics.load(this.header, HEAD)) continue;
      this.block(tail, left);
    }
  }

  /** Length of the next message without taking it, or undefined when the ring is empty. */
  peekLength(): number | undefined {
    if (this.usedBytes() === 0) return undefined;
    const head = Atomics.load(this.header, HEAD) >>> 0;
    const b = (i: number): number => this.data[(head + i) % this.capacityBytes]!;
    return (b(0) | (b(1) << 8) | (b(2) << 16) | (b(3) << 24)) >>> 0;
  }

  /** The next message, or undefined when none is waiting. Never blocks. */
  tryRead(): Uint8Array | undefined {
    const length = this.peekLength();
    if (length === undefined) return undefined;
    let head = ((Atomics.load(this.header, HEAD) >>> 0) + 4) >>> 0;
    const out = new Uint8Array(length);
    for (let i = 0; i < length; ) {
      const at = head % this.capacityBytes;
      const n = Math.min(length - i, this.capacityBytes - at);
      out.set(this.data.subarray(at, at + n), i);
      i += n;
      head = (head + n) >>> 0;
    }
    Atomics.store(this.header, HEAD, head | 0);
    return out;
  }

  /** Wakes a reader blocked in waitForMessage without writing anything (it looks at its `stop` again). */
  wake(): void {
    Atomics.notify(this.header, TAIL);
  }

  /** Consumer: waits until TAIL moves from `tail` (or `left` ms pass), telling writers to notify meanwhile. */
  private block(tail: number, left: number): void {
    // Spin a little first: under load the next message usually comes within microseconds, and sleeping
    // costs a system call on both sides (the writer's notify, this thread's wake).
    const spin = Math.min(left, SPIN_MS);
    if (spin > 0) {
      const until = performance.now() + spin;
      do {
        if (Atomics.load(this.header, TAIL) !== tail || Atomics.load(this.header, CLOSED) === 1) return;
      } while (performance.now() < until);
    }
    Atomics.store(this.header, WAITING, 1);
    // Atomics.wait returns at once if TAIL is no longer `tail`: a write between our look and here is not lost.
    Atomics.wait(this.header, TAIL, tail, left === Infinity ? undefined : left);
    Atomics.store(this.header, WAITING, 0);
  }

  private putU32(tail: number, value: number): number {
    const { data, capacityBytes } = this;
    let t = tail;
    for (let i = 0; i < 4; i++) {
      data[t % capacityBytes] = (value >>> (8 * i)) & 0xff;
      t = (t + 1) >>> 0;
    }
    return t;
  }

  private put(tail: number, bytes: Uint8Array): number {
    let t = tail;
    for (let i = 0; i < bytes.length; ) {
      const at = t % this.capacityBytes;
      const n = Math.min(bytes.length - i, this.capacityBytes - at);
      this.data.set(bytes.subarray(i, i + n), at);
      i += n;
      t = (t + n) >>> 0;
    }
    return t;
  }
}
