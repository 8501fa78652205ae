// `ftwasm record <guest.wasm> --log <file>`: lines of standard input are messages of session 1, outputs go
// to standard output, the log to <file>.
import { rmSync, existsSync } from 'node:fs';
import { GuestRunner, MESSAGE_BYTES_MAX } from '../vm/index.ts';
import { FTWASM_VERSION, loadGuestFor, printFinal, sessionMessage } from './guest.ts';

export interface RecordOptions {
  /** The module prepared for snapshots, as `primary --state-transfer` runs it (its log replays with `replay --state-transfer`). */
  stateTransfer?: boolean;
  log: string;
  force?: boolean;
  slice?: string;
  checkpoint?: string;
  tickMs?: string;
}

const INPUT_RETRY_MS = 2;

export async function recordCommand(path: string, opts: RecordOptions): Promise<void> {
  const guest = await loadGuestFor(path, opts.stateTransfer);
  if (existsSync(opts.log)) {
    if (!opts.force) throw new Error(`log file ${opts.log} exists; pass --force to replace it`);
    rmSync(opts.log);
  }
  const runner = new GuestRunner({
    module: guest.module,
    mode: 'record',
    logFile: { path: opts.log, header: { moduleHash: guest.moduleHash, ftwasmVersion: FTWASM_VERSION } },
    ...(opts.slice ? { sliceInstructions: BigInt(opts.slice) } : {}),
    ...(opts.checkpoint ? { checkpointInstructions: BigInt(opts.checkpoint) } : {}),
  });
  runner.on('send', (_session, bytes) => process.stdout.write(bytes));
  runner.on('log', (text) => process.stderr.write(`[guest] ${text}\n`));
  const feeding = feedStdin(runner);
  // Timer interrupts (event 1, arg = tick number), delivered at the guest's next check point.
  let tick = 0;
  const timer = opts.tickMs ? setInterval(() => runner.interrupt(1, ++tick), Number(opts.tickMs)) : undefined;
  const result = await runner.done.finally(() => clearInterval(timer));
  await feeding.stop();
  if (result.trap) process.stderr.write(`ftwasm: ${result.trap}\n`);
  printFinal(result.icount, result.stateHash);
  if (result.exit === 'trap') process.exitCode = 4;
}

/**
 * Lines of `input` as byte strings, without their line ending (LF or CRLF). A line longer than `max` bytes is
 * never held whole: it comes out as its length alone, so memory stays bounded by `max` whatever the input.
 */
export async function* boundedLines(input: AsyncIterable<Uint8Array>, max: number): AsyncGenerator<Uint8Array | number> {
  let parts: Uint8Array[] = [];
  let held = 0; // bytes of the current line kept in parts
  let length = 0; // bytes of the current line seen
  let last = -1; // its last byte (a CR before the LF is not part of the line)
  const take = (): Uint8Array | number => {
    let line: Uint8Array | number = last === 0x0d ? length - 1 : length;
    if (length <= max + 1) {
      let bytes: Uint8Array = Buffer.concat(parts, held);
      if (bytes.length > 0 && bytes[bytes.length - 1] === 0x0d) bytes = bytes.subarray(0, bytes.length - 1);
      line = bytes.length > max ? bytes.length : bytes;
    }
    parts = [];
    held = 0;
    length = 0;
    last = -1;
    return line;
  };
  const keep = (bytes: Uint8Array): void => {
    length += bytes.length;
    if (bytes.length > 0) last = bytes[bytes.length - 1]!;
    if (length > max + 1) {
      parts = []; // too long already (max + 1 leaves room for a CR): only its length counts from here
      held = 0;
      return;
    }
    parts.push(bytes);
    held += bytes.length;
  };
  for await (const chunk of input) {
    let from = 0;
    for (let nl = chunk.indexOf(0x0a); nl >= 0; nl = chunk.indexOf(0x0a, from)) {
      keep(chunk.subarray(from, nl));
      yield take();
      from = nl + 1;
    }
    if (from < chunk.length) keep(chunk.subarray(from));
  }
  if (length > 0) yield take();
}

/** Pushes each stdin line into the guest's input ring, waiting while the ring is full (bounded memory). */
function feedStdin(runner: GuestRunner): { stop(): Promise<void> } {
  let stopped = false;
  const done = (async () => {
    let n = 0;
    for await (const line of boundedLines(process.stdin, MESSAGE_BYTES_MAX)) {
      n++;
      // As a server refuses a request over the limit, a line over it never reaches the guest (nor the log).
      if (typeof line === 'number' || line.length > MESSAGE_BYTES_MAX) {
        const bytes = typeof line === 'number' ? line : line.length;
        process.stderr.write(`ftwasm: stdin line ${n}: ${bytes} bytes > MESSAGE_BYTES_MAX (${MESSAGE_BYTES_MAX}); skipped\n`);
        continue;
      }
      const message = sessionMessage(1, line);
      while (!runner.send(message)) {
        if (stopped) return;
        await new Promise((r) => setTimeout(r, INPUT_RETRY_MS));
      }
      if (stopped) return;
    }
    runner.closeInput();
  })();
  return {
    async stop() {
      stopped = true;
      process.stdin.destroy();
      await done.catch(() => undefined);
    },
  };
}
