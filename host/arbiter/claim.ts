// What an arbiter promises, and the claim record both implementations store.
import { randomBytes } from 'node:crypto';
import { ArbiterCorruptError, ArbiterError } from './errors.ts';

/** One won epoch: who won it and when (by the winner's wall clock, informational only). */
export interface EpochClaim {
  epoch: number;
  nodeId: string;
  claimedAtMs: number;
}

/** The outcome of a claim: won it, or lost to `holder`, the highest claim at the time (epoch >= the one asked for). */
export type ClaimResult = { won: true; claim: EpochClaim } | { won: false; holder: EpochClaim };

/** Test-and-set on shared storage: at most one node ever wins each epoch, and epochs are won in order without gaps. */
export interface Arbiter {
  /** Where the claims live: `file:DIR/DEPLOYMENT` or `etcd:URLS/KEY`, for messages. */
  readonly where: string;
  /** The highest claimed epoch, or undefined if none yet. */
  current(): Promise<EpochClaim | undefined>;
  /**
   * Atomically claims exactly `epoch` for `nodeId`. Wins iff no node has claimed `epoch` or any higher one and
   * `epoch` = current()+1; a claim of a lower or equal epoch loses to the current holder; a higher one throws
   * FTW_ARBITER_GAP.
   */
  claim(epoch: number, nodeId: string): Promise<ClaimResult>;
  /** Releases the arbiter's resources; later calls throw FTW_ARBITER_CLOSED. Never un-claims anything. */
  close(): Promise<void>;
}

/** Epochs are written zero-padded to this many digits: every safe integer fits. */
export const EPOCH_DIGITS = 16;
/** A node id is at most this many UTF-8 bytes. */
export const NODE_ID_BYTES_MAX = 256;
/** A stored claim record is at most this many bytes; anything longer is corrupt. */
export const CLAIM_BYTES_MAX = 4096;
/** A deployment name: a path segment and an etcd key segment at once. */
export const DEPLOYMENT_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** The stored form of a claim: the public fields plus a random id that lets a retried write recognise itself. */
export interface ClaimRecord extends EpochClaim {
  claimId: string;
}

const CLAIM_ID_PATTERN = /^[0-9a-f]{32}$/;

/** Throws FTW_ARBITER_ARGUMENT unless `epoch` is a positive safe integer. */
export function checkEpoch(epoch: number, where: string): void {
  if (!Number.isSafeInteger(epoch) || epoch < 1) {
    throw new ArbiterError('FTW_ARBITER_ARGUMENT', `epoch must be a positive safe integer, got ${String(epoch)}`, where);
  }
}

/** Throws FTW_ARBITER_ARGUMENT unless `nodeId` is 1..NODE_ID_BYTES_MAX bytes without control characters. */
export function checkNodeId(nodeId: string, where: string): void {
  const problem = nodeIdProblem(nodeId);
  if (problem !== undefined) throw new ArbiterError('FTW_ARBITER_ARGUMENT', `node id ${problem}`, where);
}

function nodeIdProblem(nodeId: unknown): string | undefined {
  if (typeof nodeId !== 'string') return `must be a string, got ${typeof nodeId}`;
  const bytes = Buffer.byteLength(nodeId, 'utf8');
  if (bytes === 0) return 'must not be empty';
  if (bytes > NODE_ID_BYTES_MAX) return `is ${bytes} bytes, above node_id_bytes_max ${NODE_ID_BYTES_MAX}`;
  if (/[\u0000-\u001f\u007f]/.test(nodeId)) return 'must not contain control characters';
  return undefined;
}

/** A fresh record for a claim about to be attempted. */
export function newClaimRecord(epoch: number, nodeId: string): ClaimRecord {
  return { epoch, nodeId, claimedAtMs: Date.now(), claimId: randomBytes(16).toString('hex') };
}

/** The bytes stored for a claim: one line of JSON. */
export function encodeClaimRecord(record: ClaimRecord): string {
  const { epoch, nodeId, claimedAtMs, claimId } = record;
  return `${JSON.stringify({ epoch, nodeId, claimedAtMs, claimId })}\n`;
}

/** Parses a stored claim, checking every field (and the epoch against `expectedEpoch`); throws FTW_ARBITER_CORRUPT naming `where`. */
export function decodeClaimRecord(bytes: Uint8Array | string, where: string, expectedEpoch?: number): ClaimRecord {
  const size = typeof bytes === 'string' ? Buffer.byteLength(bytes) : bytes.length;
  if (size === 0) throw new ArbiterCorruptError('empty (a claim cut short?)', where, expectedEpoch);
  if (size > CLAIM_BYTES_MAX) throw new ArbiterCorruptError(`${size} bytes, above claim_bytes_max ${CLAIM_BYTES_MAX}`, where, expectedEpoch);
  const text = typeof bytes === 'string' ? bytes : Buffer.from(bytes).toString('utf8');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ArbiterCorruptError(`not JSON (${(error as Error).message})`, where, expectedEpoch);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ArbiterCorruptError('not a JSON object', where, expectedEpoch);
  }
  const record = value as Record<string, unknown>;
  const problem = recordProblem(record, expectedEpoch);
  if (problem !== undefined) throw new ArbiterCorruptError(problem, where, expectedEpoch);
  return record as unknown as ClaimRecord;
}

function recordProblem(record: Record<string, unknown>, expectedEpoch: number | undefined): string | undefined {
  const { epoch, nodeId, claimedAtMs, claimId } = record;
  if (typeof epoch !== 'number' || !Number.isSafeInteger(epoch) || epoch < 1) return `field epoch is ${JSON.stringify(epoch)}`;
  if (expectedEpoch !== undefined && epoch !== expectedEpoch) return `field epoch is ${epoch} but the name says ${expectedEpoch}`;
  const nodeIdIs = nodeIdProblem(nodeId);
  if (nodeIdIs !== undefined) return `field nodeId ${nodeIdIs}`;
  if (typeof claimedAtMs !== 'number' || !Number.isSafeInteger(claimedAtMs) || claimedAtMs < 0) {
    return `field claimedAtMs is ${JSON.stringify(claimedAtMs)}`;
  }
  if (typeof claimId !== 'string' || !CLAIM_ID_PATTERN.test(claimId)) return `field claimId is ${JSON.stringify(claimId)}`;
  return undefined;
}

/** The public view of a stored record. */
export function publicClaim(record: ClaimRecord): EpochClaim {
  return { epoch: record.epoch, nodeId: record.nodeId, claimedAtMs: record.claimedAtMs };
}

/** Throws FTW_ARBITER_CLOSED when `closed`. */
export function assertOpen(closed: boolean, where: string): void {
  if (closed) throw new ArbiterError('FTW_ARBITER_CLOSED', 'arbiter used after close()', where);
}
