// The client library (docs/PROTOCOL.md). It finds the primary among the given servers, numbers the
// session's requests, re-sends the unaccepted ones after every reconnect (the server drops the ones it has
// already taken), and hands each output out exactly once and in order through an OutputSequencer.
// Everything is bounded: queued requests, requests on the wire, held outputs, attempts in a row.
// Frames are queued and leave at the end of the event-loop turn: the requests of one burst in one write.
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { NetError, ProtocolError } from './errors.ts';
import { FRAME_BYTES_LIMIT, FRAME_BYTES_MAX_DEFAULT, FrameDecoder, PAYLOAD_BYTES_MAX_DEFAULT, WRITE_BATCH_BYTES_MAX, WriteBatch } from './frame.ts';
import {
  decodeServerMessage,
  PROTOCOL_VERSION,
  writeMessage,
  type AcceptedMessage,
  type ClientMessage,
  type ErrorMessage,
  type OutputMessage,
  type ServerMessage,
  type WelcomeMessage,
  type WireLimits,
} from './messages.ts';
import { OutputSequencer } from './sequencer.ts';

/** What a client needs to resume a session in another FtClient (e.g. after a restart of the client process). */
export interface SessionTicket {
  session: number;
  session_epoch: number;
  /** Highest output seq already handed to the application. */
  last_output_seq: number;
}

export interface FtClientOptions {
  /** `host:port` of every node, e.g. ['127.0.0.1:7001', '127.0.0.1:7002'] (IPv6 as `[::1]:7001`). */
  servers: string[];
  /** Resume this session instead of opening a new one. */
  ticket?: SessionTicket;
  /** Time a sent request may wait for `accepted` before the client gives up on the connection and reconnects. */
  request_timeout_ms?: number;
  /** Failed attempts in a row (no primary reached, connection lost, request timed out) before the client fails. */
  retries_max?: number;
  /** First wait between failed attempts; doubles up to backoff_ms_max. */
  backoff_ms_min?: number;
  backoff_ms_max?: number;
  /** Time for TCP connect plus hello/welcome on one address. */
  connect_timeout_ms?: number;
  /** Requests sent and not yet accepted (further capped by the server's limit). */
  requests_inflight_max?: number;
  /** Requests held in all (sent or waiting to be sent) before request() refuses. */
  requests_queued_max?: number;
  /** Outputs that arrived early, held for reordering. */
  outputs_held_max?: number;
  /** Largest frame body accepted from a server. */
  frame_bytes_max?: number;
  /** Largest request payload (further capped by the server's limit once known). */
  payload_bytes_max?: number;
  /** A ping is sent after this long without writing; the connection is dropped after 3 of these without a frame. */
  ping_interval_ms?: number;
  /** Acks are coalesced for at most this long. */
  ack_delay_ms?: number;
  /**
   * Learn the replication group's client addresses from the primary (`nodes`, docs/PROTOCOL.md) and add the
   * ones not in `servers` (at most DISCOVERED_MAX, oldest dropped first), so that a backup that joined after
   * this client started is found when it takes over. Default true; false keeps to `servers` alone.
   */
  discover?: boolean;
}

type ResolvedOptions = Required<Omit<FtClientOptions, 'ticket' | 'discover'>>;

/** Addresses learned from `nodes` beyond the configured ones (the oldest learned goes first). */
export const DISCOVERED_MAX = 8;

const CLIENT_DEFAULTS: Omit<ResolvedOptions, 'servers'> = {
  request_timeout_ms: 5_000,
  retries_max: 20,
  backoff_ms_min: 25,
  backoff_ms_max: 1_000,
  connect_timeout_ms: 2_000,
  requests_inflight_max: 64,
  requests_queued_max: 1_024,
  outputs_held_max: 256,
  frame_bytes_max: FRAME_BYTES_MAX_DEFAULT,
  payload_bytes_max: PAYLOAD_BYTES_MAX_DEFAULT,
  ping_interval_ms: 10_000,
  ack_delay_ms: 5,
};

const CLIENT_RANGES: Record<keyof Omit<ResolvedOptions, 'servers'>, [number, number]> = {
  request_timeout_ms: [1, 2 ** 31],
  retries_max: [0, 1_000_000],
  backoff_ms_min: [0, 2 ** 31],
  backoff_ms_max: [0, 2 ** 31],
  connect_timeout_ms: [1, 2 ** 31],
  requests_inflight_max: [1, 1 << 20],
  requests_queued_max: [1, 1 << 24],
  outputs_held_max: [0, 1 << 20],
  frame_bytes_max: [64, FRAME_BYTES_LIMIT],
  payload_bytes_max: [0, FRAME_BYTES_LIMIT],
  ping_interval_ms: [1, 2 ** 31],
  ack_delay_ms: [0, 2 ** 31],
};

/** Server error codes after which the client reconnects; every other code fails the client. */
const RETRYABLE_CODES = new Set(['idle_timeout', 'hello_timeout', 'slow_reader', 'too_many_connections', 'too_many_sessions', 'shutting_down', 'internal']);
/** Server error codes that mean the session's state is gone. */
const SESSION_LOST_CODES = new Set(['outputs_lost', 'session_expired', 'session_taken_over']);

interface Address {
  host: string;
  port: number;
  text: string;
}

interface PendingRequest {
  /** 0 until the client has a session to number it in. */
  seq: number;
  payload: Uint8Array;
  resolve: () => void;
  reject: (error: Error) => void;
  sent_ms: number;
}

interface CallWaiter {
  resolve: (payload: Uint8Array) => void;
  reject: (error: Error) => void;
}

/** How one connection attempt ended. */
type Outcome = { kind: 'open' } | { kind: 'retry'; reason: string; next?: number } | { kind: 'stop' };

interface Connection {
  socket: net.Socket;
  decoder: FrameDecoder;
  /** Frames queued during this event-loop turn; they leave together (flush). */
  out: WriteBatch;
  flush_timer: NodeJS.Immediate | undefined;
  address: Address;
  state: 'hello' | 'open' | 'closed';
  settle: (outcome: Outcome) => void;
  frame_ms: number;
  write_ms: number;
}

/** Parses `host:port` or `[v6]:port`. */
export function parseAddress(text: string, options: { listen?: boolean } = {}): Address {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  const port = match ? Number(match[3]) : NaN;
  // Port 0 only where this side listens: the system picks a free one (the node prints which).
  if (!match || port < (options.listen ? 0 : 1) || port > 65535) throw new NetError('FTW_NET_OPTION', `${options.listen ? 'listen' : 'server'} address ${JSON.stringify(text)} is not host:port`);
  return { host: (match[1] ?? match[2])!, port, text };
}

export interface FtClientEvents {
  output: [seq: number, payload: Uint8Array];
  /** Addresses learned from the primary's `nodes` (discover), added to the ones tried. */
  discovered: [addresses: string[]];
  connected: [info: { address: string; epoch: number; session: number; resumed: boolean }];
  disconnected: [reason: string];
  error: [error: NetError];
}

/** A session with whichever node is primary: requests in, outputs out, each exactly once and in order. */
export class FtClient extends EventEmitter<FtClientEvents> {
  private readonly options: ResolvedOptions;
  private readonly addresses: Address[];
  /** How many of `addresses` were configured (the rest were learned, oldest first). */
  private readonly configured: number;
  private readonly discover: boolean;
  private readonly ticket_given: boolean;
  private state: 'idle' | 'connecting' | 'open' | 'failed' | 'closed' = 'idle';
  private connection: Connection | undefined;
  private connecting: Promise<void> | undefined;
  private session: { id: number; epoch: number } | undefined;
  private next_seq = 1;
  private accepted_seq = 0;
  private readonly pending: PendingRequest[] = [];
  /** pending[0 .. sent) went out on the current connection. */
  private sent = 0;
  private readonly sequencer: OutputSequencer;
  private readonly calls: CallWaiter[] = [];
  private failures = 0;
  private max_epoch = 0;
  private preferred = 0;
  private server_limits: WireLimits | undefined;
  private acked_sent = 0;
  private ack_timer: NodeJS.Timeout | undefined;
  private tick_timer: NodeJS.Timeout | undefined;
  private failure: NetError | undefined;
  /** With a ticket: the highest request seq the previous client got taken; numbering waits until it is accepted. */
  private settle_target = 0;
  /** When the current connection opened. */
  private open_ms = 0;

  constructor(options: FtClientOptions) {
    super();
    const { discover, ...numeric } = options;
    if (discover !== undefined && typeof discover !== 'boolean') throw new NetError('FTW_NET_OPTION', `option discover = ${String(discover)} is not a boolean`);
    const resolved = { ...CLIENT_DEFAULTS, ...stripUndefined(numeric) } as ResolvedOptions;
    for (const [name, [min, max]] of Object.entries(CLIENT_RANGES) as Array<[keyof typeof CLIENT_RANGES, [number, number]]>) {
      const value = resolved[name];
      if (!Number.isInteger(value) || value < min || value > max) {
        throw new NetError('FTW_NET_OPTION', `option ${name} = ${String(value)} is outside ${min}..${max}`);
      }
    }
    if (!Array.isArray(options.servers) || options.servers.length === 0) throw new NetError('FTW_NET_OPTION', 'option servers needs at least one host:port');
    this.options = resolved;
    this.addresses = options.servers.map((s) => parseAddress(s));
    this.configured = this.addresses.length;
    this.discover = discover ?? true;
    const ticket = options.ticket;
    this.ticket_given = ticket !== undefined;
    if (ticket) {
      this.session = { id: ticket.session, epoch: ticket.session_epoch };
      this.next_seq = 0; // learned from the first welcome
    }
    this.sequencer = new OutputSequencer(resolved.outputs_held_max, ticket?.last_output_seq ?? 0);
    this.acked_sent = this.sequencer.delivered;
  }

  // -------------------------------------------------------------------------------------------------------
  // Public API

  /** Connects to the primary (if not connected); resolves once a session is open. */
  connect(): Promise<void> {
    const done = this.doneError();
    if (done) return Promise.reject(done);
    if (this.state === 'open') return Promise.resolve();
    this.connecting ??= this.connectLoop().finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  /** Queues a request; resolves when it is durably in the log (accepted), rejects if the client fails or closes first. */
  request(payload: Uint8Array): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const refused = this.enqueue(payload, resolve, reject);
      if (refused) reject(refused);
    });
  }

  /**
   * For guests that answer each request with one output (kv): sends it and resolves with the next output in
   * order. Outputs go to pending calls first come, first served, so do not use it with a guest that sends
   * outputs of its own accord, nor on a resumed session with outputs still to come. 'output' still fires.
   */
  call(payload: Uint8Array): Promise<Uint8Array> {
    return new Promise<Uint8Array>((resolve, reject) => {
      // Calls waiting for their output count against the same bound as requests waiting to be accepted: a
      // guest that never answers cannot grow this list without limit.
      if (this.calls.length >= this.options.requests_queued_max) {
        return reject(new NetError('FTW_NET_QUEUE_FULL', `${this.calls.length} calls wait for their output (requests_queued_max = ${this.options.requests_queued_max})`));
      }
      const waiter: CallWaiter = { resolve, reject };
      this.calls.push(waiter);
      const failed = (error: Error): void => {
        const i = this.calls.indexOf(waiter);
        if (i >= 0) this.calls.splice(i, 1);
        reject(error);
      };
      const refused = this.enqueue(payload, noop, failed);
      if (refused) failed(refused);
    });
  }

  /** Takes a request into the queue (and onto the wire if there is room), or says why not. */
  private enqueue(payload: Uint8Array, resolve: () => void, reject: (error: Error) => void): NetError | undefined {
    const done = this.doneError();
    if (done) return done;
    const payload_max = Math.min(this.options.payload_bytes_max, this.server_limits?.payload_bytes_max ?? Infinity);
    if (payload.length > payload_max) {
      return new NetError('FTW_NET_PAYLOAD', `request payload ${payload.length} bytes > payload_bytes_max = ${payload_max}`);
    }
    if (this.pending.length >= this.options.requests_queued_max) {
      return new NetError('FTW_NET_QUEUE_FULL', `${this.pending.length} requests are not yet accepted (requests_queued_max = ${this.options.requests_queued_max})`);
    }
    const seq = this.next_seq > 0 && this.session ? this.next_seq++ : 0;
    this.pending.push({ seq, payload: new Uint8Array(payload), resolve, reject, sent_ms: 0 });
    if (this.state === 'open') this.pump();
    else this.connect().catch(() => {}); // the failure reaches the request through fail()
    return undefined;
  }

  /** What another FtClient needs to resume this session, once one is open. */
  ticket(): SessionTicket | undefined {
    if (!this.session) return undefined;
    return { session: this.session.id, session_epoch: this.session.epoch, last_output_seq: this.sequencer.delivered };
  }

  /** The addresses this client tries: the configured ones, then those learned from `nodes` (oldest first). */
  servers(): string[] {
    return this.addresses.map((a) => a.text);
  }

  /** Counts for tests and monitoring. */
  stats(): { pending: number; sent: number; accepted_seq: number; outputs_delivered: number; outputs_held: number; failures: number; epoch: number } {
    return {
      pending: this.pending.length,
      sent: this.sent,
      accepted_seq: this.accepted_seq,
      outputs_delivered: this.sequencer.delivered,
      outputs_held: this.sequencer.heldCount,
      failures: this.failures,
      epoch: this.max_epoch,
    };
  }

  /** Acks what it has, closes the connection and rejects whatever is pending (FTW_NET_CLOSED). */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    const failed = this.state === 'failed';
    this.state = 'closed';
    this.stopTimers();
    const connection = this.connection;
    this.connection = undefined;
    if (!failed) this.rejectAll(new NetError('FTW_NET_CLOSED', 'the client was closed'));
    if (!connection || connection.state === 'closed') return;
    if (connection.state === 'open') this.write(connection, this.ackMessage());
    this.flush(connection);
    connection.state = 'closed';
    connection.settle({ kind: 'stop' });
    const socket = connection.socket;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => socket.destroy(), 1_000);
      socket.once('close', () => (clearTimeout(timer), resolve()));
      socket.end();
    });
  }

  // -------------------------------------------------------------------------------------------------------
  // Finding the primary

  private async connectLoop(): Promise<void> {
    this.state = 'connecting';
    for (;;) {
      const done = this.doneError();
      if (done) throw done;
      const address = this.addresses[this.preferred]!;
      let outcome = await this.attempt(address);
      if (outcome.kind === 'open') {
        if (this.isOpen()) return;
        // Already gone again: frames after the welcome in the same chunk are handled before this loop
        // resumes, and the drop they caused found this loop still running and left it to go on.
        outcome = { kind: 'retry', reason: 'connection lost right after welcome', next: this.preferred };
      }
      if (outcome.kind === 'stop') continue; // the loop head throws
      this.failures += 1;
      if (this.failures > this.options.retries_max) {
        this.fail(new NetError('FTW_NET_UNAVAILABLE', `no primary reached in ${this.failures} attempts in a row (last: ${address.text}: ${outcome.reason})`));
        continue;
      }
      this.preferred = outcome.next ?? (this.preferred + 1) % this.addresses.length;
      await sleep(this.backoffMs());
    }
  }

  private backoffMs(): number {
    const { backoff_ms_min, backoff_ms_max } = this.options;
    const exp = Math.min(backoff_ms_max, backoff_ms_min * 2 ** Math.min(30, this.failures - 1));
    return Math.round(exp * (0.5 + Math.random() / 2));
  }

  /** One connection attempt: TCP connect, hello, and the first answer. */
  private attempt(address: Address): Promise<Outcome> {
    return new Promise<Outcome>((resolve) => {
      const socket = net.connect({ host: address.host, port: address.port });
      let settled = false;
      const now = performance.now();
      const connection: Connection = {
        socket,
        decoder: new FrameDecoder(this.options.frame_bytes_max),
        out: new WriteBatch(),
        flush_timer: undefined,
        address,
        state: 'hello',
        frame_ms: now,
        write_ms: now,
        settle: (outcome) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          resolve(outcome);
        },
      };
      const timer = setTimeout(() => this.drop(connection, `no welcome within connect_timeout_ms = ${this.options.connect_timeout_ms}`), this.options.connect_timeout_ms);
      this.connection = connection;
      socket.setNoDelay(true);
      socket.on('connect', () => {
        const hello: ClientMessage = { type: 'hello', version: PROTOCOL_VERSION, last_output_seq: this.sequencer.delivered };
        if (this.discover) hello.nodes = true;
        if (this.session) Object.assign(hello, { session: this.session.id, session_epoch: this.session.epoch });
        this.write(connection, hello);
      });
      socket.on('data', (chunk: Buffer) => this.onData(connection, chunk));
      socket.on('error', () => {}); // 'close' follows and says what happened
      socket.on('close', () => this.drop(connection, 'connection closed'));
    });
  }

  // -------------------------------------------------------------------------------------------------------
  // Receiving

  private onData(connection: Connection, chunk: Buffer): void {
    if (connection.state === 'closed') return;
    try {
      connection.decoder.push(chunk);
      let body = connection.decoder.next();
      if (body !== undefined) connection.frame_ms = performance.now();
      for (; body !== undefined; body = connection.decoder.next()) {
        this.onMessage(connection, decodeServerMessage(body));
        if (isClosed(connection)) return;
      }
    } catch (error) {
      if (error instanceof ProtocolError) return this.drop(connection, `server ${connection.address.text} broke the protocol: ${error.message}`);
      // Anything else is this client's own bookkeeping broken by what a server said: the client fails (its
      // callers are told), rather than an exception escaping a socket handler and taking the process down.
      const e = error as Error;
      this.fail(e instanceof NetError ? e : new NetError('FTW_NET_STATE', `handling a message from ${connection.address.text}: ${e.message}`));
    }
  }

  private onMessage(connection: Connection, message: ServerMessage): void {
    if (message.type === 'error') return this.onError(connection, message);
    if (message.type === 'not_primary') {
      const next = this.addresses.findIndex((a) => a.text === message.primary_hint);
      if (message.epoch !== undefined && message.epoch > this.max_epoch) this.max_epoch = message.epoch;
      return this.drop(connection, `${connection.address.text} is not primary`, next >= 0 ? next : undefined);
    }
    if (connection.state === 'hello') {
      if (message.type !== 'welcome') throw new ProtocolError('bad_message', `${message.type} before welcome`);
      return this.onWelcome(connection, message);
    }
    switch (message.type) {
      case 'accepted':
        return this.onAccepted(connection, message);
      case 'output':
        return this.onOutput(connection, message);
      case 'pong':
        return;
      case 'nodes':
        return this.onNodes(message.addresses);
      case 'welcome':
        throw new ProtocolError('bad_message', 'a second welcome');
    }
  }

  /** The primary named its group's client addresses: the new ones are tried too from now on (discover). */
  private onNodes(texts: readonly string[]): void {
    if (!this.discover) return;
    const added: string[] = [];
    for (const text of texts) {
      if (this.addresses.some((a) => a.text === text)) continue;
      let address: Address;
      try {
        address = parseAddress(text);
      } catch {
        continue; // isNodeAddress let it through, but it names no port this client can dial
      }
      if (this.addresses.length - this.configured >= DISCOVERED_MAX) {
        // The oldest learned address goes; the preferred index follows the address it pointed at.
        this.addresses.splice(this.configured, 1);
        if (this.preferred === this.configured) this.preferred = 0;
        else if (this.preferred > this.configured) this.preferred -= 1;
      }
      this.addresses.push(address);
      added.push(text);
    }
    if (added.length > 0) this.emit('discovered', added);
  }

  private onError(connection: Connection, message: ErrorMessage): void {
    const what = `${connection.address.text} closed the connection: ${message.code}: ${message.message}`;
    if (RETRYABLE_CODES.has(message.code)) return this.drop(connection, what);
    this.fail(new NetError(SESSION_LOST_CODES.has(message.code) ? 'FTW_NET_SESSION_LOST' : 'FTW_NET_REFUSED', what));
  }

  private onWelcome(connection: Connection, welcome: WelcomeMessage): void {
    if (welcome.epoch < this.max_epoch) {
      return this.drop(connection, `${connection.address.text} says primary in epoch ${welcome.epoch}, but epoch ${this.max_epoch} was seen: a stale primary`);
    }
    // The server cannot have accepted requests this client never numbered (a resumed ticket, next_seq 0, is
    // settled against settle_target in onAccepted instead).
    if (this.next_seq > 0 && welcome.accepted >= this.next_seq) {
      throw new ProtocolError('bad_message', `welcome says request ${welcome.accepted} was accepted, but only ${this.next_seq - 1} were numbered`);
    }
    if (!this.adoptSession(welcome)) return;
    this.max_epoch = welcome.epoch;
    this.server_limits = welcome.limits;
    connection.state = 'open';
    this.state = 'open';
    this.open_ms = performance.now();
    this.sent = 0;
    this.acked_sent = this.sequencer.delivered;
    if (this.pending.length === 0) this.failures = 0;
    this.settleAccepted(welcome.accepted);
    this.startTimers();
    connection.settle({ kind: 'open' });
    this.emit('connected', { address: connection.address.text, epoch: welcome.epoch, session: welcome.session, resumed: welcome.resumed });
    this.pump();
  }

  /** Decides what the welcome's session means for the requests and outputs held; false if the client failed. */
  private adoptSession(welcome: WelcomeMessage): boolean {
    const asked = this.session;
    const fresh = { id: welcome.session, epoch: welcome.session_epoch };
    if (asked && welcome.resumed) {
      if (welcome.session !== asked.id || welcome.session_epoch !== asked.epoch) {
        this.fail(new NetError('FTW_NET_REFUSED', `asked to resume session ${asked.id} (epoch ${asked.epoch}), welcome names ${welcome.session} (epoch ${welcome.session_epoch})`));
        return false;
      }
      if (this.next_seq === 0) {
        // A new FtClient with a ticket continues after what the server took, but only once all of that is
        // durable: a request the old client left in flight may yet be lost in a failover, and numbering past
        // it would leave a gap. Until then its requests wait, unnumbered (see onAccepted and tick).
        this.accepted_seq = Math.max(this.accepted_seq, welcome.accepted);
        this.settle_target = welcome.received;
        if (welcome.received === welcome.accepted) this.next_seq = welcome.received + 1;
      } else if (welcome.received >= this.next_seq) {
        this.fail(new NetError('FTW_NET_SESSION_LOST', `session ${asked.id} has taken request ${welcome.received}, but this client numbered only up to ${this.next_seq - 1}: another client uses it`));
        return false;
      }
    } else if (asked) {
      // The servers do not know the session. Safe to start over only if nothing of it can have reached the
      // guest: no request accepted and no output seen (a request the log holds makes the session known to
      // every node that holds the log).
      if (this.ticket_given || this.accepted_seq > 0 || this.sequencer.delivered > 0) {
        this.fail(new NetError('FTW_NET_SESSION_LOST', `the servers no longer hold session ${asked.id} (epoch ${asked.epoch}); its outputs or requests may be lost`));
        return false;
      }
      this.session = fresh;
      this.next_seq = 1;
      for (const p of this.pending) p.seq = this.next_seq++;
    } else {
      this.session = fresh;
    }
    this.numberPending();
    return true;
  }

  private numberPending(): void {
    if (this.next_seq === 0) return;
    for (const p of this.pending) if (p.seq === 0) p.seq = this.next_seq++;
  }

  private onAccepted(connection: Connection, accepted: AcceptedMessage): void {
    this.checkSession(accepted.session, 'accepted');
    if (this.next_seq === 0) {
      // Still waiting for the previous client's requests to settle (a resumed ticket).
      if (accepted.seq > this.settle_target) return this.drop(connection, `${connection.address.text} accepted request ${accepted.seq}, beyond the ${this.settle_target} it had taken`);
      this.accepted_seq = Math.max(this.accepted_seq, accepted.seq);
      if (accepted.seq < this.settle_target) return;
      this.next_seq = accepted.seq + 1;
      this.numberPending();
      this.failures = 0;
      return this.pump();
    }
    if (accepted.seq >= this.next_seq) {
      return this.drop(connection, `${connection.address.text} accepted request ${accepted.seq}, but only ${this.next_seq - 1} were numbered`);
    }
    if (this.settleAccepted(accepted.seq)) this.failures = 0;
    this.pump();
  }

  /** Resolves every pending request up to seq; true if any was. */
  private settleAccepted(seq: number): boolean {
    if (seq <= this.accepted_seq) return false;
    this.accepted_seq = seq;
    let done = 0;
    while (done < this.pending.length && this.pending[done]!.seq <= seq) done++;
    const settled = this.pending.splice(0, done);
    this.sent = Math.max(0, this.sent - done);
    invariant(this.pending.length === 0 || this.pending[0]!.seq === seq + 1, () => `after accepted ${seq} the oldest pending request is ${this.pending[0]?.seq}`);
    for (const p of settled) p.resolve();
    return done > 0;
  }

  private onOutput(connection: Connection, output: OutputMessage): void {
    this.checkSession(output.session, 'output');
    const result = this.sequencer.push(output.seq, output.payload);
    if (result.status === 'overflow') {
      return this.drop(connection, `output ${output.seq} is beyond outputs_held_max = ${this.options.outputs_held_max} past ${this.sequencer.delivered}: reconnecting to have it resent`);
    }
    if (result.status !== 'delivered') return;
    this.failures = 0;
    for (const { seq, payload } of result.ready) {
      this.calls.shift()?.resolve(payload);
      try {
        this.emit('output', seq, payload);
      } catch (error) {
        // A listener's exception is the application's: rethrow it outside our bookkeeping.
        queueMicrotask(() => {
          throw error;
        });
      }
    }
    this.scheduleAck();
  }

  private checkSession(session: number, what: string): void {
    if (session !== this.session?.id) throw new ProtocolError('wrong_session', `${what} for session ${session}, but this client holds ${this.session?.id}`);
  }

  // -------------------------------------------------------------------------------------------------------
  // Sending

  private pump(): void {
    const connection = this.connection;
    if (!connection || connection.state !== 'open' || !this.session || this.next_seq === 0) return;
    const window = Math.min(this.options.requests_inflight_max, this.server_limits?.requests_inflight_max ?? Infinity);
    const now = performance.now();
    while (this.sent < this.pending.length && this.sent < window) {
      const p = this.pending[this.sent++]!;
      invariant(p.seq > this.accepted_seq && p.seq < this.next_seq, () => `request seq ${p.seq} outside ${this.accepted_seq + 1}..${this.next_seq - 1}`);
      p.sent_ms = now;
      this.write(connection, { type: 'request', session: this.session.id, seq: p.seq, payload: p.payload });
    }
  }

  private scheduleAck(): void {
    const every = Math.max(1, Math.floor((this.server_limits?.outputs_buffered_max ?? 4) / 4));
    if (this.sequencer.delivered - this.acked_sent >= every) return this.sendAck();
    if (this.ack_timer) return;
    this.ack_timer = setTimeout(() => this.sendAck(), this.options.ack_delay_ms);
    this.ack_timer.unref();
  }

  private sendAck(): void {
    if (this.ack_timer) clearTimeout(this.ack_timer);
    this.ack_timer = undefined;
    const connection = this.connection;
    if (!connection || connection.state !== 'open' || this.sequencer.delivered <= this.acked_sent) return;
    this.write(connection, this.ackMessage());
  }

  private ackMessage(): ClientMessage {
    this.acked_sent = this.sequencer.delivered;
    return { type: 'ack', session: this.session!.id, output_seq: this.sequencer.delivered };
  }

  /** Queues a frame; the frames of one event-loop turn (a burst of pipelined requests) leave in one write. */
  private write(connection: Connection, message: ClientMessage): void {
    connection.write_ms = performance.now();
    writeMessage(connection.out, message);
    if (connection.out.pending >= WRITE_BATCH_BYTES_MAX) this.flush(connection);
    else connection.flush_timer ??= setImmediate(() => this.flush(connection));
  }

  private flush(connection: Connection): void {
    if (connection.flush_timer) clearImmediate(connection.flush_timer);
    connection.flush_timer = undefined;
    const bytes = connection.out.take();
    if (bytes !== undefined && connection.state !== 'closed' && !connection.socket.destroyed) connection.socket.write(bytes);
  }

  // -------------------------------------------------------------------------------------------------------
  // Timers, losing connections, failing

  private startTimers(): void {
    if (this.tick_timer) return;
    const period = Math.max(1, Math.min(250, Math.floor(this.options.request_timeout_ms / 4), Math.floor(this.pingIntervalMs() / 2)));
    this.tick_timer = setInterval(() => this.tick(), period);
    this.tick_timer.unref();
  }

  private stopTimers(): void {
    if (this.tick_timer) clearInterval(this.tick_timer);
    if (this.ack_timer) clearTimeout(this.ack_timer);
    this.tick_timer = this.ack_timer = undefined;
  }

  private pingIntervalMs(): number {
    const server_idle = this.server_limits?.idle_timeout_ms;
    return Math.max(1, Math.min(this.options.ping_interval_ms, server_idle ? Math.floor(server_idle / 3) : Infinity));
  }

  private tick(): void {
    const connection = this.connection;
    if (!connection || connection.state !== 'open') return;
    const now = performance.now();
    const oldest = this.sent > 0 ? this.pending[0] : this.next_seq === 0 && this.pending.length > 0 ? { seq: this.settle_target, sent_ms: this.open_ms } : undefined;
    if (oldest && now - oldest.sent_ms > this.options.request_timeout_ms) {
      this.failures += 1;
      if (this.failures > this.options.retries_max) {
        this.fail(new NetError('FTW_NET_UNAVAILABLE', `request ${oldest.seq} not accepted within request_timeout_ms = ${this.options.request_timeout_ms}, ${this.failures} failures in a row`));
        return;
      }
      return this.drop(connection, `request ${oldest.seq} not accepted within request_timeout_ms = ${this.options.request_timeout_ms}`);
    }
    const ping_ms = this.pingIntervalMs();
    if (now - connection.frame_ms > 3 * ping_ms) return this.drop(connection, `no frame from ${connection.address.text} in ${Math.round(now - connection.frame_ms)} ms`);
    if (now - connection.write_ms > ping_ms) this.write(connection, { type: 'ping' });
  }

  /** Closes a connection; if it was the current one, the client looks for the primary again. */
  private drop(connection: Connection, reason: string, next?: number): void {
    if (connection.state === 'closed') return;
    const was_open = connection.state === 'open';
    connection.state = 'closed';
    connection.socket.destroy();
    connection.settle(next === undefined ? { kind: 'retry', reason } : { kind: 'retry', reason, next });
    if (this.connection !== connection) return;
    this.connection = undefined;
    if (!was_open || this.state !== 'open') return;
    this.state = 'connecting';
    this.emit('disconnected', reason);
    if (next !== undefined) this.preferred = next;
    this.connect().catch(() => {});
  }

  private fail(error: NetError): void {
    if (this.state === 'failed' || this.state === 'closed') return;
    this.state = 'failed';
    this.failure = error;
    this.stopTimers();
    const connection = this.connection;
    this.connection = undefined;
    if (connection && connection.state !== 'closed') {
      connection.state = 'closed';
      connection.socket.destroy();
      connection.settle({ kind: 'stop' });
    }
    this.rejectAll(error);
    if (this.listenerCount('error') > 0) this.emit('error', error);
  }

  private rejectAll(error: Error): void {
    for (const p of this.pending.splice(0)) p.reject(error);
    for (const c of this.calls.splice(0)) c.reject(error);
    this.sent = 0;
  }

  /** Re-reads the state (a handler may have changed it since TypeScript narrowed it). */
  private isOpen(): boolean {
    return this.state === 'open';
  }

  private doneError(): NetError | undefined {
    if (this.failure) return this.failure;
    if (this.state === 'closed') return new NetError('FTW_NET_CLOSED', 'the client was closed');
    return undefined;
  }
}

/** A broken internal invariant is a bug in this file: stop loudly. */
function invariant(condition: boolean, what: () => string): asserts condition {
  if (!condition) throw new NetError('FTW_NET_STATE', `FtClient invariant broken: ${what()}`);
}

function isClosed(connection: Connection): boolean {
  return connection.state === 'closed';
}

function noop(): void {}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
