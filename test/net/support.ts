// Helpers for the net tests: a raw protocol socket, a fake replicated "guest" host (echo) over two or more
// ClientServers, and seeded randomness. Every wait is bounded in time.
import net from 'node:net';
import {
  ClientServer,
  FrameDecoder,
  decodeServerMessage,
  encodeMessage,
  type ClientMessage,
  type ClientServerOptions,
  type ServerEvent,
  type ServerLimits,
  type ServerMessage,
} from '../../host/net/index.ts';

/** Seed for fast-check and the fake host: FTWASM_SEED when given, random otherwise; always printed. */
export function propertySeed(name: string): number {
  const seed = process.env.FTWASM_SEED ? Number(process.env.FTWASM_SEED) : (Math.random() * 2 ** 31) | 0;
  console.log(`[seed] ${name}: seed ${seed} (rerun with FTWASM_SEED=${seed})`);
  return seed;
}

/** A small deterministic generator (xorshift32). */
export function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `predicate` until it holds; throws after `timeout_ms`. */
export async function waitFor(predicate: () => boolean, timeout_ms = 5_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeout_ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout_ms} ms waiting for ${what}`);
    await sleep(2);
  }
}

export const text = (s: string): Uint8Array => new TextEncoder().encode(s);
export const str = (b: Uint8Array): string => new TextDecoder().decode(b);

/** A bare TCP connection speaking frames, for feeding the server bad input. */
export class RawConnection {
  readonly messages: ServerMessage[] = [];
  readonly closed: Promise<void>;
  readonly decoder = new FrameDecoder(8 << 20);
  decodeError: Error | undefined;

  private constructor(readonly socket: net.Socket) {
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('error', () => {});
    socket.on('data', (chunk) => {
      try {
        this.decoder.push(chunk);
        for (let body = this.decoder.next(); body; body = this.decoder.next()) this.messages.push(decodeServerMessage(body));
      } catch (error) {
        this.decodeError = error as Error;
      }
    });
  }

  static open(port: number): Promise<RawConnection> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port });
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new RawConnection(socket));
      });
    });
  }

  sendRaw(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  send(message: ClientMessage | Record<string, unknown>): void {
    this.socket.write(encodeMessage(message as ClientMessage));
  }

  /** Waits until a message of `type` arrived; returns it. */
  async next<T extends ServerMessage['type']>(type: T, timeout_ms = 3_000): Promise<Extract<ServerMessage, { type: T }>> {
    let found: ServerMessage | undefined;
    await waitFor(() => (found = this.messages.find((m) => m.type === type)) !== undefined, timeout_ms, `a ${type} frame`);
    this.messages.splice(this.messages.indexOf(found!), 1);
    return found as Extract<ServerMessage, { type: T }>;
  }

  /** Waits for the server to close the connection (bounded). */
  async waitClosed(timeout_ms = 3_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.closed,
      new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`connection not closed within ${timeout_ms} ms`)), timeout_ms))),
    ]).finally(() => clearTimeout(timer));
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** Opens a raw connection and a session with hello; returns the connection and the welcome. */
export async function openSession(port: number, hello: Record<string, unknown> = {}) {
  const raw = await RawConnection.open(port);
  raw.send({ type: 'hello', version: 1, ...hello });
  const welcome = await raw.next('welcome');
  return { raw, welcome };
}

// ---------------------------------------------------------------------------------------------------------
// A fake replicated host: every node runs a ClientServer; the "guest" echoes each request as one output.
// Deliveries go to every node's session table at once, as a log replayed by the backup would; the primary
// releases accepts and outputs after a random delay (the output rule's wait for the backup's ack).

export type NodeName = string;

interface Release {
  index: number;
  session: number;
  seq: number;
  output_seq: number;
  payload: Uint8Array;
  epoch: number;
}

export class FakeNode {
  server: ClientServer;
  readonly queue: Array<{ session: number; seq: number; payload: Uint8Array }> = [];
  readonly releases: Release[] = [];
  readonly events: ServerEvent[] = [];
  port = 0;
  alive = true;

  constructor(
    readonly name: NodeName,
    readonly cluster: FakeCluster,
  ) {
    this.server = this.makeServer(0);
  }

  makeServer(port: number): ClientServer {
    const server = new ClientServer({
      port,
      role: () => (this.alive && !this.flapping && this.cluster.primary === this.name ? 'primary' : 'backup'),
      epoch: () => this.cluster.epoch,
      primaryHint: () => this.cluster.hint(),
      limits: this.cluster.limits,
      onEvent: (event) => this.events.push(event),
      onRequest: (session, seq, payload) => {
        this.cluster.handed_up += 1;
        this.queue.push({ session, seq, payload });
        this.cluster.schedule(() => this.processOne());
      },
    });
    return server;
  }

  async start(): Promise<void> {
    this.port = (await this.server.listen()).port;
  }

  /** While true the guest takes nothing (requests stay queued, taken but not delivered). */
  paused = false;
  /** While true the node answers as a backup without losing anything: a network blip. */
  flapping = false;

  /** Lets the guest take everything queued. */
  unpause(): void {
    this.paused = false;
    for (let i = this.queue.length; i > 0; i--) this.cluster.schedule(() => this.processOne());
  }

  /** The guest takes the oldest queued request (if this node is still primary). */
  processOne(): void {
    if (!this.alive || this.paused || this.cluster.primary !== this.name) return;
    const next = this.queue.shift();
    if (next) this.cluster.deliver(next.session, next.seq, next.payload);
  }

  /** Applies releases in log order up to log position `through`; only a primary's server sends anything. */
  release(through = Infinity): void {
    let count = 0;
    while (count < this.releases.length && this.releases[count]!.index <= through) count++;
    for (const r of this.releases.splice(0, count)) {
      this.server.accept(r.session, r.seq);
      this.server.output(r.session, r.output_seq, r.payload, r.epoch);
    }
  }
}

export class FakeCluster {
  readonly nodes = new Map<NodeName, FakeNode>();
  primary: NodeName;
  epoch = 1;
  readonly deliveries = new Map<string, number>();
  readonly delivered_order: string[] = [];
  /** onRequest calls on every node: more than the deliveries when queues were lost in a failover. */
  handed_up = 0;
  private readonly output_counts = new Map<number, number>();
  private log_index = 0;
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly random: () => number;

  constructor(
    names: NodeName[],
    seed: number,
    readonly limits: Partial<ServerLimits> = {},
    readonly delay_ms_max = 3,
  ) {
    this.random = rng(seed);
    for (const name of names) this.nodes.set(name, new FakeNode(name, this));
    this.primary = names[0]!;
  }

  async start(): Promise<void> {
    for (const node of this.nodes.values()) await node.start();
  }

  node(name: NodeName): FakeNode {
    return this.nodes.get(name)!;
  }

  addresses(): string[] {
    return [...this.nodes.values()].map((n) => `127.0.0.1:${n.port}`);
  }

  hint(): string | undefined {
    const p = this.nodes.get(this.primary);
    return p && p.alive ? `127.0.0.1:${p.port}` : undefined;
  }

  schedule(fn: () => void): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      fn();
    }, Math.floor(this.random() * (this.delay_ms_max + 1)));
    this.timers.add(timer);
  }

  /** The guest on the primary received request `seq`: logged, replayed on every node, echoed as one output. */
  deliver(session: number, seq: number, payload: Uint8Array): void {
    const key = `${session}:${seq}`;
    this.deliveries.set(key, (this.deliveries.get(key) ?? 0) + 1);
    this.delivered_order.push(key);
    const output_seq = (this.output_counts.get(session) ?? 0) + 1;
    this.output_counts.set(session, output_seq);
    const reply = new Uint8Array([...text('echo:'), ...payload]);
    const index = ++this.log_index;
    for (const node of this.nodes.values()) {
      if (!node.alive) continue;
      node.server.setDelivered(session, seq);
      node.releases.push({ index, session, seq, output_seq, payload: reply, epoch: this.epoch });
      if (node.name !== this.primary) node.release();
    }
    const primary = this.node(this.primary);
    this.schedule(() => primary.release(index));
  }

  /** Moves the primary role to `to` with a new epoch; the old primary loses its unreleased queue of requests. */
  failover(to: NodeName): void {
    const old = this.node(this.primary);
    old.queue.length = 0;
    this.primary = to;
    this.epoch += 1;
    old.release(); // becomes a backup: what it had not released is buffered, not sent
    old.server.checkRole();
    const fresh = this.node(to);
    fresh.release();
    fresh.server.goLive();
  }

  /** Holds the primary's guest until some requests are taken but not delivered; returns the node. */
  async holdPrimary(): Promise<FakeNode> {
    const node = this.node(this.primary);
    node.paused = true;
    const deadline = Date.now() + 200;
    while (node.queue.length === 0 && Date.now() < deadline) await sleep(1);
    return node;
  }

  /** A network blip: the primary drops every client connection but stays primary, its queue intact. */
  async blip(): Promise<void> {
    const node = await this.holdPrimary();
    node.flapping = true;
    node.server.checkRole();
    node.flapping = false;
    await sleep(20); // clients come back and re-send what they have not seen accepted
    node.unpause();
  }

  /** Two failovers in a row, before any client reconnects: the first primary comes back with requests it took but lost. */
  async flipFlop(): Promise<void> {
    const node = await this.holdPrimary();
    const other = [...this.nodes.keys()].find((n) => n !== node.name && this.node(n).alive)!;
    this.failover(other);
    this.failover(node.name);
    node.unpause();
  }

  /** Kills `name` abruptly (its connections drop with no message). */
  async crash(name: NodeName): Promise<void> {
    const node = this.node(name);
    node.alive = false;
    node.queue.length = 0;
    node.releases.length = 0;
    await node.server.close({ abort: true });
  }

  /** Brings a crashed node back as a backup on its old port, with the session table of the primary (state transfer). */
  async restart(name: NodeName): Promise<void> {
    const node = this.node(name);
    const primary = this.node(this.primary);
    primary.release();
    node.server = node.makeServer(node.port);
    node.server.restore(primary.server.snapshot());
    node.alive = true;
    await node.server.listen();
  }

  async close(): Promise<void> {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    for (const node of this.nodes.values()) await node.server.close({ abort: true });
  }
}
