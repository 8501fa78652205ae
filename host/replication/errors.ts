// Errors of the replication layer: each has a code and a message naming what was wrong and where.

export type ReplicationErrorCode =
  | 'FTW_REPL_AUTH' // the peer failed the shared-secret challenge, or we did
  | 'FTW_REPL_PROTOCOL' // a malformed, oversized or out-of-place message on the log channel
  | 'FTW_REPL_EPOCH' // an epoch could not be won, or a higher one was seen
  | 'FTW_REPL_OPTION' // a bad option or secret
  | 'FTW_REPL_STATE' // misuse, or a bound exceeded
  | 'FTW_REPL_UNREACHABLE'; // the peer could not be reached within the bound

export class ReplicationError extends Error {
  override readonly name = 'ReplicationError';
  constructor(
    readonly code: ReplicationErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${code}: ${message}`, options);
  }
}
