// host/vm: one guest, in record or replay mode, in a worker thread or in the calling thread.
export { GuestCore } from './core.ts';
export { FrameSource, ArraySource } from './sources.ts';
export type { GuestCoreOptions, GuestMode, RunResult, World, EntrySink, EntrySource, OutputSink } from './core.ts';
export { GuestRunner, THROTTLE_PAUSE_US_MAX } from './runner.ts';
export type { GuestRunnerOptions, RunnerResult } from './runner.ts';
export { RealWorld, hostCpuId } from './world.ts';
export { SharedRing, createRingBuffer, RING_CLOSED, RING_TIMEOUT } from './channel.ts';
export { stateHash, hex } from './state.ts';
export { refusedImports, FT_IMPORTS, AS_IMPORTS, IO_BYTES_MAX, MESSAGE_BYTES_MAX, RANDOM_FILL_BYTES_MAX } from './abi.ts';
export type { DeterministicImports } from './abi.ts';
export { DivergenceError, AdmissionError, GuestTrapError, VmStateError } from './errors.ts';
export { encodeSnapshot, decodeSnapshot, SNAPSHOT_BYTES_MAX } from './snapshot.ts';
export type { GuestSnapshot } from './snapshot.ts';
