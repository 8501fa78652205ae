// The embedding API of ftwasm: everything an outside program may import.
export { instrument, InstrumentError, readInstrumentMeta } from './instrument/index.ts';
export type { InstrumentOptions, InstrumentErrorCode, InstrumentMeta } from './instrument/index.ts';
