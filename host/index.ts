// The embedding API of ftwasm: everything an outside program may import.
export { instrument, prepareUnwind, InstrumentError, readInstrumentMeta, FUEL_MAX } from './instrument/index.ts';
export type { InstrumentOptions, InstrumentErrorCode, InstrumentMeta } from './instrument/index.ts';
export * from './log/index.ts';
export * from './vm/index.ts';
// Replication: a primary and a backup of one guest, in-process or as `ftwasm primary|backup` processes.
export * from './replication/index.ts';
// The client side: the TCP service the guest's clients talk to, and the TypeScript client.
// (Its frame constants are left out: they would clash with the log's. Import host/net for the wire level.)
export { ClientServer, FtClient, parseAddress, NetError, ProtocolError, SERVER_LIMITS_DEFAULT, isLoopback } from './net/index.ts';
export type { ClientServerOptions, ServerLimits, ServerEvent, NodeRole, FtClientOptions, FtClientEvents, SessionTicket, NetErrorCode, WireErrorCode } from './net/index.ts';
// Epoch test-and-set on a shared directory or etcd.
export * from './arbiter/index.ts';
