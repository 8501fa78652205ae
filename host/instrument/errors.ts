/** Why `instrument` refused a module. */
export type InstrumentErrorCode =
  | 'FTW_BAD_MODULE' // malformed bytes: truncated, bad LEB, bad section order, bad opcode
  | 'FTW_SHARED_MEMORY' // shared memories: ftwasm replicates one core, as VMware FT does
  | 'FTW_ATOMICS' // atomic operators (0xFE prefix): same reason
  | 'FTW_UNSUPPORTED' // a valid feature ftwasm does not meter yet (exceptions, GC, memory64, ...)
  | 'FTW_ALREADY_INSTRUMENTED' // the module already carries ftwasm's meter
  | 'FTW_BAD_OPTION' // an option outside its range
  | 'FTW_UNWIND'; // prepareUnwind could not add stack unwinding (Binaryen refused the module)

/** An error naming what was wrong with a module and where (byte offset, function index). */
export class InstrumentError extends Error {
  override readonly name = 'InstrumentError';
  readonly code: InstrumentErrorCode;
  /** Byte offset in the input module, or -1 when the error is not about a place in it. */
  readonly offset: number;
  /** Index of the function (in the original module's function index space) being read, if any. */
  readonly functionIndex: number | undefined;

  constructor(code: InstrumentErrorCode, reason: string, offset: number, functionIndex?: number) {
    const where = [
      offset >= 0 ? `at byte ${offset} (0x${offset.toString(16)})` : '',
      functionIndex !== undefined ? `in function ${functionIndex}` : '',
    ]
      .filter(Boolean)
      .join(' ');
    super(`${code}: ${reason}${where ? ` ${where}` : ''}`);
    this.code = code;
    this.offset = offset;
    this.functionIndex = functionIndex;
  }
}
