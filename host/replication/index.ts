// host/replication: the primary and backup roles (docs/REPLICATION.md): the authenticated log channel,
// acks, heartbeats, the output rule, and failover through the arbiter.
export { startPrimary, Primary, defaultNodeId, SNAPSHOT_WAIT_MS } from './primary.ts';
export type { PrimaryOptions, ReplicaOptions, ReplicaState, ReplicaRole, ReplicaEvents, Endpoint, ClientEndpoint } from './primary.ts';
export {
  HEARTBEAT_INTERVAL_MS_DEFAULT,
  HEARTBEAT_TIMEOUT_MS_DEFAULT,
  BACKUP_WAIT_MS_DEFAULT,
  RETAINED_BYTES_MAX_DEFAULT,
  HELD_OUTPUTS_MAX_DEFAULT,
  INPUT_QUEUE_MAX_DEFAULT,
} from './primary.ts';
export { startBackup, Backup, CONNECT_TIMEOUT_MS_DEFAULT, LOG_QUEUE_BYTES_MAX_DEFAULT } from './backup.ts';
export type { BackupOptions } from './backup.ts';
export {
  LogPeer,
  MessageType,
  messageTypeName,
  checkSecret,
  u64Payload,
  u64sPayload,
  readU64,
  readU64s,
  HANDSHAKE_MESSAGE_BYTES_MAX,
  MESSAGE_BYTES_MAX_DEFAULT,
  MESSAGE_BYTES_LIMIT,
  HANDSHAKE_TIMEOUT_MS_DEFAULT,
  SECRET_BYTES_MIN,
} from './channel.ts';
export type { ChannelMessage, ChannelOptions } from './channel.ts';
export { OutputGate, InputFeeder } from './gate.ts';
export { LogArchive } from './archive.ts';
export { MemoryHistory, FileHistory } from './history.ts';
export type { LogHistory, HistoryReader, HistoryFrame } from './history.ts';
export { nodeMetrics, serveMetrics } from './metrics.ts';
export type { MeteredNode, ClientStats, NodeMetricsOptions, MetricsServerOptions } from './metrics.ts';
export { ReplicationError } from './errors.ts';
export type { ReplicationErrorCode } from './errors.ts';
export { encodeTransfer, decodeTransfer, TransferSender, TransferAssembler, TRANSFER_BYTES_MAX, TRANSFER_TABLE_BYTES_MAX } from './transfer.ts';
export type { Transfer } from './transfer.ts';
export { FrameTail } from './history.ts';
