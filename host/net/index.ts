// host/net: the client-facing protocol (docs/PROTOCOL.md): frames, messages, the server a node runs for its
// clients, and the client library that follows the primary across failovers.
export {
  FrameDecoder,
  readFrame,
  encodeFrame,
  WriteBatch,
  WRITE_SLAB_BYTES,
  WRITE_BATCH_BYTES_MAX,
  FRAME_HEADER_BYTES,
  FRAME_BYTES_MAX_DEFAULT,
  FRAME_BYTES_LIMIT,
  PAYLOAD_BYTES_MAX_DEFAULT,
  ENVELOPE_BYTES_MAX,
} from './frame.ts';
export type { FrameRead } from './frame.ts';
export { encodeMessage, encodeBody, writeMessage, decodeClientMessage, decodeServerMessage, isNodeAddress, NODE_ADDRESS_BYTES_MAX, NODES_MAX, PROTOCOL_VERSION, SEQ_MAX, U32_MAX } from './messages.ts';
export type {
  ClientMessage,
  ServerMessage,
  HelloMessage,
  RequestMessage,
  AckMessage,
  PingMessage,
  WelcomeMessage,
  NotPrimaryMessage,
  AcceptedMessage,
  OutputMessage,
  ErrorMessage,
  PongMessage,
  NodesMessage,
  WireLimits,
} from './messages.ts';
export { OutputSequencer } from './sequencer.ts';
export type { SequencerResult, SequencerStatus } from './sequencer.ts';
export { ClientServer, SERVER_LIMITS_DEFAULT, resolveServerLimits, isLoopback } from './server.ts';
export type {
  ClientServerOptions,
  ServerLimits,
  ServerEvent,
  NodeRole,
  SessionSnapshot,
  SessionTableSnapshot,
  BufferedOutput,
} from './server.ts';
export { DISCOVERED_MAX, FtClient, parseAddress } from './client.ts';
export { Fifo } from './fifo.ts';
export type { FtClientOptions, FtClientEvents, SessionTicket } from './client.ts';
export { NetError, ProtocolError } from './errors.ts';
export type { NetErrorCode, WireErrorCode } from './errors.ts';
