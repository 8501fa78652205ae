import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import {
  FrameDecoder,
  ProtocolError,
  decodeClientMessage,
  decodeServerMessage,
  encodeBody,
  encodeFrame,
  encodeMessage,
  readFrame,
  type ClientMessage,
  type ServerMessage,
} from '../../host/net/index.ts';
import { propertySeed, text } from './support.ts';

const limits = { frame_bytes_max: 1049600, payload_bytes_max: 1048576, requests_inflight_max: 64, outputs_buffered_max: 256, idle_timeout_ms: 60000 };

const clientMessages: ClientMessage[] = [
  { type: 'hello', version: 1, last_output_seq: 0 },
  { type: 'hello', version: 1, session: 7, session_epoch: 3, last_output_seq: 12 },
  { type: 'hello', version: 1, last_output_seq: 0, nodes: true },
  { type: 'request', session: 7, seq: 1, payload: text('SET a 1') },
  { type: 'request', session: 0xffffffff, seq: 2 ** 40, payload: new Uint8Array(0) },
  { type: 'ack', session: 7, output_seq: 5 },
  { type: 'ping' },
];

const serverMessages: ServerMessage[] = [
  { type: 'welcome', version: 1, epoch: 2, session: 7, session_epoch: 2, role: 'primary', resumed: true, accepted: 4, received: 5, outputs: 3, limits },
  { type: 'not_primary', epoch: 3, primary_hint: '127.0.0.1:7002' },
  { type: 'not_primary' },
  { type: 'accepted', session: 7, seq: 9 },
  { type: 'output', epoch: 2, session: 7, seq: 2 ** 33, payload: text('OK\n') },
  { type: 'error', code: 'seq_gap', message: 'request seq 5 of session 7, but the next expected is 3' },
  { type: 'pong' },
  { type: 'nodes', epoch: 4, addresses: ['127.0.0.1:7001', '[::1]:7002', 'node-b.example:7003'] },
];

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ProtocolError);
    return (error as ProtocolError).code;
  }
  throw new Error('expected a ProtocolError');
}

const packr = new Packr({ useRecords: false });
const body = (value: unknown): Uint8Array => packr.pack(value);

describe('messages', () => {
  it('round-trips every client and server message through encode and decode', () => {
    for (const m of clientMessages) expect(decodeClientMessage(encodeBody(m))).toEqual(m);
    for (const m of serverMessages) expect(decodeServerMessage(encodeBody(m))).toEqual(m);
  });

  it('writes integers above 32 bits as msgpack 64-bit integers, not floats', () => {
    const bytes = encodeBody({ type: 'accepted', session: 1, seq: 2 ** 40 + 1 });
    expect(bytes.includes(0xd3) || bytes.includes(0xcf)).toBe(true);
    expect(bytes.includes(0xcb)).toBe(false);
    expect(decodeServerMessage(bytes)).toEqual({ type: 'accepted', session: 1, seq: 2 ** 40 + 1 });
  });

  it('names what is wrong with a bad body', () => {
    expect(codeOf(() => decodeClientMessage(new Uint8Array([0x82, 0xa1, 0x61])))).toBe('malformed');
    expect(codeOf(() => decodeClientMessage(new Uint8Array([...body({ type: 'ping' }), 0x01])))).toBe('malformed');
    expect(codeOf(() => decodeClientMessage(new Uint8Array([0xc1])))).toBe('bad_message');
    expect(codeOf(() => decodeClientMessage(body([1, 2, 3])))).toBe('bad_message');
    expect(codeOf(() => decodeClientMessage(body({ kind: 'hello' })))).toBe('bad_message');
    expect(codeOf(() => decodeClientMessage(body({ type: 'launch' })))).toBe('unknown_type');
    expect(codeOf(() => decodeClientMessage(body({ type: 'request', session: 1, seq: 1, payload: 'text' })))).toBe('bad_message');
    expect(codeOf(() => decodeClientMessage(body({ type: 'request', session: 1, seq: 0, payload: new Uint8Array(1) })))).toBe('seq_out_of_range');
    expect(codeOf(() => decodeClientMessage(body({ type: 'request', session: 1, seq: 1.5, payload: new Uint8Array(1) })))).toBe('seq_out_of_range');
    expect(codeOf(() => decodeClientMessage(body({ type: 'request', session: 1, seq: 2n ** 60n, payload: new Uint8Array(1) })))).toBe('seq_out_of_range');
    expect(codeOf(() => decodeClientMessage(body({ type: 'request', session: 2 ** 32, seq: 1, payload: new Uint8Array(1) })))).toBe('bad_message');
    expect(codeOf(() => decodeClientMessage(body({ type: 'hello', version: 1, session: 3 })))).toBe('bad_message');
    expect(codeOf(() => decodeClientMessage(body({ type: 'ack', session: 1, output_seq: -1 })))).toBe('seq_out_of_range');
    expect(codeOf(() => decodeServerMessage(body({ type: 'welcome', role: 'backup' })))).toBe('bad_message');
    expect(codeOf(() => decodeClientMessage(body({ type: 'hello', version: 1, nodes: 1 })))).toBe('bad_message');
  });

  it('refuses a nodes message that is not 1..NODES_MAX host:port strings, naming the entry', () => {
    const bad = (addresses: unknown): string => {
      try {
        decodeServerMessage(body({ type: 'nodes', epoch: 1, addresses }));
      } catch (error) {
        expect(error).toBeInstanceOf(ProtocolError);
        expect((error as ProtocolError).code).toBe('bad_message');
        return (error as ProtocolError).message;
      }
      throw new Error('expected a ProtocolError');
    };
    expect(bad('127.0.0.1:7001')).toMatch(/nodes\.addresses is a .*not an array/);
    expect(bad([])).toMatch(/holds 0 addresses, not 1\.\.8/);
    expect(bad(Array.from({ length: 9 }, (_, i) => `127.0.0.1:${7000 + i}`))).toMatch(/holds 9 addresses/);
    expect(bad(['127.0.0.1:7001', 'no port'])).toMatch(/nodes\.addresses\[1\] is not a host:port/);
    expect(bad(['127.0.0.1:70000'])).toMatch(/nodes\.addresses\[0\]/);
    expect(bad([`${'h'.repeat(260)}:1`])).toMatch(/at most 255 bytes/);
    expect(bad([7001])).toMatch(/nodes\.addresses\[0\]/);
  });

  it('decodes any byte string to a message or a ProtocolError, never anything else', () => {
    const seed = propertySeed('random bodies');
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        for (const decode of [decodeClientMessage, decodeServerMessage]) {
          try {
            decode(bytes);
          } catch (error) {
            if (!(error instanceof ProtocolError)) throw error;
          }
        }
      }),
      { seed, numRuns: 2000 },
    );
  });
});

describe('frames', () => {
  const frames = [...clientMessages, ...serverMessages].map((m) => encodeMessage(m));
  const stream = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
  frames.reduce((offset, f) => (stream.set(f, offset), offset + f.length), 0);
  const bodies = frames.map((f) => Buffer.from(f.subarray(4)).toString('hex'));
  const ends = frames.reduce<number[]>((acc, f) => [...acc, (acc.at(-1) ?? 0) + f.length], []);

  it('readFrame says incomplete, with the bytes still needed, at every cut of a frame', () => {
    const frame = frames[2]!;
    for (let cut = 0; cut < frame.length; cut++) {
      const read = readFrame(frame.subarray(0, cut), 0, 1 << 20);
      expect(read.status).toBe('incomplete');
      if (read.status === 'incomplete') expect(read.bytes_needed).toBe(cut < 4 ? 4 - cut : frame.length - cut);
    }
    const whole = readFrame(frame, 0, 1 << 20);
    expect(whole.status === 'frame' && whole.end).toBe(frame.length);
  });

  it('the decoder yields exactly the whole frames before each cut of a stream, then the rest after it', () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      const decoder = new FrameDecoder(1 << 20);
      decoder.push(stream.subarray(0, cut));
      const got: string[] = [];
      for (let b = decoder.next(); b; b = decoder.next()) got.push(Buffer.from(b).toString('hex'));
      expect(got.length).toBe(ends.filter((e) => e <= cut).length);
      decoder.push(stream.subarray(cut));
      for (let b = decoder.next(); b; b = decoder.next()) got.push(Buffer.from(b).toString('hex'));
      expect(got).toEqual(bodies);
      expect(decoder.buffered).toBe(0);
    }
  });

  it('byte-by-byte feeding gives the same frames', () => {
    const decoder = new FrameDecoder(1 << 20);
    const got: Uint8Array[] = [];
    for (const byte of stream) {
      decoder.push(new Uint8Array([byte]));
      for (let b = decoder.next(); b; b = decoder.next()) got.push(b.slice());
    }
    expect(got).toEqual(frames.map((f) => f.subarray(4)));
  });

  it('refuses an oversized length as soon as the 4 length bytes are in, before any body', () => {
    const decoder = new FrameDecoder(1000);
    decoder.push(new Uint8Array([0, 0, 3]));
    expect(decoder.next()).toBeUndefined();
    decoder.push(new Uint8Array([0xe9])); // 1001
    expect(codeOf(() => decoder.next())).toBe('frame_too_large');
    expect(codeOf(() => readFrame(new Uint8Array([0xff, 0xff, 0xff, 0xff]), 0, 1 << 20))).toBe('frame_too_large');
    expect(codeOf(() => readFrame(new Uint8Array([0, 0, 0, 0]), 0, 1 << 20))).toBe('frame_empty');
  });

  it('accepts a frame of exactly frame_bytes_max', () => {
    const decoder = new FrameDecoder(100);
    decoder.push(encodeFrame(new Uint8Array(100)));
    expect(decoder.next()?.length).toBe(100);
  });
});
