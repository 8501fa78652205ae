// The embedding API of ftwasm: everything an outside program may import.
export { instrument, InstrumentError, readInstrumentMeta, FUEL_MAX } from './instrument/index.ts';
export type { InstrumentOptions, InstrumentErrorCode, InstrumentMeta } from './instrument/index.ts';
export * from './log/index.ts';
export * from './vm/index.ts';
