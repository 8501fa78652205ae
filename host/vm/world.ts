// The real world of a recording guest: clocks, randomness, host id, and input from a shared ring.
import { randomFillSync, createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { SharedRing, RING_CLOSED, RING_TIMEOUT } from './channel.ts';
import { RECV_SNAPSHOT } from './core.ts';
import type { World } from './core.ts';

const RANDOM_POOL_BYTES = 64 * 1024;

/** A stable id of this host (i32), the answer to `cpu_id` unless the embedder gives one. */
export function hostCpuId(): number {
  return createHash('sha256').update(hostname()).digest().readInt32LE(0);
}

export interface RealWorldOptions {
  input: SharedRing;
  interrupts?: SharedRing;
  cpuId?: number;
  /** Called right before the guest blocks in recv: flush the log so the backup is current. */
  beforeBlock?: () => void;
  /** Called at every recv, with whether input is waiting (the worker's group commit of outputs). */
  onRecv?: (queued: boolean) => void;
  /** Whether a snapshot is asked for: a recv waiting for input stops waiting (the asker wakes the input ring). */
  snapshotWanted?: () => boolean;
}

export class RealWorld implements World {
  private readonly epochOffsetNs: bigint;
  private readonly pool = new Uint8Array(RANDOM_POOL_BYTES);
  private poolAt = RANDOM_POOL_BYTES;
  private readonly cpu: number;

  constructor(private readonly options: RealWorldOptions) {
    this.epochOffsetNs = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();
    this.cpu = options.cpuId ?? hostCpuId();
  }

  clockNow(): bigint {
    return this.epochOffsetNs + process.hrtime.bigint();
  }
  clockMono(): bigint {
    return process.hrtime.bigint();
  }
  randomFill(target: Uint8Array): void {
    if (target.length > RANDOM_POOL_BYTES / 4) return void randomFillSync(target);
    if (this.poolAt + target.length > RANDOM_POOL_BYTES) {
      randomFillSync(this.pool);
      this.poolAt = 0;
    }
    // a pool refilled by the CSPRNG 64 KiB at a time: one system call per thousands of small requests
    const pool = this.pool;
    let at = this.poolAt;
    for (let i = 0; i < target.length; i++) target[i] = pool[at++]!; // each pool byte is handed out once
    this.poolAt = at;
  }
  cpuId(): number {
    return this.cpu;
  }
  seed(): number {
    return randomFillSync(new Uint32Array(1))[0]! / 2 ** 32;
  }
  dateNow(): number {
    return Date.now();
  }

  snapshotWanted(): boolean {
    return this.options.snapshotWanted?.() ?? false;
  }

  recv(cap: number, timeoutMs: number): Uint8Array | number | typeof RECV_SNAPSHOT {
    const ring = this.options.input;
    this.options.onRecv?.(ring.usedBytes() > 0);
    if (ring.peekLength() === undefined) {
      if (ring.closed) return RING_CLOSED;
      if (timeoutMs === 0) return RING_TIMEOUT;
      this.options.beforeBlock?.();
      const wanted = this.options.snapshotWanted;
      if (!ring.waitForMessage(timeoutMs < 0 ? Infinity : timeoutMs, wanted)) {
        if (ring.usedBytes() === 0 && wanted?.()) return RECV_SNAPSHOT;
        return ring.closed && ring.usedBytes() === 0 ? RING_CLOSED : RING_TIMEOUT;
      }
    }
    const length = ring.peekLength()!;
    if (length > cap) return -length; // stays queued; the guest may retry with a larger buffer
    return ring.tryRead()!;
  }

  pendingInterrupt(): { event: number; arg: number } | undefined {
    const m = this.options.interrupts?.tryRead();
    if (!m) return undefined;
    const view = new DataView(m.buffer, m.byteOffset, m.byteLength);
    return { event: view.getInt32(0, true), arg: view.getInt32(4, true) };
  }
}
