// Errors of the vm layer. Each has a code and names what was wrong and where (seq, icount, import).

/** The backup's execution left the recorded path: kind, icount, output or state differs from the log. */
export class DivergenceError extends Error {
  override readonly name = 'DivergenceError';
  readonly code = 'FTW_DIVERGENCE';
  constructor(
    readonly seq: number,
    readonly expected: string,
    readonly actual: string,
    detail = '',
  ) {
    super(`FTW_DIVERGENCE at seq ${seq}: expected ${expected}, got ${actual}${detail ? ` (${detail})` : ''}`);
  }
}

/** The module imports something ftwasm neither intercepts nor was told is deterministic. */
export class AdmissionError extends Error {
  override readonly name = 'AdmissionError';
  readonly code = 'FTW_ADMISSION';
  constructor(
    readonly imports: string[],
    reason?: string,
  ) {
    super(
      reason ??
        `FTW_ADMISSION: module imports ${imports.join(', ')}, which ftwasm does not intercept; ` +
          'declare them deterministic (deterministicImports) if replaying them is safe, or remove them',
    );
  }
}

/** The guest trapped or aborted; `icount` is where (as of its last call or exit). */
export class GuestTrapError extends Error {
  override readonly name = 'GuestTrapError';
  readonly code = 'FTW_GUEST_TRAP';
  constructor(
    readonly reason: string,
    readonly icount: bigint,
    options?: { cause?: unknown },
  ) {
    super(`FTW_GUEST_TRAP: guest stopped by ${reason} at icount ${icount}`, options);
  }
}

/** Misuse of the vm API (bad option, wrong state). */
export class VmStateError extends Error {
  override readonly name = 'VmStateError';
  readonly code = 'FTW_VM_STATE';
  constructor(message: string) {
    super(`FTW_VM_STATE: ${message}`);
  }
}
