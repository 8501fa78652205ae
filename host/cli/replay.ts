// `ftwasm replay <guest.wasm> --log <file>`: replays in this thread (the whole log is at hand) and checks
// every entry; exit 3 on divergence or a corrupt log.
import { entryKindName, readLogFile } from '../log/index.ts';
import { readFileSync } from 'node:fs';
import { GuestCore, ArraySource, decodeSnapshot } from '../vm/index.ts';
import type { GuestSnapshot } from '../vm/index.ts';
import { loadGuestFor, printFinal } from './guest.ts';

export class ReplayFailed extends Error {
  readonly code = 'FTW_DIVERGENCE';
}

export async function replayCommand(path: string, opts: { log: string; quiet?: boolean; stateTransfer?: boolean; snapshot?: string }): Promise<void> {
  const guest = await loadGuestFor(path, opts.stateTransfer || opts.snapshot !== undefined);
  const contents = await readLogFile(opts.log); // throws LogCorruptError naming frame, offset and seq; LogLimitError past file_bytes_max
  if (Buffer.compare(Buffer.from(contents.header.moduleHash), Buffer.from(guest.moduleHash)) !== 0) {
    throw new ReplayFailed(`log ${opts.log} was recorded with another module (hash ${Buffer.from(contents.header.moduleHash).toString("hex").slice(0, 16)}…)${opts.stateTransfer ? "" : "; if its nodes ran with --state-transfer, pass it here too"}`);
  }
  if (contents.tail !== 'clean') {
    process.stderr.write(`ftwasm: ${opts.log} ends in a torn frame at byte ${contents.tail.offset}; replaying its whole frames, up to seq ${contents.tail.lastGoodSeq}\n`);
  }
  const entries = contents.entries;
  // A log that starts after seq 1 (a backup restored by state transfer) is replayed from its snapshot.
  let restore: GuestSnapshot | undefined;
  if (opts.snapshot !== undefined) {
    restore = decodeSnapshot(readFileSync(opts.snapshot));
    if (restore.lastSeq + 1 !== contents.header.firstSeq) {
      throw new ReplayFailed(`snapshot ${opts.snapshot} was taken after seq ${restore.lastSeq}, but log ${opts.log} starts at seq ${contents.header.firstSeq}`);
    }
  } else if (contents.header.firstSeq > 1) {
    throw new ReplayFailed(`log ${opts.log} starts at seq ${contents.header.firstSeq}: replay it from the snapshot before it (--snapshot ${opts.log}.snapshot)`);
  }
  const core = new GuestCore({
    ...(restore ? { restore } : {}),
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
