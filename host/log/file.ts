// Log files: a header, then frames back to back. Little-endian header:
//
//   0 magic "FTWLOG"        6 format_version u16   8 header_bytes u32   12 flags u32 (behaviour flags)
//  16 module_hash [32] (SHA-256)                   48 created_at_ms u64  56 first_seq u64
//  64 version_bytes u16    66 ftwasm version (UTF-8, at most 64 bytes)
//  66 + version_bytes: header_crc u32 = CRC-32C of everything before it
//
// The fixed prefix (magic, format_version, header_bytes) keeps its place in every format version, so a
// reader can find and check the CRC before it trusts the version.
import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { crc32c } from './crc32c.ts';
import { LogCorruptError, LogError, LogHeaderError, LogLimitError, LogOptionError, LogStateError, LogVersionError } from './errors.ts';
import {
  decodeFrameAt,
  FRAME_HEADER_BYTES,
  frameBytesMaxOption,
  FrameWriter,
  scanFrame,
  seqOption,
  type DecodedFrame,
  type FrameCursor,
  type FrameInfo,
  type LogTail,
} from './frame.ts';
import { EntryKind, type LogEntry } from './kinds.ts';

export const FILE_MAGIC = Uint8Array.of(0x46, 0x54, 0x57, 0x4c, 0x4f, 0x47); // "FTWLOG"
export const LOG_FORMAT_VERSION = 1;
export const SUPPORTED_FORMAT_VERSIONS: readonly number[] = [1];
export const MODULE_HASH_BYTES = 32;
export const FTWASM_VERSION_BYTES_MAX = 64;
const FIXED_HEADER_BYTES = 66;
const FILE_HEADER_BYTES_MIN = FIXED_HEADER_BYTES + 4;
export const FILE_HEADER_BYTES_MAX = FILE_HEADER_BYTES_MIN + FTWASM_VERSION_BYTES_MAX;
export const FILE_BYTES_MAX_DEFAULT = 1024 * 1024 * 1024;
/** Hard ceiling for file_bytes_max: a file is read into memory whole. */
export const FILE_BYTES_LIMIT = 2 ** 31 - 1;
const TWO_32 = 4294967296;

/** A log file's header as read. */
export interface LogFileHeader {
  formatVersion: number;
  /** Behaviour flags (u32) the log was recorded with; their meaning belongs to the layers that replay it. */
  flags: number;
  /** SHA-256 of the guest module (32 bytes). */
  moduleHash: Uint8Array;
  /** Version of the ftwasm that wrote the file. */
  ftwasmVersion: string;
  /** Milliseconds since the Unix epoch when the file was created. */
  createdAtMs: number;
  /** seq of the file's first entry (a segment after a snapshot starts above 1). */
  firstSeq: number;
  headerBytes: number;
}

/** What a writer puts in a new file's header. */
export interface LogFileHeaderInit {
  flags?: number;
  moduleHash: Uint8Array;
  ftwasmVersion: string;
  createdAtMs?: number;
  firstSeq?: number;
}

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder('utf-8', { fatal: true });

/** The bytes of a file header; throws LogOptionError for a field out of range. */
export function encodeFileHeader(init: LogFileHeaderInit): Uint8Array {
  const flags = init.flags ?? 0;
  if (!Number.isInteger(flags) || flags < 0 || flags > 0xffffffff) throw new LogOptionError('flags', flags, 'u32');
  if (!(init.moduleHash instanceof Uint8Array) || init.moduleHash.length !== MODULE_HASH_BYTES) {
    throw new LogOptionError('moduleHash', init.moduleHash?.length, `Uint8Arrays of ${MODULE_HASH_BYTES} bytes`);
  }
  const version = utf8.encode(init.ftwasmVersion);
  if (typeof init.ftwasmVersion !== 'string' || version.length > FTWASM_VERSION_BYTES_MAX) {
    throw new LogOptionError('ftwasmVersion', init.ftwasmVersion, `strings of at most ${FTWASM_VERSION_BYTES_MAX} UTF-8 bytes`);
  }
  const createdAtMs = init.createdAtMs ?? Date.now();
  if (!Number.isSafeInteger(createdAtMs) || createdAtMs < 0) throw new LogOptionError('createdAtMs', createdAtMs, 'non-negative safe integers');
  const firstSeq = seqOption('firstSeq', init.firstSeq);
  const headerBytes = FILE_HEADER_BYTES_MIN + version.length;
  const out = new Uint8Array(headerBytes);
  const view = new DataView(out.buffer);
  out.set(FILE_MAGIC, 0);
  view.setUint16(6, LOG_FORMAT_VERSION, true);
  view.setUint32(8, headerBytes, true);
  view.setUint32(12, flags, true);
  out.set(init.moduleHash, 16);
  view.setUint32(48, createdAtMs >>> 0, true);
  view.setUint32(52, Math.floor(createdAtMs / TWO_32), true);
  view.setUint32(56, firstSeq >>> 0, true);
  view.setUint32(60, Math.floor(firstSeq / TWO_32), true);
  view.setUint16(64, version.length, true);
  out.set(version, FIXED_HEADER_BYTES);
  view.setUint32(headerBytes - 4, crc32c(out, 0, headerBytes - 4), true);
  return out;
}

function safeU64(view: DataView, at: number): number {
  const hi = view.getUint32(at + 4, true);
  return hi > 0x1fffff ? -1 : hi * TWO_32 + view.getUint32(at, true);
}

/** Reads and checks a file header: LogHeaderError when it is cut short or damaged, LogVersionError for an unknown version. */
export function decodeFileHeader(bytes: Uint8Array, path?: string): LogFileHeader {
  const n = bytes.length;
  for (let i = 0; i < FILE_MAGIC.length; i++) {
    if (i >= n) throw new LogHeaderError(`file ends inside its header (${n} bytes)`, n, path);
    if (bytes[i] !== FILE_MAGIC[i]) throw new LogHeaderError('not an ftwasm log: bad magic', i, path);
  }
  if (n < 12) throw new LogHeaderError(`file ends inside its header (${n} bytes)`, n, path);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerBytes = view.getUint32(8, true);
  if (headerBytes < FILE_HEADER_BYTES_MIN || headerBytes > FILE_HEADER_BYTES_MAX) {
    throw new LogHeaderError(`header length ${headerBytes} outside [${FILE_HEADER_BYTES_MIN}, ${FILE_HEADER_BYTES_MAX}]`, 8, path);
  }
  if (n < headerBytes) throw new LogHeaderError(`file ends inside its header (${n} of ${headerBytes} bytes)`, n, path);
  const stored = view.getUint32(headerBytes - 4, true);
  const computed = crc32c(bytes, 0, headerBytes - 4);
  if (stored !== computed) {
    throw new LogHeaderError(`bad header CRC-32C (stored 0x${stored.toString(16)}, computed 0x${computed.toString(16)})`, headerBytes - 4, path);
  }
  const formatVersion = view.getUint16(6, true);
  if (!SUPPORTED_FORMAT_VERSIONS.includes(formatVersion)) throw new LogVersionError(formatVersion, SUPPORTED_FORMAT_VERSIONS, path);
  const versionBytes = view.getUint16(64, true);
  if (FILE_HEADER_BYTES_MIN + versionBytes !== headerBytes) {
    throw new LogHeaderError(`version string of ${versionBytes} bytes does not fit header length ${headerBytes}`, 64, path);
  }
  let ftwasmVersion: string;
  try {
    ftwasmVersion = utf8Strict.decode(bytes.subarray(FIXED_HEADER_BYTES, FIXED_HEADER_BYTES + versionBytes));
  } catch {
    throw new LogHeaderError('ftwasm version is not UTF-8', FIXED_HEADER_BYTES, path);
  }
  const createdAtMs = safeU64(view, 48);
  if (createdAtMs < 0) throw new LogHeaderError('created-at beyond 2^53 ms', 48, path);
  const firstSeq = safeU64(view, 56);
  if (firstSeq < 1) throw new LogHeaderError('first seq is 0 or beyond 2^53', 56, path);
  return {
    formatVersion,
    flags: view.getUint32(12, true),
    moduleHash: bytes.slice(16, 48),
    ftwasmVersion,
    createdAtMs,
    firstSeq,
    headerBytes,
  };
}

// ---------------------------------------------------------------------------------------------------------
// Writing.

/** When the file writer calls fsync: after every frame, on flush()/close(), or never (tests, scratch logs). */
export type FsyncPolicy = 'every_frame' | 'on_flush' | 'never';

export interface LogFileWriterOptions {
  /** Default 'on_flush'. */
  fsync?: FsyncPolicy;
  /** The file never grows past this many bytes; a frame that would cross it is a LogLimitError. Default 1 GiB. */
  file_bytes_max?: number;
  /** Frame limits, as for FrameWriter. */
  entries_max?: number;
  bytes_max?: number;
  /** Entries may not have an icount below this. Default 0n. */
  icount_min?: bigint;
}

function writeAll(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done);
}

function fsyncDirectory(path: string): void {
  const fd = openSync(dirname(path), 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Appends entries to a new log file in frames. Entries are in the file once their frame is written (when it
 * fills, or on flush()), and durable once fsync ran as the policy says. Any write error or limit fails the
 * writer for good; the file then ends with whole frames (or a torn tail that readLogFile reports).
 */
export class LogFileWriter {
  readonly path: string;
  readonly header: LogFileHeader;
  readonly fileBytesMax: number;
  readonly fsync: FsyncPolicy;
  private fd: number;
  private readonly frames: FrameWriter;
  private written: number;
  private closed = false;
  private failure: unknown = null;

  private constructor(path: string, fd: number, header: LogFileHeader, options: LogFileWriterOptions, fileBytesMax: number, fsync: FsyncPolicy) {
    this.path = path;
    this.fd = fd;
    this.header = header;
    this.fileBytesMax = fileBytesMax;
    this.fsync = fsync;
    this.written = header.headerBytes;
    this.frames = new FrameWriter({
      entries_max: options.entries_max,
      bytes_max: options.bytes_max,
      next_seq: header.firstSeq,
      icount_min: options.icount_min,
      on_frame: (frame) => this.writeFrame(frame),
    });
  }

  /** Creates a new log file (never overwrites one) and writes its header. */
  static create(path: string, init: LogFileHeaderInit, options: LogFileWriterOptions = {}): LogFileWriter {
    const fsync = options.fsync ?? 'on_flush';
    if (fsync !== 'every_frame' && fsync !== 'on_flush' && fsync !== 'never') {
      throw new LogOptionError('fsync', fsync, "'every_frame' | 'on_flush' | 'never'");
    }
    const fileBytesMax = options.file_bytes_max ?? FILE_BYTES_MAX_DEFAULT;
    if (!Number.isInteger(fileBytesMax) || fileBytesMax < FILE_HEADER_BYTES_MAX || fileBytesMax > FILE_BYTES_LIMIT) {
      throw new LogOptionError('file_bytes_max', fileBytesMax, `[${FILE_HEADER_BYTES_MAX}, ${FILE_BYTES_LIMIT}]`);
    }
    // Check the frame options before the file exists, so that a bad option leaves nothing behind.
    new FrameWriter({ entries_max: options.entries_max, bytes_max: options.bytes_max, icount_min: options.icount_min, on_frame: () => {} });
    const bytes = encodeFileHeader(init);
    const header = decodeFileHeader(bytes, path);
    const fd = openSync(path, 'wx');
    try {
      writeAll(fd, bytes);
      if (fsync !== 'never') {
        fsyncSync(fd);
        fsyncDirectory(path);
      }
      return new LogFileWriter(path, fd, header, options, fileBytesMax, fsync);
    } catch (error) {
      closeSync(fd);
      throw error;
    }
  }

  /** Bytes in the file so far (header and written frames). */
  get bytesWritten(): number {
    return this.written;
  }
  /** seq the next appended entry must carry. */
  get nextSeq(): number {
    return this.frames.nextSeq;
  }
  /** Bytes of the open frame, not yet in the file. */
  get pendingBytes(): number {
    return this.frames.pendingBytes;
  }

  /** Appends an entry at seq `nextSeq`; returns its seq. */
  append(entry: LogEntry): number {
    this.checkUsable();
    return this.frames.append(entry);
  }

  /** Appends a clock entry at seq `nextSeq`; returns its seq. */
  appendClock(kind: typeof EntryKind.CLOCK_NOW | typeof EntryKind.CLOCK_MONO, icount: bigint | number, ns: bigint): number {
    this.checkUsable();
    return this.frames.appendClock(kind, icount, ns);
  }

  /** Appends a RANDOM entry at seq `nextSeq`; returns its seq. */
  appendRandom(icount: bigint | number, bytes: Uint8Array): number {
    this.checkUsable();
    return this.frames.appendRandom(icount, bytes);
  }

  /** Writes the open frame and, unless fsync is 'never', makes the file durable up to here. */
  flush(): void {
    this.checkUsable();
    this.frames.flush();
    if (this.fsync === 'on_flush') this.sync();
  }

  /** Flushes (unless the writer failed) and closes the file; closing twice does nothing. */
  close(): void {
    if (this.closed) return;
    try {
      if (this.failure === null) this.flush();
    } finally {
      this.closed = true;
      closeSync(this.fd);
      this.fd = -1;
    }
  }

  private sync(): void {
    try {
      fsyncSync(this.fd);
    } catch (error) {
      this.failure = error;
      throw error;
    }
  }

  private writeFrame(frame: Uint8Array): void {
    if (this.written + frame.length > this.fileBytesMax) {
      const error = new LogLimitError('file_bytes_max', this.written + frame.length, this.fileBytesMax, `log file ${this.path} would grow past its limit`);
      this.failure = error;
      throw error;
    }
    try {
      writeAll(this.fd, frame);
    } catch (error) {
      this.failure = error;
      throw error;
    }
    this.written += frame.length;
    if (this.fsync === 'every_frame') this.sync();
  }

  private checkUsable(): void {
    if (this.closed) throw new LogStateError(`log file writer for ${this.path} is closed`);
    if (this.failure !== null) {
      throw new LogStateError(`log file writer for ${this.path} failed earlier: ${String((this.failure as Error).message ?? this.failure)}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Reading and recovery.

/** What the bytes at a frame position are. 'none': the file ends there. */
export type FrameState = 'whole' | 'torn' | 'zero_filled' | 'corrupt' | 'none';
/** 'middle': bytes follow the frame; 'last': it reaches the end of the file. */
export type FramePosition = 'middle' | 'last';
export type RecoveryAction = 'accept' | 'clean_end' | 'stop_torn_tail' | 'refuse_lost_acked' | 'refuse_corrupt' | 'impossible';

export interface RecoveryRow {
  frame: FrameState;
  position: FramePosition;
  /** Whether an acknowledged entry (seq <= acked_seq) would be at or after this frame. */
  acked: boolean;
  action: RecoveryAction;
  why: string;
}

const row = (frame: FrameState, position: FramePosition, acked: boolean, action: RecoveryAction, why: string): RecoveryRow => ({
  frame,
  position,
  acked,
  action,
  why,
});

/** What reading a log file does, for every state of a frame, its position and whether it holds acknowledged entries. */
export const RECOVERY_TABLE: readonly RecoveryRow[] = [
  row('whole', 'middle', false, 'accept', 'checked frame: take its entries, read on'),
  row('whole', 'middle', true, 'accept', 'checked frame: take its entries, read on'),
  row('whole', 'last', false, 'accept', 'checked frame: take its entries; the file ends after it'),
  row('whole', 'last', true, 'accept', 'checked frame: take its entries; the file ends after it'),
  row('torn', 'middle', false, 'impossible', 'a torn frame runs into the end of the file by definition'),
  row('torn', 'middle', true, 'impossible', 'a torn frame runs into the end of the file by definition'),
  row('torn', 'last', false, 'stop_torn_tail', 'the writer died inside this frame; nothing acknowledged is lost: return the whole frames, report the tail'),
  row('torn', 'last', true, 'refuse_lost_acked', 'acknowledged entries would be lost: that is damage, not a crash artifact'),
  row('zero_filled', 'middle', false, 'impossible', 'zero fill runs to the end of the file by definition'),
  row('zero_filled', 'middle', true, 'impossible', 'zero fill runs to the end of the file by definition'),
  row('zero_filled', 'last', false, 'stop_torn_tail', 'a crash left the file longer than its data (zero pages): same as torn'),
  row('zero_filled', 'last', true, 'refuse_lost_acked', 'acknowledged entries would be lost'),
  row('corrupt', 'middle', false, 'refuse_corrupt', 'bytes follow it, so it was written whole and damaged since'),
  row('corrupt', 'middle', true, 'refuse_corrupt', 'bytes follow it, so it was written whole and damaged since'),
  row('corrupt', 'last', false, 'refuse_corrupt', 'a bad magic, header CRC, seq or frame CRC is damage, not a cut'),
  row('corrupt', 'last', true, 'refuse_corrupt', 'a bad magic, header CRC, seq or frame CRC is damage, not a cut'),
  row('none', 'middle', false, 'impossible', 'the end of the file is last by definition'),
  row('none', 'middle', true, 'impossible', 'the end of the file is last by definition'),
  row('none', 'last', false, 'clean_end', 'the file ends at a frame boundary'),
  row('none', 'last', true, 'refuse_lost_acked', 'the file ends before entries that were acknowledged'),
];

/** The row of RECOVERY_TABLE for a frame state, position and acked-ness. */
export function recoveryAction(frame: FrameState, position: FramePosition, acked: boolean): RecoveryAction {
  const found = RECOVERY_TABLE.find((r) => r.frame === frame && r.position === position && r.acked === acked);
  if (found === undefined) throw new Error(`recovery table has no row for ${frame} / ${position} / ${String(acked)}`);
  return found.action;
}

export interface ReadLogFileOptions {
  /** Frames longer than this are corrupt. Default 1 MiB. */
  frame_bytes_max?: number;
  /** Files larger than this are refused before reading. Default 1 GiB. */
  file_bytes_max?: number;
  /** Highest seq acknowledged as durable: a tail that would lose any of them is refused. */
  acked_seq?: number;
}

/** A log file, read: its header, every entry of its whole frames, the frames, and how it ends. */
export interface LogFileContents {
  header: LogFileHeader;
  entries: LogEntry[];
  frames: FrameInfo[];
  tail: LogTail;
}

function isZeroFrom(bytes: Uint8Array, pos: number): boolean {
  for (let i = pos; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

interface Classified {
  state: FrameState;
  position: FramePosition;
  frame?: DecodedFrame;
  error?: LogCorruptError;
}

function classify(bytes: Uint8Array, pos: number, cursor: FrameCursor, frameBytesMax: number): Classified {
  const n = bytes.length;
  if (pos === n) return { state: 'none', position: 'last' };
  if (bytes[pos] === 0 && isZeroFrom(bytes, pos)) return { state: 'zero_filled', position: 'last' };
  try {
    const header = scanFrame(bytes, pos, n, cursor, frameBytesMax);
    if (header === null) return { state: 'torn', position: 'last' };
    const frame = decodeFrameAt(bytes, pos, header, cursor);
    return { state: 'whole', position: pos + header.bytes < n ? 'middle' : 'last', frame };
  } catch (error) {
    if (!(error instanceof LogCorruptError)) throw error;
    return { state: 'corrupt', position: declaredEnd(bytes, pos) < n ? 'middle' : 'last', error };
  }
}

/** Where a frame says it ends, if its header can be trusted; else the end of the file. */
function declaredEnd(bytes: Uint8Array, pos: number): number {
  if (bytes.length - pos < FRAME_HEADER_BYTES) return bytes.length;
  const view = new DataView(bytes.buffer, bytes.byteOffset + pos, FRAME_HEADER_BYTES);
  if (crc32c(bytes, pos, pos + 40) !== view.getUint32(40, true)) return bytes.length;
  return pos + FRAME_HEADER_BYTES + view.getUint32(4, true);
}

/** Decodes a whole log file's bytes, following RECOVERY_TABLE. */
export function decodeLogFile(bytes: Uint8Array, options: ReadLogFileOptions & { path?: string } = {}): LogFileContents {
  const frameBytesMax = frameBytesMaxOption(options.frame_bytes_max);
  const acked = options.acked_seq;
  if (acked !== undefined && (!Number.isSafeInteger(acked) || acked < 0)) throw new LogOptionError('acked_seq', acked, 'non-negative safe integers');
  const where = options.path ? ` of ${options.path}` : '';
  const header = decodeFileHeader(bytes, options.path);
  const cursor: FrameCursor = { frameIndex: 0, offset: header.headerBytes, expectedSeq: header.firstSeq, lastIcount: 0n };
  const entries: LogEntry[] = [];
  const frames: FrameInfo[] = [];
  for (;;) {
    const pos = cursor.offset;
    const c = classify(bytes, pos, cursor, frameBytesMax);
    const action = recoveryAction(c.state, c.position, acked !== undefined && acked >= cursor.expectedSeq);
    switch (action) {
      case 'accept': {
        const { entries: frameEntries, ...info } = c.frame!;
        for (const entry of frameEntries) entries.push(entry);
        frames.push(info);
        break;
      }
      case 'clean_end':
        return { header, entries, frames, tail: 'clean' };
      case 'stop_torn_tail':
        return {
          header,
          entries,
          frames,
          tail: { kind: 'torn', offset: pos, lastGoodSeq: cursor.expectedSeq - 1, cause: c.state === 'zero_filled' ? 'zero_filled' : 'short' },
        };
      case 'refuse_lost_acked':
        throw new LogCorruptError(
          'lost_acked',
          `log ends (${c.state === 'none' ? 'cleanly' : c.state}) before acknowledged seq ${acked}`,
          cursor.frameIndex,
          pos,
          cursor.expectedSeq,
          options.path,
        );
      case 'refuse_corrupt': {
        const e = c.error!;
        throw new LogCorruptError(e.reason, e.detail, e.frameIndex, e.offset, e.expectedSeq, options.path);
      }
      case 'impossible':
        throw new LogError('FTW_LOG_CORRUPT', `recovery reached an impossible row (${c.state} / ${c.position}) at byte ${pos}${where}`);
    }
  }
}

/** Reads a log file: whole frames up to a torn tail (reported in `tail`); damage throws LogCorruptError. */
export async function readLogFile(path: string, options: ReadLogFileOptions = {}): Promise<LogFileContents> {
  const fileBytesMax = options.file_bytes_max ?? FILE_BYTES_MAX_DEFAULT;
  const size = (await stat(path)).size;
  if (size > fileBytesMax) throw new LogLimitError('file_bytes_max', size, fileBytesMax, `log file ${path} is too large to read`);
  const bytes = await readFile(path);
  return decodeLogFile(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), { ...options, path });
}
