// A node's log as a file: the file header of docs/LOG.md, then every sealed frame the node holds (received
// from the primary, or recorded by its own guest) in seq order, written as it comes. `ftwasm replay` reads it.
// Memory stays bounded: each frame goes to the file at once and is not kept. The file stops at file_bytes_max
// (default 1 GiB, what `ftwasm replay` reads): the frame that would pass it is refused with FTW_LOG_LIMIT.
import assert from 'node:assert/strict';
import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
import { encodeFileHeader, FILE_BYTES_LIMIT, FILE_BYTES_MAX_DEFAULT, LogLimitError } from '../log/index.ts';
import type { LogFileHeaderInit } from '../log/index.ts';
import { ReplicationError } from './errors.ts';

function writeAll(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done);
}

/** Appends whole log frames, checked to follow each other without a gap, to a new log file. */
export class LogArchive {
  readonly path: string;
  private fd: number;
  private last_seq = 0;
  private bytes = 0;
  /** Why appending stopped (a write error, file_bytes_max): the file is a faithful prefix of the log. */
  failure: string | undefined;
  /** Bytes of the file header: the first frame starts here. */
  readonly headerBytes: number;

  private first_seq = 1;

  private constructor(
    path: string,
    fd: number,
    header_bytes: number,
    private readonly bytes_max: number,
    private readonly header: Omit<LogFileHeaderInit, 'firstSeq'>,
  ) {
    this.path = path;
    this.fd = fd;
    this.bytes = header_bytes;
    this.headerBytes = header_bytes;
  }

  /** Creates the file (never replaces one) and writes its header; the log starts at seq 1. */
  static create(path: string, header: Omit<LogFileHeaderInit, 'firstSeq'>, file_bytes_max = FILE_BYTES_MAX_DEFAULT): LogArchive {
    if (!Number.isInteger(file_bytes_max) || file_bytes_max < 1 || file_bytes_max > FILE_BYTES_LIMIT) {
      throw new ReplicationError('FTW_REPL_OPTION', `file_bytes_max = ${file_bytes_max} is outside 1..${FILE_BYTES_LIMIT}`);
    }
    const bytes = encodeFileHeader({ ...header, firstSeq: 1 });
    let fd: number;
    try {
      fd = openSync(path, 'wx');
    } catch (error) {
      throw new ReplicationError('FTW_REPL_OPTION', `cannot create the log file ${path}: ${(error as Error).message}`, { cause: error });
    }
    writeAll(fd, bytes);
    return new LogArchive(path, fd, bytes.length, file_bytes_max, header);
  }

  /**
   * The log this file keeps starts after a snapshot (a backup restored by state transfer): its first frame
   * is firstSeq. Only before any frame was appended; the header is rewritten in place.
   */
  startAt(firstSeq: number): void {
    assert(this.fd >= 0 && this.last_seq === 0 && this.bytes === this.headerBytes, `log file ${this.path}: startAt after frames were written`);
    const bytes = encodeFileHeader({ ...this.header, firstSeq });
    assert(bytes.length === this.headerBytes, 'the file header changed size');
    writeSync(this.fd, bytes, 0, bytes.length, 0);
    this.first_seq = firstSeq;
    this.last_seq = firstSeq - 1;
  }

  /** Seq of the file's first entry (1 unless it starts after a snapshot). */
  get firstSeq(): number {
    return this.first_seq;
  }

  /** Highest seq in the file. */
  get lastSeq(): number {
    return this.last_seq;
  }

  get bytesWritten(): number {
    return this.bytes;
  }

  get closed(): boolean {
    return this.fd < 0;
  }

  /** Appends frame bytes ending at lastSeq, starting at firstSeq = the last seq written + 1. */
  append(frames: Uint8Array, firstSeq: number, lastSeq: number): void {
    assert(this.fd >= 0, `log file ${this.path} is closed`);
    assert(firstSeq === this.last_seq + 1, `log file ${this.path}: frames ${firstSeq}..${lastSeq} after seq ${this.last_seq}`);
    // A chunk that completes no frame yet (lastSeq = firstSeq - 1) is allowed: the next one finishes it.
    assert(lastSeq >= this.last_seq, `log file ${this.path}: frames ${firstSeq}..${lastSeq} go back`);
    if (this.failure !== undefined) throw new ReplicationError('FTW_REPL_STATE', `log file ${this.path} stopped: ${this.failure}`);
    try {
      if (this.bytes + frames.length > this.bytes_max) {
        throw new LogLimitError('file_bytes_max', this.bytes + frames.length, this.bytes_max, `log file ${this.path} would grow past its limit at seq ${firstSeq}`);
      }
      writeAll(this.fd, frames);
    } catch (error) {
      this.failure = (error as Error).message;
      throw error;
    }
    this.bytes += frames.length;
    this.last_seq = lastSeq;
  }

  /** Makes the file durable and closes it; closing twice does nothing. */
  close(): void {
    if (this.fd < 0) return;
    const fd = this.fd;
    this.fd = -1;
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
}
