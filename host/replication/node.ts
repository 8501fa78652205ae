// What a primary and a backup share: how they halt for good and how they tell the operator.
import { EventEmitter } from 'node:events';
import type { ReplicaEvents, ReplicaRole } from './primary.ts';

export abstract class ReplicaNode extends EventEmitter<ReplicaEvents> {
  /** Resolves with the reason once this node has halted (lost its epoch, or cannot go on safely). */
  readonly halted: Promise<string>;
  protected role: ReplicaRole;
  private resolveHalted!: (reason: string) => void;

  constructor(
    role: ReplicaRole,
    private readonly onEvent: ((text: string) => void) | undefined,
  ) {
    super();
    this.role = role;
    this.halted = new Promise((resolve) => (this.resolveHalted = resolve));
  }

  /** Stops the guest, listeners and channel (the node releases nothing more). */
  protected abstract shutdown(reason: string): Promise<void>;

  /** Stops everything: guest, channel, client server. */
  async close(): Promise<void> {
    if (this.role === 'closed') return;
    this.role = 'closed';
    await this.shutdown('closed');
  }

  /** Halts for good, once: says why, shuts down, resolves `halted` and emits 'halted'. */
  protected halt(reason: string): void {
    if (this.role === 'halted' || this.role === 'closed') return;
    this.role = 'halted';
    this.note(`halted: ${reason}`);
    void this.shutdown(reason);
    this.resolveHalted(reason);
    this.emit('halted', reason);
  }

  /** An operator-facing line: to `onEvent` and as a 'note' event. */
  protected note(text: string): void {
    this.onEvent?.(text);
    this.emit('note', text);
  }
}

/** Starts a node; if starting fails, closes what was opened and throws. */
export async function startNode<T extends { start(): Promise<void>; close(): Promise<void> }>(node: T): Promise<T> {
  try {
    await node.start();
  } catch (error) {
    await node.close().catch(() => undefined);
    throw error;
  }
  return node;
}
