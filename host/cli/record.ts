// `ftwasm record <guest.wasm> --log <file>`: lines of standard input are messages of session 1, outputs go
// to standard output, the log to <file>.
import { createInterface } from 'node:readline';
import { rmSync, existsSync } from 'node:fs';
import { GuestRunner, MESSAGE_BYTES_MAX } from '../vm/index.ts';
import { FTWASM_VERSION, loadGuest, printFinal, sessionMessage } from './guest.ts';

export interface RecordOptions {
  log: string;
  force?: boolean;
  slice?: string;
  checkpoint?: string;
  tickMs?: string;
}

const INPUT_RETRY_MS = 2;

export async function recordCommand(path: string, opts: RecordOptions): Promise<void> {
  const guest = loadGuest(path);
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

/** Pushes each stdin line into the guest's input ring, waiting while the ring is full (bounded memory). */
function feedStdin(runner: GuestRunner): { stop(): Promise<void> } {
  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  let stopped = false;
  const done = (async () => {
    let n = 0;
    for await (const line of lines) {
      n++;
      const payload = new TextEncoder().encode(line);
      // As a server refuses a request over the limit, a line over it never reaches the guest (nor the log).
      if (payload.length > MESSAGE_BYTES_MAX) {
        process.stderr.write(`ftwasm: stdin line ${n}: ${payload.length} bytes > MESSAGE_BYTES_MAX (${MESSAGE_BYTES_MAX}); skipped\n`);
        continue;
      }
      const message = sessionMessage(1, payload);
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
      lines.close();
      process.stdin.destroy();
      await done.catch(() => undefined);
    },
  };
}
