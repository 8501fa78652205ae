// The history a node catches a joining backup up from: in memory or read back from its log file, the same
// frames, from any frame boundary, including frames written after the reader started.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EntryKind, FrameWriter } from '../../host/log/index.ts';
import { FileHistory, LogArchive, MemoryHistory, type HistoryFrame, type LogHistory } from '../../host/replication/index.ts';

const dir = mkdtempSync(join(tmpdir(), 'ftwasm-history-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Frames of 3 entries each (RECV payloads of growing size), seqs from `next`. */
function frames(count: number, next = 1): HistoryFrame[] {
  const out: HistoryFrame[] = [];
  const w = new FrameWriter({ entries_max: 3, next_seq: next, on_frame: (bytes, info) => out.push({ bytes, firstSeq: info.firstSeq, lastSeq: info.lastSeq }) });
  for (let i = 0; i < count * 3; i++) w.append({ seq: next + i, kind: EntryKind.RECV, icount: BigInt(10 * (next + i)), payload: new Uint8Array(4 + i) } as never);
  w.flush();
  return out;
}

const kinds: Array<[string, () => { history: LogHistory; add(f: HistoryFrame): void }]> = [
  ['memory', () => {
    const history = new MemoryHistory(1 << 20);
    return { history, add: (f) => history.add(f) };
  }],
  ['file', () => {
    const archive = LogArchive.create(join(dir, `h-${Math.random().toString(36).slice(2)}.ftwlog`), { moduleHash: new Uint8Array(32), ftwasmVersion: 'test' });
    const history = new FileHistory(archive);
    // As a node does: the archive writes the frame, then the history is told.
    return { history, add: (f) => (archive.append(f.bytes, f.firstSeq, f.lastSeq), history.add(f)) };
  }],
];

describe('log history', () => {
  for (const [kind, make] of kinds) {
    it(`${kind}: reads whole frames in batches from seq 1 or any frame boundary, and frames added later`, () => {
      const { history, add } = make();
      const all = frames(6);
      for (const f of all.slice(0, 4)) add(f);
      const last = all[3]!.lastSeq;
      const seqs = (fs: HistoryFrame[]) => fs.map((f) => `${f.firstSeq}..${f.lastSeq}`);
      const r = history.reader(1, last)!;
      const first = r.next(all[0]!.bytes.length + all[1]!.bytes.length); // two fit, not three
      expect(seqs(first)).toEqual(['1..3', '4..6']);
      expect(Buffer.from(first[1]!.bytes).equals(Buffer.from(all[1]!.bytes))).toBe(true);
      expect(seqs(r.next(1))).toEqual(['7..9']); // one frame even when it is over the batch size
      expect(seqs(r.next(1 << 20))).toEqual(['10..12']);
      expect(r.next(1 << 20)).toEqual([]); // caught up
      for (const f of all.slice(4)) add(f);
      expect(seqs(r.next(1 << 20))).toEqual(['13..15', '16..18']);
      r.close();
      expect(seqs(history.reader(7, last)!.next(1 << 20))).toEqual(['7..9', '10..12', '13..15', '16..18']);
      expect(history.reader(8, last)).toBeUndefined(); // not a frame boundary
      expect(history.reader(19, 18)!.next(1 << 20)).toEqual([]);
    });
  }

  it('memory: past bytes_max it drops everything and says why; a file history ends with its file', () => {
    const m = new MemoryHistory(100);
    for (const f of frames(3)) m.add(f);
    expect(m.complete).toBe(false);
    expect(m.gone).toMatch(/history_bytes_max = 100 bytes/);
    expect(m.reader(1, 9)).toBeUndefined();
    const archive = LogArchive.create(join(dir, 'small.ftwlog'), { moduleHash: new Uint8Array(32), ftwasmVersion: 'test' }, 300);
    const f = new FileHistory(archive);
    expect(() => { for (const fr of frames(5)) archive.append(fr.bytes, fr.firstSeq, fr.lastSeq); }).toThrow(/FTW_LOG_LIMIT/);
    expect(f.complete).toBe(false);
    expect(f.gone).toMatch(/would grow past its limit/);
    archive.close();
  });
});
