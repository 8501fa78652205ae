// A session's buffered outputs, oldest first (docs/PROTOCOL.md, section 6): appended at the back, dropped
// from the front as the client acks them or as the bound pushes the oldest out. On a backup the bound does
// that for every output its replay produces (its clients ack the primary, not it), so dropping the oldest
// must not move the rest: a Fifo, with the payload bytes it holds counted.
import { Fifo } from './fifo.ts';

export interface BufferedOutput {
  seq: number;
  epoch: number;
  payload: Uint8Array;
}

export class OutputQueue extends Fifo<BufferedOutput> {
  /** Payload bytes of the outputs held. */
  bytes = 0;

  constructor(outputs: Iterable<BufferedOutput> = []) {
    super();
    for (const output of outputs) this.push(output);
  }

  override push(output: BufferedOutput): void {
    super.push(output);
    this.bytes += output.payload.length;
  }

  override drop(n: number): void {
    for (let i = 0; i < Math.min(n, this.length); i++) this.bytes -= this.at(i)!.payload.length;
    super.drop(n);
  }

  override shift(): BufferedOutput | undefined {
    const output = super.shift();
    if (output) this.bytes -= output.payload.length;
    return output;
  }
}
