// In-memory log ends for vm tests: a sink that keeps entries, a source that serves them.
import { EntryKind } from '../../host/log/index.ts';
import type { LogEntry } from '../../host/log/index.ts';
import type { EntrySink, World } from '../../host/vm/core.ts';

export class MemorySink implements EntrySink {
  readonly entries: LogEntry[] = [];
  /** `firstSeq`: where the log goes on (a replay that went live continues its log). */
  constructor(private readonly firstSeq = 1) {}
  private get next(): number {
    return this.firstSeq + this.entries.length;
  }
  append(entry: LogEntry): number {
    if (entry.seq !== this.next) throw new Error(`seq ${entry.seq} out of order`);
    this.entries.push(entry);
    return entry.seq;
  }
  appendClock(kind: typeof EntryKind.CLOCK_NOW | typeof EntryKind.CLOCK_MONO, icount: bigint | number, ns: bigint): number {
    return this.append({ seq: this.next, kind, icount: BigInt(icount), payload: ns } as LogEntry);
  }
  appendRandom(icount: bigint | number, bytes: Uint8Array): number {
    return this.append({ seq: this.next, kind: EntryKind.RANDOM, icount: BigInt(icount), payload: bytes.slice() });
  }
}

/** A deterministic stand-in for the world, driven by a seed and a script of messages and interrupts. */
export class ScriptedWorld implements World {
  private clock = 1_700_000_000_000_000_000n;
  private mono = 1_000n;
  private rng: number;
  private checkIns = 0;
  constructor(
    seed: number,
    private readonly messages: Uint8Array[] = [],
    /** Check-in numbers (calls of pendingInterrupt that find the queue empty) at which an interrupt is raised. */
    private readonly interruptAt: ReadonlySet<number> = new Set(),
  ) {
    this.rng = seed >>> 0 || 1;
  }
  private next(): number {
    this.rng ^= this.rng << 13;
    this.rng ^= this.rng >>> 17;
    this.rng ^= this.rng << 5;
    return this.rng >>> 0;
  }
  clockNow(): bigint {
    this.clock += BigInt(1 + (this.next() % 5000));
    return this.clock;
  }
  clockMono(): bigint {
    this.mono += BigInt(1 + (this.next() % 5000));
    return this.mono;
  }
  randomFill(target: Uint8Array): void {
    for (let i = 0; i < target.length; i++) target[i] = this.next() & 0xff;
  }
  cpuId(): number {
    return 7;
  }
  recv(cap: number): Uint8Array | number {
    const m = this.messages[0];
    if (m === undefined) return -1;
    if (m.length > cap) return -m.length;
    this.messages.shift();
    return m;
  }
  private raised = false;
  pendingInterrupt(): { event: number; arg: number } | undefined {
    if (this.raised) {
      this.raised = false;
      return undefined;
    }
    const n = this.checkIns++;
    if (!this.interruptAt.has(n)) return undefined;
    this.raised = true;
    return { event: 1, arg: n };
  }
  seed(): number {
    return this.next() / 2 ** 32;
  }
  dateNow(): number {
    return Number(this.clock / 1_000_000n);
  }
}

/** A message as recv delivers it: 4-byte LE session id, then the payload. */
export function message(session: number, text: string): Uint8Array {
  const payload = new TextEncoder().encode(text);
  const out = new Uint8Array(4 + payload.length);
  new DataView(out.buffer).setUint32(0, session, true);
  out.set(payload, 4);
  return out;
}
