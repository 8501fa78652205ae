// Messages of the client protocol (docs/PROTOCOL.md): plain msgpack maps with a string `type`. Decoding
// checks every field a message needs, by name, type and range, and ignores fields it does not know (so a
// later version may add some). Encoding writes plain maps only: no msgpackr records or extensions.
import { Packr, Unpackr } from 'msgpackr';
import { ProtocolError, type WireErrorCode } from './errors.ts';
import { encodeFrame, type WriteBatch } from './frame.ts';

export const PROTOCOL_VERSION = 1;
export const U32_MAX = 0xffffffff;
/** Sequence numbers and epochs are integers up to 2^53-1, so every language can hold them exactly. */
export const SEQ_MAX = Number.MAX_SAFE_INTEGER;

/** Limits the server states in `welcome`, so the client can stay inside them. */
export interface WireLimits {
  frame_bytes_max: number;
  payload_bytes_max: number;
  requests_inflight_max: number;
  outputs_buffered_max: number;
  idle_timeout_ms: number;
}

export interface HelloMessage {
  type: 'hello';
  version: number;
  /** Present (with session_epoch) to resume a session; absent to open a new one. */
  session?: number;
  session_epoch?: number;
  /** Highest output seq the client holds: the server acks up to it and resends what follows. */
  last_output_seq: number;
  /** Asks for `nodes` messages: the client addresses of the replication group, now and when they change. */
  nodes?: boolean;
}
export interface RequestMessage {
  type: 'request';
  session: number;
  seq: number;
  payload: Uint8Array;
}
export interface AckMessage {
  type: 'ack';
  session: number;
  output_seq: number;
}
export interface PingMessage {
  type: 'ping';
}
export type ClientMessage = HelloMessage | RequestMessage | AckMessage | PingMessage;

export interface WelcomeMessage {
  type: 'welcome';
  version: number;
  epoch: number;
  session: number;
  session_epoch: number;
  role: 'primary';
  /** True when the hello's session was found and resumed; false when this is a new session. */
  resumed: boolean;
  /** Every request seq <= accepted is durably in the log. */
  accepted: number;
  /** Highest request seq this server has taken (>= accepted); a new client instance resuming numbers from here + 1. */
  received: number;
  /** Highest output seq the session has produced so far. */
  outputs: number;
  limits: WireLimits;
}
export interface NotPrimaryMessage {
  type: 'not_primary';
  epoch?: number;
  /** `host:port` of the primary, when this node knows it. */
  primary_hint?: string;
}
export interface AcceptedMessage {
  type: 'accepted';
  session: number;
  seq: number;
}
export interface OutputMessage {
  type: 'output';
  epoch: number;
  session: number;
  seq: number;
  payload: Uint8Array;
}
export interface ErrorMessage {
  type: 'error';
  code: string;
  message: string;
}
export interface PongMessage {
  type: 'pong';
}
/** Where clients reach the nodes of the primary's replication group (itself first), for a hello that asked. */
export interface NodesMessage {
  type: 'nodes';
  epoch: number;
  addresses: string[];
}
export type ServerMessage = WelcomeMessage | NotPrimaryMessage | AcceptedMessage | OutputMessage | ErrorMessage | PongMessage | NodesMessage;

/** At most this many addresses in a `nodes` message, each `host:port` of at most NODE_ADDRESS_BYTES_MAX bytes. */
export const NODES_MAX = 8;
export const NODE_ADDRESS_BYTES_MAX = 255;

/** A client address as `nodes` and `primary_hint` carry it: host:port (an IPv6 host in brackets), no spaces. */
export function isNodeAddress(text: string): boolean {
  return Buffer.byteLength(text) <= NODE_ADDRESS_BYTES_MAX && /^[^\s]+:\d{1,5}$/.test(text) && Number(text.slice(text.lastIndexOf(':') + 1)) <= 65535;
}

// ---------------------------------------------------------------------------------------------------------
// Encoding

const packr = new Packr({ useRecords: false, variableMapSize: true, encodeUndefinedAsNil: false });

/** msgpackr writes integers above 32 bits as float64; the protocol wants msgpack integers, so widen them to bigint (int 64). */
function wire(value: unknown): unknown {
  if (typeof value === 'number') return Number.isInteger(value) && value > U32_MAX ? BigInt(value) : value;
  if (value instanceof Uint8Array || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map(wire);
  const out: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(value)) if (field !== undefined) out[key] = wire(field);
  return out;
}

/** The msgpack body of a message (no length prefix). */
export function encodeBody(message: ClientMessage | ServerMessage): Uint8Array {
  return packr.pack(wire(message));
}

/** A whole frame: length prefix and msgpack body. */
export function encodeMessage(message: ClientMessage | ServerMessage): Uint8Array {
  return encodeFrame(encodeBody(message));
}

// The messages of every request's path (request, ack, accepted, output) are written straight into the
// connection's WriteBatch, byte for byte as encodeBody writes them (test/net/batch.test.ts checks it):
// fixmap, fixstr keys in the same order, integers in their smallest msgpack form (int 64 above 32 bits),
// payload as bin. Anything else, or a field outside what this path handles, goes through encodeBody.

const ascii = (s: string): Uint8Array => Uint8Array.from([0xa0 | s.length, ...Array.from(s, (c) => c.charCodeAt(0))]);
const K_TYPE = ascii('type');
const K_SESSION = ascii('session');
const K_SEQ = ascii('seq');
const K_EPOCH = ascii('epoch');
const K_PAYLOAD = ascii('payload');
const K_OUTPUT_SEQ = ascii('output_seq');
const TYPE_ACCEPTED = ascii('accepted');
const TYPE_OUTPUT = ascii('output');
const TYPE_REQUEST = ascii('request');
const TYPE_ACK = ascii('ack');
/** The map header, key "type" and its value: the fixed start of each of those messages. */
const HEAD_ACCEPTED = Uint8Array.from([0x83, ...K_TYPE, ...TYPE_ACCEPTED]);
const HEAD_OUTPUT = Uint8Array.from([0x85, ...K_TYPE, ...TYPE_OUTPUT]);
const HEAD_REQUEST = Uint8Array.from([0x84, ...K_TYPE, ...TYPE_REQUEST]);
const HEAD_ACK = Uint8Array.from([0x83, ...K_TYPE, ...TYPE_ACK]);

function isUint(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/** Bytes of a non-negative safe integer in msgpack. */
function uintSize(n: number): number {
  return n < 0x80 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : n <= U32_MAX ? 5 : 9;
}

function putUint(buf: Uint8Array, at: number, n: number): number {
  if (n < 0x80) {
    buf[at] = n;
    return at + 1;
  }
  if (n < 0x100) {
    buf[at] = 0xcc;
    buf[at + 1] = n;
    return at + 2;
  }
  if (n < 0x10000) {
    buf[at] = 0xcd;
    buf[at + 1] = n >>> 8;
    buf[at + 2] = n & 0xff;
    return at + 3;
  }
  let hi = 0;
  if (n <= U32_MAX) {
    buf[at++] = 0xce;
  } else {
    buf[at++] = 0xd3;
    hi = Math.floor(n / 0x100000000);
    buf[at++] = hi >>> 24;
    buf[at++] = (hi >>> 16) & 0xff;
    buf[at++] = (hi >>> 8) & 0xff;
    buf[at++] = hi & 0xff;
  }
  const lo = n >>> 0;
  buf[at] = lo >>> 24;
  buf[at + 1] = (lo >>> 16) & 0xff;
  buf[at + 2] = (lo >>> 8) & 0xff;
  buf[at + 3] = lo & 0xff;
  return at + 4;
}

function binHeaderSize(length: number): number {
  return length < 0x100 ? 2 : length < 0x10000 ? 3 : 5;
}

function putBin(buf: Uint8Array, at: number, bytes: Uint8Array): number {
  const n = bytes.length;
  if (n < 0x100) {
    buf[at++] = 0xc4;
    buf[at++] = n;
  } else if (n < 0x10000) {
    buf[at++] = 0xc5;
    buf[at++] = n >>> 8;
    buf[at++] = n & 0xff;
  } else {
    buf[at++] = 0xc6;
    buf[at++] = n >>> 24;
    buf[at++] = (n >>> 16) & 0xff;
    buf[at++] = (n >>> 8) & 0xff;
    buf[at++] = n & 0xff;
  }
  buf.set(bytes, at);
  return at + n;
}

function put(buf: Uint8Array, at: number, bytes: Uint8Array): number {
  buf.set(bytes, at);
  return at + bytes.length;
}

/** Queues one message as a frame on `batch`. */
export function writeMessage(batch: WriteBatch, message: ClientMessage | ServerMessage): void {
  switch (message.type) {
    case 'accepted': {
      const { session, seq } = message;
      if (!isUint(session) || !isUint(seq)) break;
      const length = HEAD_ACCEPTED.length + K_SESSION.length + uintSize(session) + K_SEQ.length + uintSize(seq);
      let at = batch.reserve(length);
      const buf = batch.buf;
      at = put(buf, at, HEAD_ACCEPTED);
      at = putUint(buf, put(buf, at, K_SESSION), session);
      putUint(buf, put(buf, at, K_SEQ), seq);
      return;
    }
    case 'output': {
      const { epoch, session, seq, payload } = message;
      if (!isUint(epoch) || !isUint(session) || !isUint(seq) || !(payload instanceof Uint8Array)) break;
      const length =
        HEAD_OUTPUT.length + K_EPOCH.length + uintSize(epoch) + K_SESSION.length + uintSize(session) + K_SEQ.length + uintSize(seq) + K_PAYLOAD.length + binHeaderSize(payload.length) + payload.length;
      let at = batch.reserve(length);
      const buf = batch.buf;
      at = put(buf, at, HEAD_OUTPUT);
      at = putUint(buf, put(buf, at, K_EPOCH), epoch);
      at = putUint(buf, put(buf, at, K_SESSION), session);
      at = putUint(buf, put(buf, at, K_SEQ), seq);
      putBin(buf, put(buf, at, K_PAYLOAD), payload);
      return;
    }
    case 'request': {
      const { session, seq, payload } = message;
      if (!isUint(session) || !isUint(seq) || !(payload instanceof Uint8Array)) break;
      const length = HEAD_REQUEST.length + K_SESSION.length + uintSize(session) + K_SEQ.length + uintSize(seq) + K_PAYLOAD.length + binHeaderSize(payload.length) + payload.length;
      let at = batch.reserve(length);
      const buf = batch.buf;
      at = put(buf, at, HEAD_REQUEST);
      at = putUint(buf, put(buf, at, K_SESSION), session);
      at = putUint(buf, put(buf, at, K_SEQ), seq);
      putBin(buf, put(buf, at, K_PAYLOAD), payload);
      return;
    }
    case 'ack': {
      const { session, output_seq } = message;
      if (!isUint(session) || !isUint(output_seq)) break;
      const length = HEAD_ACK.length + K_SESSION.length + uintSize(session) + K_OUTPUT_SEQ.length + uintSize(output_seq);
      let at = batch.reserve(length);
      const buf = batch.buf;
      at = put(buf, at, HEAD_ACK);
      at = putUint(buf, put(buf, at, K_SESSION), session);
      putUint(buf, put(buf, at, K_OUTPUT_SEQ), output_seq);
      return;
    }
  }
  batch.push(encodeBody(message));
}

// ---------------------------------------------------------------------------------------------------------
// Decoding

const unpackr = new Unpackr({ mapsAsObjects: false, useRecords: false, copyBuffers: true });

/** The one msgpack value of a frame body, as a map with a string `type`. */
function decodeMap(body: Uint8Array): { map: Map<unknown, unknown>; type: string } {
  let value: unknown = readFlatMap(body);
  if (value === undefined) {
    try {
      value = unpackr.unpack(body);
    } catch (error) {
      throw new ProtocolError('malformed', `frame body of ${body.length} bytes is not one msgpack value (${(error as Error).message})`);
    }
  }
  if (!(value instanceof Map)) throw new ProtocolError('bad_message', `frame body is a msgpack ${describe(value)}, not a map`);
  const type = value.get('type');
  if (typeof type !== 'string') throw new ProtocolError('bad_message', `message has no string field "type" (found ${describe(type)})`);
  return { map: value, type };
}

/**
 * The common case read without msgpackr: a body that is exactly one fixmap of ASCII fixstr keys and values
 * that are nil, booleans, integers of at most 32 bits, ASCII strings or bin (copied). The result is the
 * Map msgpackr would return. Anything else (and anything malformed) gives undefined: msgpackr decides.
 */
export function readFlatMap(body: Uint8Array): Map<unknown, unknown> | undefined {
  const end = body.length;
  if (end === 0 || (body[0]! & 0xf0) !== 0x80) return undefined;
  const map = new Map<unknown, unknown>();
  let at = 1;
  for (let n = body[0]! & 0x0f; n > 0; n--) {
    if (at >= end) return undefined;
    const k = body[at]!;
    if ((k & 0xe0) !== 0xa0) return undefined;
    const key = asciiAt(body, at + 1, k & 0x1f);
    if (key === undefined) return undefined;
    at += 1 + (k & 0x1f);
    if (at >= end) return undefined;
    const b = body[at]!;
    let value: unknown;
    let size: number;
    if (b < 0x80) {
      value = b;
      size = 1;
    } else if (b >= 0xe0) {
      value = b - 0x100;
      size = 1;
    } else if ((b & 0xe0) === 0xa0) {
      size = 1 + (b & 0x1f);
      value = asciiAt(body, at + 1, b & 0x1f);
      if (value === undefined) return undefined;
    } else {
      switch (b) {
        case 0xc0:
          value = null;
          size = 1;
          break;
        case 0xc2:
        case 0xc3:
          value = b === 0xc3;
          size = 1;
          break;
        case 0xcc:
          value = body[at + 1];
          size = 2;
          break;
        case 0xcd:
          value = (body[at + 1]! << 8) | body[at + 2]!;
          size = 3;
          break;
        case 0xce:
          value = ((body[at + 1]! << 24) | (body[at + 2]! << 16) | (body[at + 3]! << 8) | body[at + 4]!) >>> 0;
          size = 5;
          break;
        case 0xc4:
        case 0xc5:
        case 0xc6: {
          const header = b === 0xc4 ? 2 : b === 0xc5 ? 3 : 5;
          if (at + header > end) return undefined;
          const length =
            b === 0xc4 ? body[at + 1]! : b === 0xc5 ? (body[at + 1]! << 8) | body[at + 2]! : ((body[at + 1]! << 24) | (body[at + 2]! << 16) | (body[at + 3]! << 8) | body[at + 4]!) >>> 0;
          size = header + length;
          if (at + size > end) return undefined;
          value = Uint8Array.prototype.slice.call(body, at + header, at + size);
          break;
        }
        default:
          return undefined;
      }
    }
    at += size;
    if (at > end) return undefined;
    map.set(key, value);
  }
  return at === end ? map : undefined;
}

/** Every key and type name of the protocol, by length: readFlatMap hands out these strings rather than building new ones. */
const KNOWN_STRINGS: string[][] = [];
for (const s of [
  'type', 'version', 'session', 'session_epoch', 'last_output_seq', 'seq', 'payload', 'output_seq', 'epoch', 'role', 'resumed',
  'accepted', 'received', 'outputs', 'limits', 'frame_bytes_max', 'payload_bytes_max', 'requests_inflight_max', 'outputs_buffered_max',
  'idle_timeout_ms', 'primary_hint', 'code', 'message', 'hello', 'request', 'ack', 'ping', 'welcome', 'not_primary', 'output', 'error',
  'pong', 'primary',
]) {
  (KNOWN_STRINGS[s.length] ??= []).push(s);
}

/** The ASCII string of `length` bytes at `at`, or undefined if it runs past the end or is not ASCII. */
function asciiAt(body: Uint8Array, at: number, length: number): string | undefined {
  if (at + length > body.length) return undefined;
  const known = KNOWN_STRINGS[length];
  if (known !== undefined) {
    next: for (const k of known) {
      for (let i = 0; i < length; i++) if (k.charCodeAt(i) !== body[at + i]) continue next;
      return k;
    }
  }
  let s = '';
  for (let i = at; i < at + length; i++) {
    const c = body[i]!;
    if (c >= 0x80) return undefined;
    s += String.fromCharCode(c);
  }
  return s;
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'nil';
  if (value instanceof Uint8Array) return 'bin';
  if (value instanceof Map) return 'map';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'object') return `extension (${value.constructor?.name ?? 'object'})`;
  return typeof value;
}

/** Reads the message's fields, each checked for presence, type and range. */
class Fields {
  constructor(
    private readonly map: Map<unknown, unknown>,
    private readonly type: string,
  ) {}

  has(name: string): boolean {
    return this.map.has(name) && this.map.get(name) !== null;
  }

  /** An integer in min..max; a float holding an exact integer is accepted, a bigint within range too. */
  int(name: string, min: number, max: number, range_code: WireErrorCode = 'bad_message'): number {
    const raw = this.map.get(name);
    if (raw === undefined || raw === null) throw new ProtocolError('bad_message', `${this.type}.${name} is missing`);
    if (typeof raw !== 'number' && typeof raw !== 'bigint') {
      throw new ProtocolError('bad_message', `${this.type}.${name} is a ${describe(raw)}, not an integer`);
    }
    const value = typeof raw === 'bigint' ? (raw >= BigInt(min) && raw <= BigInt(max) ? Number(raw) : NaN) : raw;
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new ProtocolError(range_code, `${this.type}.${name} = ${String(raw)} is outside ${min}..${max}`);
    }
    return value;
  }

  optionalInt(name: string, min: number, max: number, range_code: WireErrorCode = 'bad_message'): number | undefined {
    return this.has(name) ? this.int(name, min, max, range_code) : undefined;
  }

  bin(name: string): Uint8Array {
    const raw = this.map.get(name);
    if (!(raw instanceof Uint8Array)) throw new ProtocolError('bad_message', `${this.type}.${name} is a ${describe(raw)}, not bin`);
    // msgpackr hands out a Node Buffer (a copy, copyBuffers); give callers a plain Uint8Array over it.
    return raw.constructor === Uint8Array ? raw : new Uint8Array(raw.buffer, raw.byteOffset, raw.length);
  }

  str(name: string): string {
    const raw = this.map.get(name);
    if (typeof raw !== 'string') throw new ProtocolError('bad_message', `${this.type}.${name} is a ${describe(raw)}, not a string`);
    return raw;
  }

  bool(name: string): boolean {
    const raw = this.map.get(name);
    if (typeof raw !== 'boolean') throw new ProtocolError('bad_message', `${this.type}.${name} is a ${describe(raw)}, not a boolean`);
    return raw;
  }

  /** An array of 1..NODES_MAX node addresses (isNodeAddress). */
  addresses(name: string): string[] {
    const raw = this.map.get(name);
    if (!Array.isArray(raw)) throw new ProtocolError('bad_message', `${this.type}.${name} is a ${describe(raw)}, not an array`);
    if (raw.length === 0 || raw.length > NODES_MAX) throw new ProtocolError('bad_message', `${this.type}.${name} holds ${raw.length} addresses, not 1..${NODES_MAX}`);
    for (const [i, a] of raw.entries()) {
      if (typeof a !== 'string' || !isNodeAddress(a)) {
        throw new ProtocolError('bad_message', `${this.type}.${name}[${i}] is not a host:port of at most ${NODE_ADDRESS_BYTES_MAX} bytes`);
      }
    }
    return raw as string[];
  }

  nested(name: string): Fields {
    const raw = this.map.get(name);
    if (!(raw instanceof Map)) throw new ProtocolError('bad_message', `${this.type}.${name} is a ${describe(raw)}, not a map`);
    return new Fields(raw, `${this.type}.${name}`);
  }
}

/** Decodes a frame body the server received. Throws ProtocolError naming what was wrong. */
export function decodeClientMessage(body: Uint8Array): ClientMessage {
  const { map, type } = decodeMap(body);
  const f = new Fields(map, type);
  switch (type) {
    case 'hello': {
      const hello: HelloMessage = { type, version: f.int('version', 0, U32_MAX), last_output_seq: f.optionalInt('last_output_seq', 0, SEQ_MAX, 'seq_out_of_range') ?? 0 };
      const session = f.optionalInt('session', 0, U32_MAX);
      const session_epoch = f.optionalInt('session_epoch', 0, SEQ_MAX);
      if ((session === undefined) !== (session_epoch === undefined)) {
        throw new ProtocolError('bad_message', 'hello.session and hello.session_epoch come together or not at all');
      }
      if (session !== undefined) Object.assign(hello, { session, session_epoch });
      if (f.has('nodes') && f.bool('nodes')) hello.nodes = true;
      return hello;
    }
    case 'request':
      return { type, session: f.int('session', 0, U32_MAX), seq: f.int('seq', 1, SEQ_MAX, 'seq_out_of_range'), payload: f.bin('payload') };
    case 'ack':
      return { type, session: f.int('session', 0, U32_MAX), output_seq: f.int('output_seq', 0, SEQ_MAX, 'seq_out_of_range') };
    case 'ping':
      return { type };
    default:
      throw new ProtocolError('unknown_type', `unknown message type ${JSON.stringify(type.slice(0, 64))} from a client`);
  }
}

/** Decodes a frame body the client received. Throws ProtocolError naming what was wrong. */
export function decodeServerMessage(body: Uint8Array): ServerMessage {
  const { map, type } = decodeMap(body);
  const f = new Fields(map, type);
  switch (type) {
    case 'welcome': {
      const role = f.str('role');
      if (role !== 'primary') throw new ProtocolError('bad_message', `welcome.role = ${JSON.stringify(role)}, expected "primary"`);
      const l = f.nested('limits');
      return {
        type,
        version: f.int('version', 0, U32_MAX),
        epoch: f.int('epoch', 0, SEQ_MAX),
        session: f.int('session', 0, U32_MAX),
        session_epoch: f.int('session_epoch', 0, SEQ_MAX),
        role,
        resumed: f.bool('resumed'),
        accepted: f.int('accepted', 0, SEQ_MAX),
        received: f.int('received', 0, SEQ_MAX),
        outputs: f.int('outputs', 0, SEQ_MAX),
        limits: {
          frame_bytes_max: l.int('frame_bytes_max', 1, U32_MAX),
          payload_bytes_max: l.int('payload_bytes_max', 0, U32_MAX),
          requests_inflight_max: l.int('requests_inflight_max', 1, U32_MAX),
          outputs_buffered_max: l.int('outputs_buffered_max', 1, U32_MAX),
          idle_timeout_ms: l.int('idle_timeout_ms', 1, SEQ_MAX),
        },
      };
    }
    case 'not_primary': {
      const message: NotPrimaryMessage = { type };
      const epoch = f.optionalInt('epoch', 0, SEQ_MAX);
      if (epoch !== undefined) message.epoch = epoch;
      if (f.has('primary_hint')) message.primary_hint = f.str('primary_hint');
      return message;
    }
    case 'accepted':
      return { type, session: f.int('session', 0, U32_MAX), seq: f.int('seq', 1, SEQ_MAX, 'seq_out_of_range') };
    case 'output':
      return {
        type,
        epoch: f.int('epoch', 0, SEQ_MAX),
        session: f.int('session', 0, U32_MAX),
        seq: f.int('seq', 1, SEQ_MAX, 'seq_out_of_range'),
        payload: f.bin('payload'),
      };
    case 'error':
      return { type, code: f.str('code'), message: f.str('message') };
    case 'pong':
      return { type };
    case 'nodes':
      return { type, epoch: f.int('epoch', 0, SEQ_MAX), addresses: f.addresses('addresses') };
    default:
      throw new ProtocolError('unknown_type', `unknown message type ${JSON.stringify(type.slice(0, 64))} from a server`);
  }
}
