// Messages of the client protocol (docs/PROTOCOL.md): plain msgpack maps with a string `type`. Decoding
// checks every field a message needs, by name, type and range, and ignores fields it does not know (so a
// later version may add some). Encoding writes plain maps only: no msgpackr records or extensions.
import { Packr, Unpackr } from 'msgpackr';
import { ProtocolError, type WireErrorCode } from './errors.ts';
import { encodeFrame } from './frame.ts';

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
export type ServerMessage = WelcomeMessage | NotPrimaryMessage | AcceptedMessage | OutputMessage | ErrorMessage | PongMessage;

// ---------------------------------------------------------------------------------------------------------
// Encoding

const packr = new Packr({ useRecords: false, variableMapSize: true, encodeUndefinedAsNil: false });

/** msgpackr writes integers above 32 bits as float64; the protocol wants msgpack integers, so widen them to bigint (int 64). */
function wire(value: unknown): unknown {
  if (typeof value === 'number') return Number.isInteger(value) && value > U32_MAX ? BigInt(value) : value;
  if (value instanceof Uint8Array || value === null || typeof value !== 'object') return value;
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

// ---------------------------------------------------------------------------------------------------------
// Decoding

const unpackr = new Unpackr({ mapsAsObjects: false, useRecords: false, copyBuffers: true });

/** The one msgpack value of a frame body, as a map with a string `type`. */
function decodeMap(body: Uint8Array): { map: Map<unknown, unknown>; type: string } {
  let value: unknown;
  try {
    value = unpackr.unpack(body);
  } catch (error) {
    throw new ProtocolError('malformed', `frame body of ${body.length} bytes is not one msgpack value (${(error as Error).message})`);
  }
  if (!(value instanceof Map)) throw new ProtocolError('bad_message', `frame body is a msgpack ${describe(value)}, not a map`);
  const type = value.get('type');
  if (typeof type !== 'string') throw new ProtocolError('bad_message', `message has no string field "type" (found ${describe(type)})`);
  return { map: value, type };
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
    return new Uint8Array(raw.buffer, raw.byteOffset, raw.length);
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
    default:
      throw new ProtocolError('unknown_type', `unknown message type ${JSON.stringify(type.slice(0, 64))} from a server`);
  }
}
