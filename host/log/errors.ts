/** Why the log layer refused something. */
export type LogErrorCode =
  | 'FTW_LOG_CORRUPT' // bytes read are not a valid frame sequence: magic, length, CRC, seq, body
  | 'FTW_LOG_HEADER' // a log file's header is missing, cut short or damaged
  | 'FTW_LOG_VERSION' // a log file written in a format version this build does not read
  | 'FTW_LOG_LIMIT' // a stated maximum would be exceeded (entry, frame, buffer, file)
  | 'FTW_LOG_ENTRY' // an entry handed to a writer is invalid (seq, kind, icount order, payload)
  | 'FTW_LOG_STATE' // a writer or reader used after it was closed or failed
  | 'FTW_LOG_OPTION'; // an option outside its range

/** Base of every error thrown by host/log; `code` says which kind. */
export class LogError extends Error {
  override readonly name: string = 'LogError';
  readonly code: LogErrorCode;

  constructor(code: LogErrorCode, message: string) {
    super(`${code}: ${message}`);
    this.code = code;
  }
}

/** What exactly was wrong with a frame. */
export type CorruptReason =
  | 'magic' // the frame does not start with the frame magic
  | 'header_crc' // the frame header's own CRC-32C does not match
  | 'frame_crc' // the CRC-32C over header and body does not match
  | 'length' // body length out of range (above frame_bytes_max, too small for its entries)
  | 'count' // entry count inconsistent with first/last seq, or zero
  | 'reserved' // a reserved header field is not zero
  | 'seq' // the frame does not start at the expected seq (a gap or a repeat)
  | 'icount' // icount went backwards or out of the u64 range
  | 'body' // the body is not `count` well-formed entries
  | 'garbage_tail' // bytes at the end of the input that are not a prefix of a frame
  | 'lost_acked'; // a torn tail would drop entries that were acknowledged

/** A frame stream or file is damaged: names the frame index, its byte offset and the seq expected there. */
export class LogCorruptError extends LogError {
  override readonly name = 'LogCorruptError';
  readonly reason: CorruptReason;
  /** Index of the frame (0 = first frame of the stream or file) where the damage was found. */
  readonly frameIndex: number;
  /** Byte offset of that frame's first byte in the stream or file. */
  readonly offset: number;
  /** The seq the frame should have started with. */
  readonly expectedSeq: number;

  /** What was wrong, without the where. */
  readonly detail: string;
  /** The file (or peer) the bytes came from, when known. */
  readonly source: string | undefined;

  constructor(reason: CorruptReason, detail: string, frameIndex: number, offset: number, expectedSeq: number, source?: string) {
    super(
      'FTW_LOG_CORRUPT',
      `${detail} in frame ${frameIndex} at byte ${offset} (0x${offset.toString(16)})${source ? ` of ${source}` : ''}, expected seq ${expectedSeq}`,
    );
    this.reason = reason;
    this.detail = detail;
    this.source = source;
    this.frameIndex = frameIndex;
    this.offset = offset;
    this.expectedSeq = expectedSeq;
  }
}

/** A log file's header is missing, cut short or damaged; `offset` is the byte where it went wrong. */
export class LogHeaderError extends LogError {
  override readonly name = 'LogHeaderError';
  readonly offset: number;

  constructor(detail: string, offset: number, path?: string) {
    super('FTW_LOG_HEADER', `${detail} at byte ${offset} of the file header${path ? ` of ${path}` : ''}`);
    this.offset = offset;
  }
}

/** A log file's format version is not one this build reads. */
export class LogVersionError extends LogError {
  override readonly name = 'LogVersionError';
  readonly found: number;
  readonly supported: readonly number[];

  constructor(found: number, supported: readonly number[], path?: string) {
    super(
      'FTW_LOG_VERSION',
      `log format version ${found}${path ? ` in ${path}` : ''} is not supported (this build reads ${supported.join(', ')})`,
    );
    this.found = found;
    this.supported = supported;
  }
}

/** A stated maximum would be exceeded; names the limit, the value and the maximum. */
export class LogLimitError extends LogError {
  override readonly name = 'LogLimitError';
  readonly limit: string;
  readonly value: number;
  readonly max: number;

  constructor(limit: string, value: number, max: number, what: string) {
    super('FTW_LOG_LIMIT', `${what} (${value} > ${limit} = ${max})`);
    this.limit = limit;
    this.value = value;
    this.max = max;
  }
}

/** An entry handed to a writer is invalid; names its seq and kind. */
export class LogEntryError extends LogError {
  override readonly name = 'LogEntryError';
  readonly seq: number;

  constructor(seq: number, kindName: string, detail: string) {
    super('FTW_LOG_ENTRY', `entry seq ${seq} (${kindName}): ${detail}`);
    this.seq = seq;
  }
}

/** A writer or reader used after close or after a failure it already reported. */
export class LogStateError extends LogError {
  override readonly name = 'LogStateError';
  constructor(detail: string) {
    super('FTW_LOG_STATE', detail);
  }
}

/** An option outside its stated range. */
export class LogOptionError extends LogError {
  override readonly name = 'LogOptionError';
  constructor(option: string, value: unknown, range: string) {
    super('FTW_LOG_OPTION', `option ${option} = ${String(value)} is outside ${range}`);
  }
}
