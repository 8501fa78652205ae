import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  EntryKind,
  FRAME_HEADER_BYTES,
  FrameReader,
  FrameWriter,
  decodeLogFile,
  encodeFileHeader,
  LogCorruptError,
  LogError,
  LogLimitError,
  LogOptionError,
  LogStateError,
  type FrameInfo,
  type LogEntry,
} from '../../host/log/index.ts';
import { arbLog, checkProperty, concat, drain, encodeFrames, forgeFrame, sampleEntries } from './support.ts';

function sampleStream(): { frames: Uint8Array[]; infos: FrameInfo[]; stream: Uint8Array; entries: LogEntry[] } {
  const entries = sampleEntries();
  const frames: Uint8Array[] = [];
  const infos: FrameInfo[] = [];
  const w = new FrameWriter({ entries_max: 4, on_frame: (f, info) => (frames.push(f), infos.push(info)) });
  for (const e of entries) w.append(e);
  w.flush();
  return { frames, infos, stream: concat(frames), entries };
}

function catchError(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error('expected an error');
}

describe('FrameWriter', () => {
  it('seals a frame at exactly entries_max entries and on flush, with offsets and seqs that add up', () => {
    const { frames, infos, entries } = sampleStream();
    expect(infos.map((i) => i.count)).toEqual([4, 4, 4, 4, 3]);
    let offset = 0;
    let seq = 1;
    infos.forEach((info, i) => {
      expect(info).toMatchObject({ index: i, offset, bytes: frames[i]!.length, firstSeq: seq, lastSeq: seq + info.count - 1 });
      expect(info.baseIcount).toBe(entries[seq - 1]!.icount);
      offset += info.bytes;
      seq += info.count;
    });
  });

  it('never lets a frame exceed bytes_max, sealing early instead', () => {
    const entries: LogEntry[] = Array.from({ length: 50 }, (_, i) => ({ seq: i + 1, kind: EntryKind.RANDOM, icount: BigInt(i), payload: new Uint8Array(100 + i) }));
    const frames = encodeFrames(entries, { bytes_max: 1000 });
    expect(frames.length).toBeGreaterThan(5);
    for (const f of frames) expect(f.length).toBeLessThanOrEqual(1000);
    const reader = new FrameReader({ frame_bytes_max: 1000 });
    reader.push(concat(frames));
    expect(drain(reader).flatMap((f) => f.entries)).toEqual(entries);
  });

  it('refuses an entry that cannot fit any frame with FTW_LOG_LIMIT, keeping the open frame', () => {
    const frames: Uint8Array[] = [];
    const w = new FrameWriter({ bytes_max: 1000, on_frame: (f) => frames.push(f) });
    w.append({ seq: 1, kind: EntryKind.CPU_ID, icount: 0n, payload: 1 });
    const big = catchError(() => w.append({ seq: 2, kind: EntryKind.RANDOM, icount: 0n, payload: new Uint8Array(1000) })) as LogLimitError;
    expect(big).toBeInstanceOf(LogLimitError);
    expect(big.code).toBe('FTW_LOG_LIMIT');
    expect(big.limit).toBe('bytes_max');
    expect(big.message).toMatch(/entry seq 2 \(RANDOM\) does not fit in a frame \(1048 > bytes_max = 1000\)/);
    // just over: found after encoding (string sizes are only known then)
    const over = catchError(() =>
      w.append({ seq: 2, kind: EntryKind.ABORT, icount: 0n, payload: { message: 'x'.repeat(950), file: '', line: 0, column: 0 } }),
    );
    expect(over).toBeInstanceOf(LogLimitError);
    expect(w.pendingEntries).toBe(1);
    w.append({ seq: 2, kind: EntryKind.END, icount: 1n, payload: 0 });
    w.flush();
    const reader = new FrameReader();
    reader.push(frames[0]!);
    const frame = reader.next();
    expect(frame !== 'incomplete' && frame.entries.map((e) => e.kind)).toEqual([EntryKind.CPU_ID, EntryKind.END]);
  });

  it('refuses options outside their ranges with FTW_LOG_OPTION', () => {
    const on_frame = () => {};
    expect(() => new FrameWriter({ entries_max: 0, on_frame })).toThrow(LogOptionError);
    expect(() => new FrameWriter({ entries_max: 2 ** 21, on_frame })).toThrow(/entries_max/);
    expect(() => new FrameWriter({ bytes_max: 100, on_frame })).toThrow(/bytes_max = 100 is outside/);
    expect(() => new FrameWriter({ bytes_max: 2 ** 27, on_frame })).toThrow(LogOptionError);
    expect(() => new FrameWriter({ next_seq: 0, on_frame })).toThrow(/next_seq/);
    expect(() => new FrameReader({ frame_bytes_max: 1.5 })).toThrow(LogOptionError);
  });

  it('fails for good when on_frame throws', () => {
    const w = new FrameWriter({
      entries_max: 1,
      on_frame: () => {
        throw new Error('disk full');
      },
    });
    expect(() => w.append({ seq: 1, kind: EntryKind.END, icount: 0n, payload: 0 })).toThrow('disk full');
    const after = catchError(() => w.append({ seq: 2, kind: EntryKind.END, icount: 0n, payload: 0 })) as LogStateError;
    expect(after).toBeInstanceOf(LogStateError);
    expect(after.message).toMatch(/FTW_LOG_STATE: frame writer failed earlier .*disk full/);
  });
});

describe('FrameReader', () => {
  it('given the stream cut at every byte, returns the whole frames, then says incomplete, and the rest completes it', () => {
    const { stream, infos, entries } = sampleStream();
    const ends = infos.map((i) => i.offset + i.bytes);
    for (let cut = 0; cut <= stream.length; cut++) {
      const reader = new FrameReader();
      reader.push(stream.subarray(0, cut));
      const first = drain(reader);
      const whole = ends.filter((e) => e <= cut).length;
      expect(first.length).toBe(whole);
      expect(reader.next()).toBe('incomplete');
      const lastEnd = whole === 0 ? 0 : ends[whole - 1]!;
      const tail = reader.finish();
      if (cut === lastEnd) expect(tail).toBe('clean');
      else expect(tail).toEqual({ kind: 'torn', offset: lastEnd, lastGoodSeq: whole === 0 ? 0 : infos[whole - 1]!.lastSeq, cause: 'short' });
      reader.push(stream.subarray(cut));
      const rest = drain(reader);
      expect([...first, ...rest].flatMap((f) => f.entries)).toEqual(entries);
      expect(reader.finish()).toBe('clean');
    }
  });

  it('decodes the stream fed one byte at a time', () => {
    const { stream, entries, infos } = sampleStream();
    const reader = new FrameReader();
    const frames = [];
    for (let i = 0; i < stream.length; i++) {
      reader.push(stream.subarray(i, i + 1));
      frames.push(...drain(reader));
    }
    expect(frames.map(({ entries: _, ...info }) => info)).toEqual(infos);
    expect(frames.flatMap((f) => f.entries)).toEqual(entries);
  });

  it('catches every flipped byte as FTW_LOG_CORRUPT naming the frame that holds it, its offset and seq', () => {
    const { stream, infos } = sampleStream();
    for (let at = 0; at < stream.length; at++) {
      for (const mask of [0xff, 0x01, 0x80]) {
        const damaged = stream.slice();
        damaged[at]! ^= mask;
        const reader = new FrameReader();
        reader.push(damaged);
        const error = catchError(() => drain(reader)) as LogCorruptError;
        const frame = infos.find((i) => at < i.offset + i.bytes)!;
        expect(error).toBeInstanceOf(LogCorruptError);
        expect(error.code).toBe('FTW_LOG_CORRUPT');
        expect([error.frameIndex, error.offset, error.expectedSeq]).toEqual([frame.index, frame.offset, frame.firstSeq]);
        expect(['magic', 'header_crc', 'frame_crc']).toContain(error.reason);
        expect(error.message).toContain(`in frame ${frame.index} at byte ${frame.offset} `);
      }
    }
  });

  it('detects a seq gap and a repeated frame across frames', () => {
    const a = encodeFrames(sampleEntries().slice(0, 8), { entries_max: 4 });
    const b = encodeFrames(sampleEntries().slice(9), { entries_max: 4 });
    const reader = new FrameReader();
    reader.push(concat([...a, ...b]));
    const gap = catchError(() => drain(reader)) as LogCorruptError;
    expect(gap).toBeInstanceOf(LogCorruptError);
    expect(gap).toMatchObject({ reason: 'seq', frameIndex: 2, offset: a[0]!.length + a[1]!.length, expectedSeq: 9 });
    expect(gap.message).toMatch(/frame starts at seq 10 in frame 2 at byte \d+ \(0x[0-9a-f]+\), expected seq 9/);

    const again = new FrameReader();
    again.push(concat([a[0]!, a[0]!]));
    expect(catchError(() => drain(again))).toMatchObject({ reason: 'seq', frameIndex: 1, expectedSeq: 5 });

    const later = new FrameReader({ next_seq: 10 });
    later.push(concat(b));
    expect(drain(later).flatMap((f) => f.entries.map((e) => e.seq))).toEqual([10, 11, 12, 13, 14, 15, 16, 17, 18, 19]);
  });

  it('refuses a frame length above frame_bytes_max from the header alone, before the body arrives', () => {
    const { frames } = sampleStream();
    const huge = forgeFrame(frames[0]!, (v) => v.setUint32(4, 0x7fff_0000, true));
    const reader = new FrameReader();
    reader.push(huge.subarray(0, FRAME_HEADER_BYTES));
    const error = catchError(() => reader.next()) as LogCorruptError;
    expect(error).toMatchObject({ reason: 'length', frameIndex: 0, offset: 0, expectedSeq: 1 });
    expect(error.message).toMatch(/frame length 2147418160 exceeds frame_bytes_max = 1048576/);
    expect(reader.bufferedBytes).toBe(FRAME_HEADER_BYTES);

    const big = encodeFrames(sampleEntries().map((e) => (e.kind === EntryKind.RANDOM ? { ...e, payload: new Uint8Array(5000) } : e)), { entries_max: 100, bytes_max: 8192 });
    const small = new FrameReader({ frame_bytes_max: 4096 });
    small.push(big[0]!);
    expect(catchError(() => small.next())).toMatchObject({ reason: 'length' });
  });

  it('names each header and body check behind the CRCs', () => {
    const { frames } = sampleStream();
    const f = frames[0]!;
    const cases: [string, Uint8Array][] = [
      ['reserved', forgeFrame(f, (v) => v.setUint32(28, 1, true))],
      ['count', forgeFrame(f, (v) => v.setUint32(24, 5, true))],
      ['count', forgeFrame(f, (v) => (v.setUint32(24, 0, true), v.setUint32(16, 0, true)))],
      ['length', forgeFrame(f, (v) => v.setUint32(4, 3, true))],
      ['seq', forgeFrame(f, (v) => (v.setUint32(12, 0x200000, true), v.setUint32(20, 0x200000, true)))],
      ['body', forgeFrame(f, () => {}, new Uint8Array(40).fill(0xc1))],
      ['body', forgeFrame(f, (v) => (v.setUint32(24, 3, true), v.setUint32(16, 3, true)))],
      ['body', forgeFrame(f, () => {}, Uint8Array.of(0x93, 16, 0, 0, 0x93, 1, 0, 0, 0x93, 1, 0, 0, 0x93, 1, 0, 0))],
      ['body', forgeFrame(f, () => {}, Uint8Array.of(0x92, 1, 0, 0x93, 1, 0, 0, 0x93, 1, 0, 0, 0x93, 1, 0, 0, 0))],
      ['body', forgeFrame(f, () => {}, Uint8Array.of(0x93, 4, 0xff, 0, 0x93, 4, 0, 0, 0x93, 4, 0, 0, 0x93, 4, 0, 0))],
      ['body', forgeFrame(f, () => {}, Uint8Array.of(0x93, 4, 0, 0xa1, 0x41, 0x93, 4, 0, 0, 0x93, 4, 0, 0, 0x93, 4, 0, 0))],
      ['body', forgeFrame(f, (v) => v.setBigUint64(32, (1n << 64n) - 1n, true), Uint8Array.of(0x93, 4, 0, 0, 0x93, 4, 1, 0, 0x93, 4, 0, 0, 0x93, 4, 0, 0))],
    ];
    for (const [reason, frame] of cases) {
      const reader = new FrameReader();
      reader.push(frame);
      const error = catchError(() => reader.next()) as LogCorruptError;
      expect(error, reason).toBeInstanceOf(LogCorruptError);
      expect(error.reason).toBe(reason);
      expect(error.frameIndex).toBe(0);
    }
  });

  it('refuses a frame whose base icount is below the previous entry', () => {
    const a = encodeFrames([{ seq: 1, kind: EntryKind.END, icount: 1000n, payload: 0 }]);
    const b = encodeFrames([{ seq: 2, kind: EntryKind.END, icount: 999n, payload: 0 }], { next_seq: 2 });
    const reader = new FrameReader();
    reader.push(concat([...a, ...b]));
    expect(catchError(() => drain(reader))).toMatchObject({ reason: 'icount', frameIndex: 1, expectedSeq: 2 });
  });

  it('refuses use after a failure, bytes beyond buffer_bytes_max, and finish() with a frame unread', () => {
    const { stream, frames } = sampleStream();
    const bad = stream.slice();
    bad[0] = 0;
    const reader = new FrameReader();
    reader.push(bad);
    expect(() => reader.next()).toThrow(LogCorruptError);
    expect(() => reader.next()).toThrow(LogStateError);
    expect(() => reader.push(stream)).toThrow(/FTW_LOG_STATE: frame reader failed earlier: FTW_LOG_CORRUPT: bad frame magic/);

    const bounded = new FrameReader({ frame_bytes_max: 1024, buffer_bytes_max: 1024 });
    expect(() => bounded.push(new Uint8Array(1025))).toThrow(LogLimitError);

    const unread = new FrameReader();
    unread.push(frames[0]!);
    expect(() => unread.finish()).toThrow(LogStateError);
    expect(unread.next()).not.toBe('incomplete');
    expect(unread.finish()).toBe('clean');
  });

  it('reports stream offsets from the offset option', () => {
    const { frames } = sampleStream();
    const reader = new FrameReader({ offset: 1000, next_seq: 5 });
    reader.push(frames[1]!);
    const frame = reader.next();
    expect(frame !== 'incomplete' && [frame.offset, frame.index]).toEqual([1000, 0]);
    expect(reader.offset).toBe(1000 + frames[1]!.length);
    expect(reader.nextSeq).toBe(9);
  });
});

describe('reading damaged or arbitrary bytes', () => {
  it('cut anywhere and fed in any chunks, a random log gives its whole frames, then incomplete', () => {
    checkProperty(
      'random cut',
      fc.property(arbLog(40), fc.integer({ min: 1, max: 8 }), fc.nat(), fc.integer({ min: 1, max: 200 }), (entries, entriesMax, cutSeed, chunk) => {
        const frames = encodeFrames(entries, { entries_max: entriesMax });
        const stream = concat(frames);
        const cut = cutSeed % (stream.length + 1);
        const reader = new FrameReader();
        const got = [];
        for (let at = 0; at < cut; at += chunk) {
          reader.push(stream.subarray(at, Math.min(at + chunk, cut)));
          got.push(...drain(reader));
        }
        expect(reader.next()).toBe('incomplete');
        let end = 0;
        let whole = 0;
        while (whole < frames.length && end + frames[whole]!.length <= cut) end += frames[whole++]!.length;
        expect(got).toHaveLength(whole);
        expect(got.flatMap((f) => f.entries)).toEqual(entries.slice(0, got.reduce((n, f) => n + f.count, 0)));
      }),
      200,
    );
  });

  it('random bytes, or a log with random bytes written over it, only ever give frames, incomplete or a LogError', () => {
    const header = encodeFileHeader({ moduleHash: new Uint8Array(32), ftwasmVersion: 'x', createdAtMs: 0 });
    checkProperty(
      'garbage',
      fc.property(arbLog(20), fc.array(fc.tuple(fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 8 })), { maxLength: 4 }), fc.uint8Array({ maxLength: 200 }), (entries, edits, noise) => {
        const stream = concat(encodeFrames(entries, { entries_max: 3 }));
        for (const [at, bytes] of edits) stream.set(bytes.subarray(0, Math.max(0, stream.length - (at % stream.length))), at % stream.length);
        for (const input of [stream, noise, concat([stream, noise])]) {
          const reader = new FrameReader();
          reader.push(input);
          try {
            drain(reader);
            reader.finish();
          } catch (error) {
            expect(error).toBeInstanceOf(LogError);
          }
          try {
            decodeLogFile(concat([header, input]));
          } catch (error) {
            expect(error).toBeInstanceOf(LogError);
          }
        }
      }),
      300,
    );
  });

  it('a frame with valid CRCs around random body bytes decodes or is FTW_LOG_CORRUPT (reason body or length)', () => {
    const template = encodeFrames([{ seq: 1, kind: EntryKind.END, icount: 0n, payload: 0 }])[0]!;
    const msgpackish = fc.uint8Array({ minLength: 4, maxLength: 120 }).chain((raw) =>
      fc.constantFrom(raw, Uint8Array.of(0x93, 1 + (raw[0]! % 15), ...raw), Uint8Array.of(0x94, 1 + (raw[0]! % 15), 0, ...raw)),
    );
    checkProperty(
      'random body',
      fc.property(msgpackish, fc.integer({ min: 1, max: 4 }), (body, count) => {
        const frame = forgeFrame(template, (v) => (v.setUint32(24, count, true), v.setUint32(16, count, true)), body);
        const reader = new FrameReader();
        reader.push(frame);
        try {
          const decoded = reader.next();
          expect(decoded).not.toBe('incomplete');
        } catch (error) {
          expect(error).toBeInstanceOf(LogCorruptError);
          expect(['body', 'length']).toContain((error as LogCorruptError).reason);
        }
      }),
      2000,
    );
  });
});
