// The log channel's protection after the handshake, seen from the wire: a proxy between a primary's and a
// backup's LogPeer records every message and may alter, repeat or drop one. The payloads must never show in
// clear, and any change to a message must close the connection with FTW_REPL_AUTH naming the message.
import { afterEach, describe, expect, it } from 'vitest';
import net from 'node:net';
import { LogPeer, MessageType, type ChannelMessage } from '../../host/replication/index.ts';

const SECRET = new TextEncoder().encode('correct horse battery staple 0123');
const WAIT_MS_MAX = 10_000;
const cleanups: Array<() => unknown> = [];

afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

/** What the proxy does with the primary -> backup message of this index (0 is CHALLENGE, 1 AUTH_OK, 2.. sealed). */
type Tamper = (index: number, message: Buffer) => Buffer[];

/** Splits a byte stream into whole channel messages (u32 LE length + body). */
function messageSplitter(onMessage: (m: Buffer) => void): (chunk: Buffer) => void {
  let buffered = Buffer.alloc(0);
  return (chunk) => {
    buffered = Buffer.concat([buffered, chunk]);
    while (buffered.length >= 4 && buffered.length >= 4 + buffered.readUInt32LE(0)) {
      const length = 4 + buffered.readUInt32LE(0);
      onMessage(buffered.subarray(0, length));
      buffered = buffered.subarray(length);
    }
  };
}

/**
 * A primary LogPeer and a backup LogPeer joined through a recording proxy on 127.0.0.1. `tamper` sees every
 * primary -> backup message whole and returns what to forward instead.
 */
async function pairThroughProxy(tamper: Tamper = (_i, m) => [m]) {
  const wire = { toBackup: [] as Buffer[], toPrimary: [] as Buffer[] };
  let primaryPeer: LogPeer | undefined;
  const primaryServer = net.createServer((socket) => {
    primaryPeer = new LogPeer(socket, 'primary', { secret: SECRET, epoch: () => 7 });
  });
  const proxy = net.createServer((fromBackup) => {
    const toPrimary = net.connect((primaryServer.address() as net.AddressInfo).port, '127.0.0.1');
    let index = 0;
    toPrimary.on(
      'data',
      messageSplitter((m) => {
        wire.toBackup.push(Buffer.from(m));
        for (const out of tamper(index++, Buffer.from(m))) fromBackup.write(out);
      }),
    );
    fromBackup.on('data', (d: Buffer) => {
      wire.toPrimary.push(Buffer.from(d));
      toPrimary.write(d);
    });
    const end = () => (fromBackup.destroy(), toPrimary.destroy());
    toPrimary.on('close', end).on('error', end);
    fromBackup.on('close', end).on('error', end);
  });
  for (const server of [primaryServer, proxy]) {
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    cleanups.push(() => server.close());
  }
  const backup = new LogPeer(net.connect((proxy.address() as net.AddressInfo).port, '127.0.0.1'), 'backup', { secret: SECRET, epoch: () => 7 });
  cleanups.push(() => backup.close(), () => primaryPeer?.close());
  await backup.ready;
  await until(() => primaryPeer?.isOpen === true, 'the primary side to open');
  const received: ChannelMessage[] = [];
  backup.on('message', (m) => received.push(m));
  const closed = new Promise<string>((resolve) => backup.on('close', resolve));
  return { primary: primaryPeer!, backup, wire, received, closed };
}

async function until(cond: () => boolean, what: string): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > WAIT_MS_MAX) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const MARKER = Buffer.from('SET password hunter2-hunter2-hunter2');

describe('the log channel on the wire', () => {
  it('encrypts every payload after the handshake: the peer reads it back, the wire never shows it', async () => {
    const { primary, backup, wire, received } = await pairThroughProxy();
    const frames = Buffer.concat([MARKER, Buffer.alloc(1000, 0x41), MARKER]);
    primary.sendParts(MessageType.FRAMES, [frames.subarray(0, 500), frames.subarray(500)]);
    primary.send(MessageType.PRIMARY, MARKER);
    const answers: ChannelMessage[] = [];
    primary.on('message', (m) => answers.push(m));
    backup.send(MessageType.HEARTBEAT, MARKER.subarray(0, 16));
    await until(() => received.length === 2 && answers.length === 1, 'both directions to deliver');

    expect(Buffer.from(received[0]!.payload).equals(frames)).toBe(true);
    expect(Buffer.from(received[1]!.payload).equals(MARKER)).toBe(true);
    expect(Buffer.from(answers[0]!.payload).equals(MARKER.subarray(0, 16))).toBe(true);
    expect(received.map((m) => [m.type, m.epoch])).toEqual([[MessageType.FRAMES, 7], [MessageType.PRIMARY, 7]]);
    const toBackup = Buffer.concat(wire.toBackup);
    const toPrimary = Buffer.concat(wire.toPrimary);
    for (const needle of [MARKER, MARKER.subarray(0, 16), Buffer.alloc(32, 0x41)]) {
      expect(toBackup.includes(needle)).toBe(false);
      expect(toPrimary.includes(needle)).toBe(false);
    }
    // length + type + epoch + payload + 16-byte tag: the sealed FRAMES message is its payload plus 29 bytes
    expect(wire.toBackup[2]!.length).toBe(frames.length + 29);
  });

  const cases: Array<[string, Tamper, RegExp]> = [
    [
      'a flipped payload bit',
      (i, m) => (i === 3 ? [Buffer.from(m.map((b, at) => (at === 14 ? b ^ 1 : b)))] : [m]),
      /FTW_REPL_AUTH.*bad tag on FRAMES message 1 from .*forged, replayed or damaged/,
    ],
    [
      'a changed type byte (authenticated, not encrypted)',
      (i, m) => (i === 3 ? [Buffer.from(m.map((b, at) => (at === 4 ? MessageType.RELEASED : b)))] : [m]),
      /FTW_REPL_AUTH.*bad tag on RELEASED message 1/,
    ],
    ['a replayed message', (i, m) => (i === 2 ? [m, m] : [m]), /FTW_REPL_AUTH.*bad tag on FRAMES message 1/],
    ['a dropped message', (i, m) => (i === 2 ? [] : [m]), /FTW_REPL_AUTH.*bad tag on FRAMES message 0/],
  ];
  for (const [what, tamper, reason] of cases) {
    it(`closes the connection on ${what}, after taking only the messages before it`, async () => {
      const { primary, received, closed } = await pairThroughProxy(tamper);
      for (let n = 0; n < 3; n++) primary.send(MessageType.FRAMES, Buffer.from(`frame ${n}`));
      expect(await closed).toMatch(reason);
      const taken = received.map((m) => Buffer.from(m.payload).toString());
      // Only untouched messages in order, from the first: nothing altered, repeated or out of order gets in.
      expect(['frame 0', 'frame 1', 'frame 2'].slice(0, taken.length)).toEqual(taken);
      expect(taken.length).toBeLessThan(3);
    });
  }
});
