// The log channel between a primary and its backup: one TCP connection, length-prefixed messages, and a
// shared-secret handshake (HMAC-SHA256 challenge-response in both directions) before any log byte flows.
// After the handshake every payload is encrypted and authenticated with AES-256-GCM under a per-connection,
// per-direction key, the nonce being the direction's message counter: a peer without the secret gets nothing
// (it is refused), someone watching the wire cannot read the log, and nobody can inject, replay, reorder or
// alter a message on an established connection.
//
// Wire: u32 LE body length, then the body: type u8, epoch u64 LE, payload. After the handshake the payload
// is AES-256-GCM(direction key, nonce = 4 zero bytes || counter u64 LE, associated data = type || epoch)
// and the body ends with the 16-byte tag.
import { createCipheriv, createDecipheriv, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type net from 'node:net';
import { ReplicationError } from './errors.ts';

export const MessageType = {
  CHALLENGE: 1, // primary -> backup: nonce_p (32)
  AUTH: 2, // backup -> primary: nonce_b (32), mac (32)
  AUTH_OK: 3, // primary -> backup: mac (32)
  REFUSED: 4, // either way: UTF-8 reason, then the connection closes
  HELLO: 5, // backup -> primary: next_seq u64 (the first log seq it needs), payload_max u64 (its client payload limit)
  FRAMES: 6, // primary -> backup: whole log frames, back to back
  ACK: 7, // backup -> primary: seq u64, the highest log seq received; echo u64, the newest primary stamp heard
  RELEASED: 8, // primary -> backup: seq u64, the highest log seq whose output the primary released
  HEARTBEAT: 9, // primary -> backup: stamp u64 (the primary's clock, µs); backup -> primary: echo u64
  PRIMARY: 10, // primary -> backup: UTF-8 "host:port" of its client service (the backup's not_primary hint)
  SYNCED: 11, // primary -> backup: seq u64; this backup holds every entry whose output the primary released: it may take over
  SESSIONS: 12, // primary -> joining backup: (session u32, epoch u64) LE records: the epoch each known session was opened in
  FORGET: 13, // primary -> backup: (session u32, at_seq u64) LE records: sessions the primary dropped, at that log seq
  SNAPSHOT: 14, // primary -> joining backup: total u64, offset u64, bytes: a piece of a state transfer (host/replication/transfer.ts)
  CLIENTS: 15, // backup -> primary: UTF-8 "host:port" of the backup's client service (the primary's `nodes` for clients)
} as const;
export type MessageTypeNumber = (typeof MessageType)[keyof typeof MessageType];

const TYPE_NAMES: Record<number, string> = Object.fromEntries(Object.entries(MessageType).map(([k, v]) => [v, k]));
export function messageTypeName(type: number): string {
  return TYPE_NAMES[type] ?? `unknown(${type})`;
}

const LENGTH_BYTES = 4;
const HEAD_BYTES = 9; // type + epoch
const MAC_BYTES = 32; // HMAC-SHA256, in the handshake
const TAG_BYTES = 16; // AES-256-GCM, on every message after it
const IV_BYTES = 12;
const CIPHER = 'aes-256-gcm';
const NONCE_BYTES = 32;
/** Before the handshake no message may be longer than this (a stranger cannot make us buffer much). */
export const HANDSHAKE_MESSAGE_BYTES_MAX = 256;
/** Default largest message body: a log frame of the default 1 MiB limit plus room, several frames batched. */
export const MESSAGE_BYTES_MAX_DEFAULT = 8 << 20;
export const MESSAGE_BYTES_LIMIT = 64 << 20;
export const HANDSHAKE_TIMEOUT_MS_DEFAULT = 2_000;
export const SECRET_BYTES_MIN = 16;
const REASON_BYTES_MAX = 200;

export interface ChannelMessage {
  type: MessageTypeNumber;
  epoch: number;
  payload: Uint8Array;
}

export interface ChannelOptions {
  secret: Uint8Array;
  /** The epoch written on every message this side sends. */
  epoch: () => number;
  message_bytes_max?: number;
  handshake_timeout_ms?: number;
  /** How to name the peer in messages when the socket is not connected yet (an outgoing connection). */
  peer_label?: string;
}

export interface LogPeerEvents {
  message: [message: ChannelMessage];
  /**
   * Every whole message of one socket read was emitted (and the connection is still open): the moment to
   * answer them all at once (one ACK for the FRAMES of a read, one release for the ACKs of a read).
   */
  drained: [];
  close: [reason: string];
}

/** Messages sent and received on one connection, by type (after the handshake); for tests and tuning. */
export type MessageCounts = Record<number, number>;

type Role = 'primary' | 'backup';
type State = 'wait_challenge' | 'wait_auth' | 'wait_auth_ok' | 'open' | 'closed';

/** Checks a shared secret: at least SECRET_BYTES_MIN bytes. */
export function checkSecret(secret: Uint8Array): void {
  if (!(secret instanceof Uint8Array) || secret.length < SECRET_BYTES_MIN) {
    throw new ReplicationError('FTW_REPL_OPTION', `the shared secret must be at least ${SECRET_BYTES_MIN} bytes (got ${secret?.length ?? 0})`);
  }
}

function hmac(key: Uint8Array, ...parts: Uint8Array[]): Buffer {
  const h = createHmac('sha256', key);
  for (const p of parts) h.update(p);
  return h.digest();
}

const LABEL_BACKUP = Buffer.from('ftwasm-replication-backup\0');
const LABEL_PRIMARY = Buffer.from('ftwasm-replication-primary\0');
const LABEL_P2B = Buffer.from('ftwasm-replication-key-p2b\0');
const LABEL_B2P = Buffer.from('ftwasm-replication-key-b2p\0');

export function u64Payload(value: number): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(value), true);
  return out;
}

/** A payload of several u64 LE values. */
export function u64sPayload(...values: number[]): Uint8Array {
  const out = new Uint8Array(8 * values.length);
  const view = new DataView(out.buffer);
  values.forEach((v, i) => view.setBigUint64(8 * i, BigInt(v), true));
  return out;
}

/** Reads exactly `count` u64 LE values, each at most 2^53-1. */
export function readU64s(payload: Uint8Array, count: number, what: string): number[] {
  if (payload.length !== 8 * count) throw new ReplicationError('FTW_REPL_PROTOCOL', `${what}: payload of ${payload.length} bytes, expected ${8 * count}`);
  const out: number[] = [];
  for (let i = 0; i < count; i++) out.push(readU64(payload.subarray(8 * i, 8 * i + 8), what));
  return out;
}

export function readU64(payload: Uint8Array, what: string): number {
  if (payload.length !== 8) throw new ReplicationError('FTW_REPL_PROTOCOL', `${what}: payload of ${payload.length} bytes, expected 8`);
  const value = new DataView(payload.buffer, payload.byteOffset, 8).getBigUint64(0, true);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new ReplicationError('FTW_REPL_PROTOCOL', `${what}: ${value} is beyond 2^53-1`);
  return Number(value);
}

/**
 * One end of the log channel over a connected socket. `ready` resolves once both sides proved the secret
 * (rejects with FTW_REPL_AUTH otherwise); only then are 'message' events emitted and send() allowed.
 */
export class LogPeer extends EventEmitter<LogPeerEvents> {
  readonly ready: Promise<void>;
  readonly peer: string;
  private state: State;
  private readonly message_bytes_max: number;
  private chunks: Buffer[] = [];
  private buffered = 0;
  private nonce_own = randomBytes(NONCE_BYTES);
  private nonce_peer: Buffer | undefined;
  private key_send: Buffer | undefined;
  private key_recv: Buffer | undefined;
  private counter_send = 0n;
  private counter_recv = 0n;
  /** GCM nonce: 4 zero bytes, then the direction's message counter (u64 LE); a key never sees one twice. */
  private readonly iv = Buffer.alloc(IV_BYTES);
  /** Messages sent / received after the handshake, by type. */
  readonly sent: MessageCounts = {};
  readonly received: MessageCounts = {};
  private settle: { resolve: () => void; reject: (e: Error) => void } | undefined;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly socket: net.Socket,
    private readonly role: Role,
    private readonly options: ChannelOptions,
  ) {
    super();
    checkSecret(options.secret);
    this.message_bytes_max = options.message_bytes_max ?? MESSAGE_BYTES_MAX_DEFAULT;
    if (!Number.isInteger(this.message_bytes_max) || this.message_bytes_max < 1024 || this.message_bytes_max > MESSAGE_BYTES_LIMIT) {
      throw new ReplicationError('FTW_REPL_OPTION', `message_bytes_max = ${this.message_bytes_max} is outside 1024..${MESSAGE_BYTES_LIMIT}`);
    }
    this.peer = socket.remoteAddress ? `${socket.remoteAddress}:${socket.remotePort}` : (options.peer_label ?? '?');
    this.state = role === 'primary' ? 'wait_auth' : 'wait_challenge';
    this.ready = new Promise<void>((resolve, reject) => (this.settle = { resolve, reject }));
    this.ready.catch(() => undefined); // observed by whoever awaits it; never an unhandled rejection
    const timeout_ms = options.handshake_timeout_ms ?? HANDSHAKE_TIMEOUT_MS_DEFAULT;
    this.timer = setTimeout(() => this.fail(new ReplicationError('FTW_REPL_AUTH', `no authentication from ${this.peer} within ${timeout_ms} ms`)), timeout_ms);
    this.timer.unref();
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (error) => this.fail(new ReplicationError('FTW_REPL_UNREACHABLE', `log channel to ${this.peer}: ${error.message}`, { cause: error })));
    socket.on('close', () => this.fail(new ReplicationError('FTW_REPL_UNREACHABLE', `log channel to ${this.peer} closed`)));
    if (role === 'primary') this.write(MessageType.CHALLENGE, [this.nonce_own]);
  }

  /** Re-reads the state after a handler that may have closed the connection. */
  private isClosed(): boolean {
    return this.state === 'closed';
  }

  get isOpen(): boolean {
    return this.state === 'open';
  }

  /** Sends one message (after the handshake); false if the connection is gone. */
  send(type: MessageTypeNumber, payload: Uint8Array = new Uint8Array(0)): boolean {
    return this.sendParts(type, [payload]);
  }

  /** Sends one message whose payload is `parts` back to back (copied once, into the message); false if gone. */
  sendParts(type: MessageTypeNumber, parts: readonly Uint8Array[]): boolean {
    if (this.state !== 'open') return false;
    this.write(type, parts);
    this.sent[type] = (this.sent[type] ?? 0) + 1;
    return true;
  }

  /** Sends a reason (authenticated when the handshake is done) and closes. */
  refuse(reason: string): void {
    if (this.state === 'closed') return;
    const text = Buffer.from(reason).subarray(0, REASON_BYTES_MAX);
    this.write(MessageType.REFUSED, [text]);
    this.fail(new ReplicationError('FTW_REPL_STATE', `refused ${this.peer}: ${reason}`), true);
  }

  /** Closes the connection; 'close' is emitted with the reason. */
  close(reason = 'closed by this side'): void {
    this.fail(new ReplicationError('FTW_REPL_STATE', reason));
  }

  /** Bytes written and not yet handed to the kernel: a sender streaming a lot waits for 'drain' past a bound. */
  get bufferedBytes(): number {
    return this.socket.writableLength;
  }

  /** Calls `then` once the socket's write buffer has drained (at once if it is empty). */
  whenDrained(then: () => void): void {
    if (this.socket.writableLength === 0) return then();
    this.socket.once('drain', then);
  }

  /** Stops (or restarts) reading from the socket: backpressure. */
  pause(): void {
    this.socket.pause();
  }
  resume(): void {
    this.socket.resume();
  }

  private write(type: number, parts: readonly Uint8Array[]): void {
    let payload_bytes = 0;
    for (const p of parts) payload_bytes += p.length;
    const sealed = this.key_send !== undefined;
    const body_bytes = HEAD_BYTES + payload_bytes + (sealed ? TAG_BYTES : 0);
    const head = Buffer.allocUnsafe(LENGTH_BYTES + HEAD_BYTES);
    head.writeUInt32LE(body_bytes, 0);
    head[LENGTH_BYTES] = type;
    head.writeBigUInt64LE(BigInt(this.options.epoch()), LENGTH_BYTES + 1);
    const pieces: Uint8Array[] = [head];
    if (sealed) {
      this.iv.writeBigUInt64LE(this.counter_send++, 4);
      const cipher = createCipheriv(CIPHER, this.key_send!, this.iv, { authTagLength: TAG_BYTES });
      cipher.setAAD(head.subarray(LENGTH_BYTES));
      for (const p of parts) pieces.push(cipher.update(p));
      pieces.push(cipher.final(), cipher.getAuthTag());
    } else {
      pieces.push(...parts);
    }
    // One buffer, one socket write: a message reaches the kernel whole or not at all, even if this process
    // is stopped right here (a RELEASED must never be half out while the outputs it announces wait).
    this.socket.write(Buffer.concat(pieces, LENGTH_BYTES + body_bytes));
  }

  private onData(chunk: Buffer): void {
    if (this.state === 'closed') return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    let messages = 0;
    try {
      while (this.buffered >= LENGTH_BYTES) {
        if (this.chunks[0]!.length < LENGTH_BYTES) this.chunks = [Buffer.concat(this.chunks)];
        const length = this.chunks[0]!.readUInt32LE(0);
        const max = this.state === 'open' ? this.message_bytes_max + HEAD_BYTES + TAG_BYTES : HANDSHAKE_MESSAGE_BYTES_MAX;
        if (length < HEAD_BYTES || length > max) {
          throw new ReplicationError('FTW_REPL_PROTOCOL', `message of ${length} bytes from ${this.peer} is outside ${HEAD_BYTES}..${max}${this.state === 'open' ? '' : ' (before authentication)'}`);
        }
        if (this.buffered < LENGTH_BYTES + length) break;
        // Joined once the whole message is here, not at every read of it (a large message comes in many).
        if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks)];
        const head = this.chunks[0]!;
        const body = head.subarray(LENGTH_BYTES, LENGTH_BYTES + length);
        const rest = head.subarray(LENGTH_BYTES + length);
        this.chunks = rest.length > 0 ? [rest] : [];
        this.buffered = rest.length;
        const open = this.state === 'open';
        this.onBody(body);
        if (this.isClosed()) return;
        if (open) messages++;
      }
      // Once per read: the handlers answer what this read brought all at once.
      if (messages > 0) this.emit('drained');
    } catch (error) {
      this.fail(error as Error);
    }
  }

  private onBody(body: Buffer): void {
    const type = body[0]!;
    const epochBig = body.readBigUInt64LE(1);
    if (epochBig > BigInt(Number.MAX_SAFE_INTEGER)) throw new ReplicationError('FTW_REPL_PROTOCOL', `epoch ${epochBig} from ${this.peer} is beyond 2^53-1`);
    const epoch = Number(epochBig);
    if (this.state !== 'open') return this.onHandshake(type, epoch, body.subarray(HEAD_BYTES));
    if (body.length < HEAD_BYTES + TAG_BYTES) throw new ReplicationError('FTW_REPL_PROTOCOL', `message from ${this.peer} too short for its tag`);
    const n = this.counter_recv++;
    this.iv.writeBigUInt64LE(n, 4);
    let payload: Buffer;
    try {
      const decipher = createDecipheriv(CIPHER, this.key_recv!, this.iv, { authTagLength: TAG_BYTES });
      decipher.setAAD(body.subarray(0, HEAD_BYTES));
      decipher.setAuthTag(body.subarray(body.length - TAG_BYTES));
      const first = decipher.update(body.subarray(HEAD_BYTES, body.length - TAG_BYTES));
      const last = decipher.final();
      payload = last.length === 0 ? first : Buffer.concat([first, last]);
    } catch {
      throw new ReplicationError('FTW_REPL_AUTH', `bad tag on ${messageTypeName(type)} message ${n} from ${this.peer}: forged, replayed or damaged`);
    }
    if (!(type in TYPE_NAMES) || type <= MessageType.AUTH_OK) {
      throw new ReplicationError('FTW_REPL_PROTOCOL', `unexpected ${messageTypeName(type)} message from ${this.peer}`);
    }
    this.received[type] = (this.received[type] ?? 0) + 1;
    // Decrypted into a buffer of its own: the caller may keep it after the chunk buffer is reused.
    this.emit('message', { type: type as MessageTypeNumber, epoch, payload: new Uint8Array(payload.buffer, payload.byteOffset, payload.length) });
  }

  private onHandshake(type: number, _epoch: number, payload: Buffer): void {
    if (type === MessageType.REFUSED) {
      throw new ReplicationError('FTW_REPL_AUTH', `${this.peer} refused the connection: ${payload.subarray(0, REASON_BYTES_MAX).toString('utf8')}`);
    }
    if (this.state === 'wait_challenge' && type === MessageType.CHALLENGE && payload.length === NONCE_BYTES) {
      this.nonce_peer = Buffer.from(payload);
      this.write(MessageType.AUTH, [Buffer.concat([this.nonce_own, hmac(this.options.secret, LABEL_BACKUP, this.nonce_peer, this.nonce_own)])]);
      this.state = 'wait_auth_ok';
      return;
    }
    if (this.state === 'wait_auth' && type === MessageType.AUTH && payload.length === NONCE_BYTES + MAC_BYTES) {
      this.nonce_peer = Buffer.from(payload.subarray(0, NONCE_BYTES));
      const expected = hmac(this.options.secret, LABEL_BACKUP, this.nonce_own, this.nonce_peer);
      if (!timingSafeEqual(expected, payload.subarray(NONCE_BYTES))) {
        this.write(MessageType.REFUSED, [Buffer.from('authentication failed: the peer does not hold the shared secret')]);
        return this.fail(new ReplicationError('FTW_REPL_AUTH', `backup at ${this.peer} failed authentication: it does not hold the shared secret`), true);
      }
      this.write(MessageType.AUTH_OK, [hmac(this.options.secret, LABEL_PRIMARY, this.nonce_peer, this.nonce_own)]);
      return this.open();
    }
    if (this.state === 'wait_auth_ok' && type === MessageType.AUTH_OK && payload.length === MAC_BYTES) {
      const expected = hmac(this.options.secret, LABEL_PRIMARY, this.nonce_own, this.nonce_peer!);
      if (!timingSafeEqual(expected, payload)) {
        throw new ReplicationError('FTW_REPL_AUTH', `primary at ${this.peer} failed authentication: it does not hold the shared secret`);
      }
      return this.open();
    }
    throw new ReplicationError('FTW_REPL_AUTH', `unexpected ${messageTypeName(type)} message (${payload.length} bytes) from ${this.peer} during authentication`);
  }

  private open(): void {
    const [nonce_p, nonce_b] = this.role === 'primary' ? [this.nonce_own, this.nonce_peer!] : [this.nonce_peer!, this.nonce_own];
    const p2b = hmac(this.options.secret, LABEL_P2B, nonce_p, nonce_b);
    const b2p = hmac(this.options.secret, LABEL_B2P, nonce_p, nonce_b);
    [this.key_send, this.key_recv] = this.role === 'primary' ? [p2b, b2p] : [b2p, p2b];
    this.state = 'open';
    clearTimeout(this.timer);
    this.settle?.resolve();
  }

  private fail(error: Error, flush = false): void {
    if (this.state === 'closed') return;
    const wasOpen = this.state === 'open';
    this.state = 'closed';
    clearTimeout(this.timer);
    this.chunks = [];
    this.buffered = 0;
    if (flush) {
      // Let the last message (a refusal) reach the peer, but never wait on it for long.
      this.socket.end();
      setTimeout(() => this.socket.destroy(), 1_000).unref();
    } else {
      this.socket.destroy();
    }
    this.settle?.reject(error);
    if (wasOpen) this.emit('close', error.message);
  }
}
