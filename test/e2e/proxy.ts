// A loopback TCP proxy for fault tests: forwards every connection to a target until partition() is called;
// from then on it is a black hole: it reads and drops what either side sends, forwards nothing, and keeps
// every socket open (a close on one side is not passed on), like a network that silently stopped carrying
// packets. Connections made during the partition are accepted and black-holed too. With keepOpen, a close
// on one side is never passed on either (what the closed side's peer then sends is dropped): a connection
// that stays half dead, as behind a network that lost the close.
import net from 'node:net';

export interface Proxy {
  port: number;
  /** Bytes forwarded so far, each direction (client -> target, target -> client). */
  forwarded(): { up: number; down: number };
  /** Bytes read and dropped since the partition. */
  dropped(): number;
  partition(): void;
  close(): Promise<void>;
}

export async function startProxy(target: { host: string; port: number }, options: { keepOpen?: boolean } = {}): Promise<Proxy> {
  const sockets = new Set<net.Socket>();
  let cut = false;
  let up = 0;
  let down = 0;
  let dropped = 0;
  const track = (socket: net.Socket): void => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
  };
  const server = net.createServer((client) => {
    track(client);
    if (cut) {
      client.on('data', (d: Buffer) => (dropped += d.length));
      return;
    }
    const upstream = net.connect(target);
    track(upstream);
    const pipe = (from: net.Socket, to: net.Socket, count: (n: number) => void): void => {
      from.on('data', (d: Buffer) => {
        if (cut || to.destroyed) {
          dropped += d.length;
          return;
        }
        count(d.length);
        to.write(d);
      });
      from.on('close', () => {
        if (!cut && !options.keepOpen) to.destroy();
      });
    };
    pipe(client, upstream, (n) => (up += n));
    pipe(upstream, client, (n) => (down += n));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    forwarded: () => ({ up, down }),
    dropped: () => dropped,
    partition: () => {
      cut = true;
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
