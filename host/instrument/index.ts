// host/instrument: bytes -> bytes, pure, no I/O. The fuel meter and state exports (see meter.ts for the
// exact counting rule).
export { instrument, readInstrumentMeta, FUEL_MAX, META_SECTION, MODULE_BYTES_MAX } from './instrument.ts';
export type { InstrumentOptions, InstrumentMeta } from './instrument.ts';
export { InstrumentError } from './errors.ts';
export type { InstrumentErrorCode } from './errors.ts';
export { operatorCost } from './meter.ts';
export { prepareUnwind, UNWIND_IMPORT } from './unwind.ts';
