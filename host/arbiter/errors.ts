/** Why the arbiter refused or failed something. */
export type ArbiterErrorCode =
  | 'FTW_ARBITER_SPEC' // an arbiter spec string or an option is malformed or out of range
  | 'FTW_ARBITER_ARGUMENT' // an epoch, node id or lease ttl handed to the arbiter is invalid
  | 'FTW_ARBITER_GAP' // a claim skips epochs: asked for E while the highest claimed epoch is below E - 1
  | 'FTW_ARBITER_CORRUPT' // a stored claim (file or etcd key) is not a valid claim record
  | 'FTW_ARBITER_UNREACHABLE' // the storage could not be read or written (missing dir, I/O error, etcd down)
  | 'FTW_ARBITER_UNSUPPORTED' // the storage lacks something the arbiter needs (hard links)
  | 'FTW_ARBITER_LEASE' // the primary lease could not be taken or was lost
  | 'FTW_ARBITER_CLOSED'; // the arbiter was used after close()

/** Base of every error thrown by host/arbiter; `code` says which kind, `where` names the file, key or URL. */
export class ArbiterError extends Error {
  override readonly name: string = 'ArbiterError';
  readonly code: ArbiterErrorCode;
  /** The path, etcd key or URL list the error is about. */
  readonly where: string;
  /** The epoch the failed operation was about, when there was one. */
  readonly epoch: number | undefined;

  constructor(code: ArbiterErrorCode, message: string, where: string, epoch?: number, options?: { cause?: unknown }) {
    super(`${code}: ${message} (${where}${epoch === undefined ? '' : `, epoch ${epoch}`})`, options);
    this.code = code;
    this.where = where;
    this.epoch = epoch;
  }
}

/** A claim asked for an epoch more than one above the highest claimed one. */
export class ArbiterGapError extends ArbiterError {
  override readonly name = 'ArbiterGapError';
  /** The highest claimed epoch at the time (0 when none). */
  readonly currentEpoch: number;

  constructor(epoch: number, currentEpoch: number, where: string) {
    super(
      'FTW_ARBITER_GAP',
      `cannot claim epoch ${epoch}: the highest claimed epoch is ${currentEpoch}, so the next one is ${currentEpoch + 1}`,
      where,
      epoch,
    );
    this.currentEpoch = currentEpoch;
  }
}

/** A stored claim is unreadable; `where` is the file path or etcd key, `detail` what was wrong with it. */
export class ArbiterCorruptError extends ArbiterError {
  override readonly name = 'ArbiterCorruptError';
  readonly detail: string;

  constructor(detail: string, where: string, epoch?: number) {
    super(
      'FTW_ARBITER_CORRUPT',
      `stored claim is corrupt: ${detail}; repair it by writing a valid claim record for the same epoch, never by deleting it`,
      where,
      epoch,
    );
    this.detail = detail;
  }
}

/** The storage could not be reached, read or written; `cause` holds the underlying error. */
export class ArbiterUnreachableError extends ArbiterError {
  override readonly name = 'ArbiterUnreachableError';

  constructor(message: string, where: string, epoch?: number, cause?: unknown) {
    super('FTW_ARBITER_UNREACHABLE', cause === undefined ? message : `${message}: ${describe(cause)}`, where, epoch, { cause });
  }
}

function describe(cause: unknown): string {
  if (cause instanceof Error) {
    const code = (cause as { code?: unknown }).code;
    return typeof code === 'string' && !cause.message.startsWith(code) ? `${code} ${cause.message}` : cause.message;
  }
  return String(cause);
}
