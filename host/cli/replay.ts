// `ftwasm replay <guest.wasm> --log <file>`: replays in this thread (the whole log is at hand) and checks
// every entry; exit 3 on divergence or a corrupt log.
import { entryKindName, readLogFile } from '../log/index.ts';
import { GuestCore, ArraySource } from '../vm/index.ts';
import { loadGuest, printFinal } from './guest.ts';

export class ReplayFailed extends Error {
  readonly code = 'FTW_DIVERGENCE';
}

export async function replayCommand(path: string, opts: { log: string; quiet?: boolean }): Promise<void> {
  const guest = loadGuest(path);
  const contents = await readLogFile(opts.log); // throws LogCorruptError naming frame, offset and seq; LogLimitError past file_bytes_max
  if (Buffer.compare(Buffer.from(contents.header.moduleHash), Buffer.from(guest.moduleHash)) !== 0) {
    throw new ReplayFailed(`log ${opts.log} was recorded with another module (hash ${Buffer.from(contents.header.moduleHash).toString('hex').slice(0, 16)}…)`);
  }
  if (contents.tail !== 'clean') {
    process.stderr.write(`ftwasm: ${opts.log} ends in a torn frame at byte ${contents.tail.offset}; replaying its whole frames, up to seq ${contents.tail.lastGoodSeq}\n`);
  }
  const entries = contents.entries;
  const core = new GuestCore({
    module: guest.module,
    mode: 'replay',
    source: new ArraySource(entries),
    outputs: { send: (_s, bytes) => void (opts.quiet || process.stdout.write(bytes)), log: () => undefined },
  });
  const result = core.run();
  if (result.exit === 'log-ended') {
    const last = entries.at(-1);
    process.stderr.write(`ftwasm: log ended at seq ${last?.seq ?? 0}${last ? ` (${entryKindName(last.kind)})` : ''}; replay faithful up to there\n`);
  }
  if (result.trap) process.stderr.write(`ftwasm: replayed the recorded ${result.trap.message}\n`);
  printFinal(result.icount, result.stateHash);
}
