import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  crc32c,
  decodeFileHeader,
  decodeLogFile,
  encodeFileHeader,
  EntryKind,
  LogCorruptError,
  LogFileWriter,
  LogHeaderError,
  LogLimitError,
  LogOptionError,
  LogStateError,
  LogVersionError,
  readLogFile,
  RECOVERY_TABLE,
  recoveryAction,
  type FrameState,
  type LogEntry,
  type LogFileHeaderInit,
} from '../../host/log/index.ts';
import { concat, encodeFrames, sampleEntries } from './support.ts';

const GOLDEN = new URL('./golden/small.ftwlog', import.meta.url).pathname;
const HEADER: LogFileHeaderInit = {
  flags: 0b101,
  moduleHash: createHash('sha256').update('golden module').digest(),
  ftwasmVersion: '0.1.0',
  createdAtMs: 1_700_000_000_000,
};

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ftwasm-log-test-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});
let fileNo = 0;
const tempPath = () => join(dir, `log-${++fileNo}.ftwlog`);

function writeLog(path: string, entries: LogEntry[], init: Partial<LogFileHeaderInit> = {}): void {
  const w = LogFileWriter.create(path, { ...HEADER, ...init }, { entries_max: 4, fsync: 'never' });
  for (const e of entries) w.append(e);
  w.close();
}

function catchError(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error('expected an error');
}

// Regenerate with FTWASM_UPDATE_GOLDEN=1 only when the format changes on purpose (and bump the version).
if (process.env.FTWASM_UPDATE_GOLDEN === '1') {
  rmSync(GOLDEN, { force: true });
  writeLog(GOLDEN, sampleEntries());
}
const golden = new Uint8Array(readFileSync(GOLDEN));
/** Frame boundaries of the golden file: [start, end, firstSeq, lastSeq]. */
const goldenFrames = decodeLogFile(golden).frames.map((f) => [f.offset, f.offset + f.bytes, f.firstSeq, f.lastSeq] as const);
const goldenHeaderBytes = decodeFileHeader(golden).headerBytes;

describe('golden log file', () => {
  it('reads back the recorded entries and header exactly', () => {
    const log = decodeLogFile(golden);
    expect(log.entries).toEqual(sampleEntries());
    expect(log.tail).toBe('clean');
    expect(log.frames.map((f) => f.count)).toEqual([4, 4, 4, 4, 3]);
    expect(log.header).toEqual({
      formatVersion: 1,
      flags: 0b101,
      moduleHash: new Uint8Array(HEADER.moduleHash),
      ftwasmVersion: '0.1.0',
      createdAtMs: 1_700_000_000_000,
      firstSeq: 1,
      headerBytes: 75,
    });
    expect(golden.length).toBeLessThan(700);
  });

  it('is what the writer produces today, byte for byte (the format is frozen)', () => {
    const path = tempPath();
    writeLog(path, sampleEntries());
    expect(new Uint8Array(readFileSync(path))).toEqual(golden);
  });

  it('catches every flipped byte: a header error in the header, else FTW_LOG_CORRUPT naming the frame', () => {
    for (let at = 0; at < golden.length; at++) {
      for (const mask of [0xff, 0x01]) {
        const damaged = golden.slice();
        damaged[at]! ^= mask;
        const error = catchError(() => decodeLogFile(damaged, { path: 'small.ftwlog' }));
        if (at < goldenHeaderBytes) {
          expect(error, `byte ${at}`).toBeInstanceOf(LogHeaderError);
          expect((error as LogHeaderError).code).toBe('FTW_LOG_HEADER');
          expect((error as LogHeaderError).message).toMatch(/of the file header of small\.ftwlog/);
        } else {
          const [start, , firstSeq] = goldenFrames.find(([, end]) => at < end)!;
          const index = goldenFrames.findIndex(([, end]) => at < end);
          expect(error, `byte ${at}`).toBeInstanceOf(LogCorruptError);
          expect(error).toMatchObject({ code: 'FTW_LOG_CORRUPT', frameIndex: index, offset: start, expectedSeq: firstSeq });
          expect((error as LogCorruptError).message).toContain(`in frame ${index} at byte ${start} (0x${start.toString(16)}) of small.ftwlog, expected seq ${firstSeq}`);
        }
      }
    }
  });

  it('cut at any length: a header error inside the header, else the whole frames and a torn tail where one is cut', () => {
    const all = sampleEntries();
    for (let length = 0; length <= golden.length; length++) {
      const cut = golden.subarray(0, length);
      if (length < goldenHeaderBytes) {
        expect(() => decodeLogFile(cut)).toThrow(LogHeaderError);
        continue;
      }
      const log = decodeLogFile(cut);
      const whole = goldenFrames.filter(([, end]) => end <= length);
      const lastGoodSeq = whole.length ? whole[whole.length - 1]![3] : 0;
      const boundary = whole.length ? whole[whole.length - 1]![1] : goldenHeaderBytes;
      expect(log.entries).toEqual(all.slice(0, lastGoodSeq));
      expect(log.frames).toHaveLength(whole.length);
      if (length === boundary) expect(log.tail).toBe('clean');
      else expect(log.tail).toEqual({ kind: 'torn', offset: boundary, lastGoodSeq, cause: 'short' });
    }
  });
});

describe('recovery', () => {
  const lastStart = () => goldenFrames[goldenFrames.length - 1]![0];

  it('has one row for every frame state x position x acked, and reading follows it', () => {
    const states: FrameState[] = ['whole', 'torn', 'zero_filled', 'corrupt', 'none'];
    for (const state of states) {
      for (const position of ['middle', 'last'] as const) {
        for (const acked of [false, true]) {
          expect(RECOVERY_TABLE.filter((r) => r.frame === state && r.position === position && r.acked === acked)).toHaveLength(1);
          expect(typeof recoveryAction(state, position, acked)).toBe('string');
        }
      }
    }
    expect(RECOVERY_TABLE).toHaveLength(20);
    expect(recoveryAction('torn', 'last', false)).toBe('stop_torn_tail');
    expect(recoveryAction('torn', 'last', true)).toBe('refuse_lost_acked');
    expect(recoveryAction('corrupt', 'middle', false)).toBe('refuse_corrupt');
  });

  it('treats a zero-filled tail as torn, after whole frames or after a cut', () => {
    const padded = concat([golden, new Uint8Array(100)]);
    expect(decodeLogFile(padded).tail).toEqual({ kind: 'torn', offset: golden.length, lastGoodSeq: 19, cause: 'zero_filled' });
    const cutThenZeros = concat([golden.subarray(0, lastStart()), new Uint8Array(60)]);
    const log = decodeLogFile(cutThenZeros);
    expect(log.tail).toEqual({ kind: 'torn', offset: lastStart(), lastGoodSeq: 16, cause: 'zero_filled' });
    expect(log.entries).toHaveLength(16);
  });

  it('refuses bytes after the last frame that cannot start a frame', () => {
    const error = catchError(() => decodeLogFile(concat([golden, Uint8Array.of(0x46, 0x54, 0x58)])));
    expect(error).toMatchObject({ reason: 'magic', frameIndex: 5, offset: golden.length, expectedSeq: 20 });
  });

  it('refuses a torn tail or a clean end that would lose acknowledged entries', () => {
    const cut = golden.subarray(0, golden.length - 3);
    expect(decodeLogFile(cut, { acked_seq: 16 }).tail).toMatchObject({ kind: 'torn', lastGoodSeq: 16 });
    const lost = catchError(() => decodeLogFile(cut, { acked_seq: 17, path: 'a.ftwlog' })) as LogCorruptError;
    expect(lost).toMatchObject({ reason: 'lost_acked', frameIndex: 4, offset: lastStart(), expectedSeq: 17 });
    expect(lost.message).toMatch(/log ends \(torn\) before acknowledged seq 17 in frame 4 at byte \d+ \(0x[0-9a-f]+\) of a.ftwlog/);
    expect(decodeLogFile(golden, { acked_seq: 19 }).tail).toBe('clean');
    expect(catchError(() => decodeLogFile(golden, { acked_seq: 20 }))).toMatchObject({ reason: 'lost_acked', expectedSeq: 20 });
  });

  it('detects a seq gap between the frames of a file', () => {
    const entries = sampleEntries();
    const header = encodeFileHeader(HEADER);
    const a = encodeFrames(entries.slice(0, 4));
    const b = encodeFrames(entries.slice(5, 9));
    const error = catchError(() => decodeLogFile(concat([header, ...a, ...b])));
    expect(error).toMatchObject({ reason: 'seq', frameIndex: 1, offset: header.length + a[0]!.length, expectedSeq: 5 });
  });

  it('refuses a file header of an unknown format version, or not a log at all', () => {
    const v2 = golden.slice();
    const view = new DataView(v2.buffer);
    view.setUint16(6, 2, true);
    view.setUint32(goldenHeaderBytes - 4, crc32c(v2, 0, goldenHeaderBytes - 4), true);
    const error = catchError(() => decodeLogFile(v2, { path: 'v2.ftwlog' })) as LogVersionError;
    expect(error).toBeInstanceOf(LogVersionError);
    expect(error.code).toBe('FTW_LOG_VERSION');
    expect(error.message).toBe('FTW_LOG_VERSION: log format version 2 in v2.ftwlog is not supported (this build reads 1)');
    expect(() => decodeLogFile(new TextEncoder().encode('#!/bin/sh\necho hi\n'))).toThrow(/not an ftwasm log: bad magic at byte 0/);
    expect(() => decodeLogFile(new Uint8Array(0))).toThrow(/file ends inside its header \(0 bytes\)/);
  });
});

describe('LogFileWriter', () => {
  it('writes a segment that starts at any seq, read back by readLogFile', async () => {
    const path = tempPath();
    const entries = sampleEntries().map((e) => ({ ...e, seq: e.seq + 100 }));
    const w = LogFileWriter.create(path, { ...HEADER, firstSeq: 101 }, { fsync: 'every_frame', entries_max: 3 });
    expect(w.nextSeq).toBe(101);
    for (const e of entries) w.append(e);
    expect(w.pendingBytes).toBeGreaterThan(0);
    w.flush();
    expect(w.bytesWritten).toBe(statSync(path).size);
    w.close();
    w.close();
    const log = await readLogFile(path);
    expect(log.entries).toEqual(entries);
    expect(log.header.firstSeq).toBe(101);
    expect(log.frames).toHaveLength(7);
    expect(() => w.append(entries[0]!)).toThrow(LogStateError);
  });

  it('takes clock entries through appendClock and makes them durable on flush', async () => {
    const path = tempPath();
    const w = LogFileWriter.create(path, HEADER);
    for (let i = 0; i < 10_000; i++) w.appendClock(EntryKind.CLOCK_MONO, BigInt(i * 100), BigInt(i * 1000));
    w.flush();
    const log = await readLogFile(path);
    expect(log.entries).toHaveLength(10_000);
    expect(log.entries[9_999]).toEqual({ seq: 10_000, kind: EntryKind.CLOCK_MONO, icount: 999_900n, payload: 9_999_000n });
    w.close();
  });

  it('never overwrites an existing file', () => {
    const path = tempPath();
    writeFileSync(path, 'precious');
    expect(() => LogFileWriter.create(path, HEADER)).toThrow(/EEXIST/);
    expect(readFileSync(path, 'utf8')).toBe('precious');
  });

  it('stops at file_bytes_max with FTW_LOG_LIMIT, leaving a file of whole frames', async () => {
    const path = tempPath();
    const w = LogFileWriter.create(path, HEADER, { file_bytes_max: 1000, entries_max: 2, fsync: 'never' });
    let error: unknown;
    let seq = 1;
    try {
      for (; seq < 1000; seq++) w.append({ seq, kind: EntryKind.RANDOM, icount: 0n, payload: new Uint8Array(50) });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(LogLimitError);
    expect((error as LogLimitError).message).toMatch(/log file .* would grow past its limit \(\d+ > file_bytes_max = 1000\)/);
    expect(() => w.append({ seq: seq + 1, kind: EntryKind.END, icount: 0n, payload: 0 })).toThrow(LogStateError);
    w.close();
    expect(statSync(path).size).toBeLessThanOrEqual(1000);
    const log = await readLogFile(path);
    expect(log.tail).toBe('clean');
    expect(log.entries.length).toBeGreaterThan(0);
    expect(await readLogFile(path, { file_bytes_max: 500 }).catch((e: unknown) => e)).toBeInstanceOf(LogLimitError);
  });

  it('refuses header fields and options out of range before creating the file', () => {
    const path = tempPath();
    expect(() => LogFileWriter.create(path, { ...HEADER, moduleHash: new Uint8Array(31) })).toThrow(LogOptionError);
    expect(() => LogFileWriter.create(path, { ...HEADER, ftwasmVersion: 'v'.repeat(65) })).toThrow(/ftwasmVersion/);
    expect(() => LogFileWriter.create(path, { ...HEADER, flags: -1 })).toThrow(/flags/);
    expect(() => LogFileWriter.create(path, HEADER, { fsync: 'sometimes' as never })).toThrow(/fsync/);
    expect(() => LogFileWriter.create(path, HEADER, { file_bytes_max: 10 })).toThrow(/file_bytes_max/);
    expect(() => LogFileWriter.create(path, HEADER, { entries_max: 0 })).toThrow(/entries_max/);
    expect(() => LogFileWriter.create(path, HEADER, { icount_min: -1n })).toThrow(/icount_min/);
    expect(existsSync(path)).toBe(false);
  });
});
