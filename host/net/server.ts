// The client-facing server (docs/PROTOCOL.md). It owns connections, frames and the session table; the layer
// above (replication) owns the guest and the log and talks to it through a handful of calls:
//   onRequest(session, seq, payload)   a new request, in order, never one the session table has seen
//   setDelivered / delivered          the highest request seq the guest took, derived from the log
//   accept(session, seq)              requests up to seq are durably logged: tell the client
//   output(session, seq, payload, e)  an output may leave (output rule already satisfied)
//   goLive()                          this node just became primary
//   setNodes(addresses)               where clients reach the replication group (for hellos that ask)
//   snapshot / restore                the session table as a plain object, for state transfer
// Bad input from a client gets an `error` frame naming what was wrong, then a close; it never throws out
// of a socket handler. Misuse by the host (seq out of order) throws NetError: that is a bug above us.
// Frames to a client are queued and leave at the end of the event-loop turn, all of a turn in one socket
// write; the accepts of a turn go out as one cumulative `accepted`. Whatever the host calls in one turn
// therefore reaches the client after that turn: a host that must tell someone else first (the output rule's
// RELEASED to the backup) has to do it synchronously, before the turn ends.
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { NetError, ProtocolError, type WireErrorCode } from './errors.ts';
import { OutputQueue, type BufferedOutput } from './outputs.ts';
import { FRAME_BYTES_LIMIT, FRAME_BYTES_MAX_DEFAULT, FrameDecoder, PAYLOAD_BYTES_MAX_DEFAULT, WRITE_BATCH_BYTES_MAX, WriteBatch } from './frame.ts';
import {
  decodeClientMessage,
  isNodeAddress,
  NODES_MAX,
  PROTOCOL_VERSION,
  SEQ_MAX,
  U32_MAX,
  writeMessage,
  type AckMessage,
  type ClientMessage,
  type HelloMessage,
  type NotPrimaryMessage,
  type RequestMessage,
  type ServerMessage,
  type WireLimits,
} from './messages.ts';

export type NodeRole = 'primary' | 'backup';

/** Every bound the server keeps; all counts are per the unit in the name. */
export interface ServerLimits {
  /** Largest frame body accepted or sent. */
  frame_bytes_max: number;
  /** Largest request or output payload. */
  payload_bytes_max: number;
  /** Open client connections, including ones that have not said hello yet. */
  connections_max: number;
  /** Sessions a client may open with hello; beyond it a new session is refused (too_many_sessions). */
  sessions_max: number;
  /** Entries the table may hold in all, counting ones the host creates; beyond it the least recently active detached, settled entry is evicted. */
  session_table_max: number;
  /** Requests of one session taken but not yet delivered: seq may exceed max(accepted, delivered) by at most this. */
  requests_inflight_max: number;
  /** Outputs of one session kept until the client acks them; beyond it the oldest is dropped. */
  outputs_buffered_max: number;
  /** Bytes of those outputs; beyond it the oldest is dropped (the newest is always kept). */
  output_bytes_buffered_max: number;
  /** Bytes queued on one connection that the client has not read; beyond it the connection is closed. */
  write_buffer_bytes_max: number;
  /** Time from connect to hello. */
  hello_timeout_ms: number;
  /** Time without any frame from the client on an open connection. */
  idle_timeout_ms: number;
  /** Time a session with no connection and no pending request is kept (on the primary only). */
  session_idle_timeout_ms: number;
  /** How often timeouts are checked. */
  sweep_interval_ms: number;
  /** How long a closing connection may take to flush its last frame before it is destroyed. */
  linger_ms: number;
}

export const SERVER_LIMITS_DEFAULT: Readonly<ServerLimits> = Object.freeze({
  frame_bytes_max: FRAME_BYTES_MAX_DEFAULT,
  payload_bytes_max: PAYLOAD_BYTES_MAX_DEFAULT,
  connections_max: 1024,
  sessions_max: 1024,
  session_table_max: 4096,
  requests_inflight_max: 64,
  outputs_buffered_max: 256,
  output_bytes_buffered_max: 4 << 20,
  write_buffer_bytes_max: 16 << 20,
  hello_timeout_ms: 5_000,
  idle_timeout_ms: 60_000,
  session_idle_timeout_ms: 600_000,
  sweep_interval_ms: 1_000,
  linger_ms: 1_000,
});

/** Something the server did or saw that an operator may want to know; never printed by the server itself. */
export interface ServerEvent {
  kind: 'connection_closed' | 'socket_error' | 'session_expired' | 'session_evicted' | 'outputs_evicted' | 'host_error';
  message: string;
  peer?: string;
  session?: number;
  code?: WireErrorCode | 'not_primary' | 'peer_closed';
}

export interface ClientServerOptions {
  /** Address to bind; default 127.0.0.1. Anything but a loopback address needs allowNonLoopback. */
  host?: string;
  /** Port; default 0 (the system picks one; see address()). */
  port?: number;
  allowNonLoopback?: boolean;
  role: () => NodeRole;
  epoch: () => number;
  primaryHint?: () => string | undefined;
  limits?: Partial<ServerLimits>;
  /** A new request for the guest, in order per session; the host must queue it (it may not throw to refuse lightly: the client gets `internal`). */
  onRequest?: (session: number, seq: number, payload: Uint8Array) => void;
  /**
   * This node, as primary, dropped a session by its own decision (idle past session_idle_timeout_ms, or
   * evicted from a full table); a replication layer mirrors it on the backup with forget().
   */
  onSessionExpired?: (session: number) => void;
  onEvent?: (event: ServerEvent) => void;
  /** Milliseconds from an arbitrary origin; default performance.now. */
  clock_ms?: () => number;
}

/** One buffered output of a session. */
export type { BufferedOutput };

/** One session as stored by snapshot(): only what follows from the log, plus buffered outputs. */
export interface SessionSnapshot {
  session: number;
  session_epoch: number;
  delivered: number;
  outputs: number;
  output_acked: number;
  buffered: BufferedOutput[];
}

/** The session table as a plain object (msgpack-able). */
export interface SessionTableSnapshot {
  version: 1;
  next_session: number;
  sessions: SessionSnapshot[];
}

interface Session {
  id: number;
  /** Epoch of the primary that opened it; with the id, the session's identity. */
  epoch: number;
  delivered: number;
  /** Highest seq handed to onRequest on this node (or delivered, whichever is higher). */
  received: number;
  accepted: number;
  outputs: number;
  output_acked: number;
  /** Outputs kept for a resend (bounded: trimBuffer), oldest first. */
  buffer: OutputQueue;
  connection: Connection | undefined;
  active_ms: number;
}

interface Connection {
  socket: net.Socket;
  decoder: FrameDecoder;
  /** Frames queued during this event-loop turn; they leave together (flush). */
  out: WriteBatch;
  /** In the server's list of connections to flush. */
  dirty: boolean;
  /** The session's accepted level is to be sent with the next flush (one cumulative `accepted` per burst). */
  accept_pending: boolean;
  peer: string;
  state: 'hello' | 'open' | 'closed';
  session: Session | undefined;
  opened_ms: number;
  frame_ms: number;
  /** The hello asked for `nodes` messages. */
  nodes: boolean;
}

const LIMIT_RANGES: Record<keyof ServerLimits, [number, number]> = {
  frame_bytes_max: [64, FRAME_BYTES_LIMIT],
  payload_bytes_max: [0, FRAME_BYTES_LIMIT],
  connections_max: [1, 1 << 20],
  sessions_max: [1, 1 << 24],
  session_table_max: [1, 1 << 26],
  requests_inflight_max: [1, 1 << 20],
  outputs_buffered_max: [1, 1 << 20],
  output_bytes_buffered_max: [0, 2 ** 40],
  write_buffer_bytes_max: [1, 2 ** 40],
  hello_timeout_ms: [1, 2 ** 31],
  idle_timeout_ms: [1, 2 ** 31],
  session_idle_timeout_ms: [1, 2 ** 31],
  sweep_interval_ms: [1, 2 ** 31],
  linger_ms: [0, 2 ** 31],
};

/** The limits with defaults filled in, each checked against its range. */
export function resolveServerLimits(partial: Partial<ServerLimits> = {}): ServerLimits {
  const limits = { ...SERVER_LIMITS_DEFAULT, ...partial };
  for (const [name, [min, max]] of Object.entries(LIMIT_RANGES) as Array<[keyof ServerLimits, [number, number]]>) {
    const value = limits[name];
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new NetError('FTW_NET_OPTION', `limit ${name} = ${String(value)} is outside ${min}..${max}`);
    }
  }
  if (limits.session_table_max < limits.sessions_max) {
    throw new NetError('FTW_NET_OPTION', `limit session_table_max = ${limits.session_table_max} is below sessions_max = ${limits.sessions_max}`);
  }
  return limits;
}

/** True for addresses that only this machine can reach. */
export function isLoopback(host: string): boolean {
  if (host === 'localhost' || host === '::1' || host === '0:0:0:0:0:0:0:1') return true;
  const v4 = host.startsWith('::ffff:') ? host.slice(7) : host;
  return net.isIPv4(v4) && v4.startsWith('127.');
}

/** The server side of the client protocol for one node; see the header comment for the host's part. */
export class ClientServer {
  readonly limits: ServerLimits;
  onRequest: ((session: number, seq: number, payload: Uint8Array) => void) | undefined;
  /** See ServerOptions.onSessionExpired; settable, as the node that owns the server may change hands. */
  onSessionExpired: ((session: number) => void) | undefined;
  private readonly options: ClientServerOptions;
  private readonly host: string;
  private readonly port: number;
  private readonly sessions = new Map<number, Session>();
  private evictedUnacked = 0; // outputs dropped from a session buffer before the client acked them
  private readonly connections = new Set<Connection>();
  /** The replication group's client addresses (setNodes), for clients whose hello asked. */
  private nodes: string[] = [];
  private next_session = 1;
  private server: net.Server | undefined;
  private sweeper: NodeJS.Timeout | undefined;
  private closed = false;
  /** Connections with frames queued, flushed together once the current event-loop turn is done. */
  private dirty: Connection[] = [];
  private flush_timer: NodeJS.Immediate | undefined;
  private readonly now: () => number;

  constructor(options: ClientServerOptions) {
    this.options = options;
    this.host = options.host ?? '127.0.0.1';
    this.port = options.port ?? 0;
    if (!Number.isInteger(this.port) || this.port < 0 || this.port > 65535) {
      throw new NetError('FTW_NET_OPTION', `port ${String(options.port)} is outside 0..65535`);
    }
    if (!isLoopback(this.host) && options.allowNonLoopback !== true) {
      throw new NetError(
        'FTW_NET_OPTION',
        `refusing to bind ${this.host}: not a loopback address; pass allowNonLoopback: true to serve clients on other machines`,
      );
    }
    this.limits = resolveServerLimits(options.limits);
    this.onRequest = options.onRequest;
    this.onSessionExpired = options.onSessionExpired;
    this.now = options.clock_ms ?? (() => performance.now());
  }

  // -------------------------------------------------------------------------------------------------------
  // Lifecycle

  /** Starts listening; resolves with the bound address. */
  async listen(): Promise<{ host: string; port: number }> {
    if (this.closed) throw new NetError('FTW_NET_CLOSED', 'listen() after close()');
    if (this.server) throw new NetError('FTW_NET_STATE', 'listen() called twice');
    const server = net.createServer((socket) => this.onConnection(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      const refused = (error: Error) => reject(new NetError('FTW_NET_OPTION', `cannot listen on ${this.host}:${this.port}: ${error.message}`, { cause: error }));
      server.once('error', refused);
      server.listen(this.port, this.host, () => {
        server.off('error', refused);
        resolve();
      });
    });
    server.on('error', (error) => this.event({ kind: 'socket_error', message: `listening socket: ${error.message}` }));
    this.sweeper = setInterval(() => this.sweep(), this.limits.sweep_interval_ms);
    this.sweeper.unref();
    return this.address();
  }

  /** The bound address (after listen). */
  address(): { host: string; port: number } {
    const address = this.server?.address();
    if (!address || typeof address === 'string') throw new NetError('FTW_NET_STATE', 'the server is not listening');
    return { host: address.address, port: address.port };
  }

  /** Stops listening and closes every connection (with a shutting_down error, or abruptly with abort). The session table stays. */
  async close(options: { abort?: boolean } = {}): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.sweeper) clearInterval(this.sweeper);
    for (const connection of [...this.connections]) {
      if (options.abort) this.destroy(connection, 'server aborted');
      else this.fail(connection, 'shutting_down', 'the server is closing');
    }
    const server = this.server;
    if (!server) return;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    for (const connection of [...this.connections]) this.destroy(connection, 'server closed');
  }

  /**
   * Where clients reach the nodes of this primary's replication group, this node first (docs/PROTOCOL.md,
   * `nodes`). Open connections that asked for them get the new list at once; later ones after their welcome.
   */
  setNodes(addresses: readonly string[]): void {
    if (addresses.length > NODES_MAX || !addresses.every(isNodeAddress)) {
      throw new NetError('FTW_NET_OPTION', `node addresses must be at most ${NODES_MAX} host:port: ${JSON.stringify(addresses).slice(0, 200)}`);
    }
    if (addresses.length === this.nodes.length && addresses.every((a, i) => a === this.nodes[i])) return;
    this.nodes = [...addresses];
    for (const connection of this.connections) if (connection.state === 'open' && connection.nodes) this.sendNodes(connection);
  }

  private sendNodes(connection: Connection): void {
    if (this.nodes.length === 0 || this.options.role() !== 'primary') return;
    this.send(connection, { type: 'nodes', epoch: this.options.epoch(), addresses: this.nodes });
  }

  /** Sends not_primary to every client and closes their connections if this node is no longer primary. */
  checkRole(): void {
    if (this.options.role() === 'primary') return;
    for (const connection of [...this.connections]) this.notPrimary(connection);
  }

  /** Counts for tests and monitoring. */
  stats(): { connections: number; sessions: number; buffered_outputs: number; outputs_evicted_unacked: number } {
    let buffered_outputs = 0;
    for (const s of this.sessions.values()) buffered_outputs += s.buffer.length;
    return { connections: this.connections.size, sessions: this.sessions.size, buffered_outputs, outputs_evicted_unacked: this.evictedUnacked };
  }

  // -------------------------------------------------------------------------------------------------------
  // The host's side of the session table

  /** Every session known, with the epoch of the primary that opened it (its identity, with the id). */
  *sessionEpochs(): Generator<[session: number, epoch: number]> {
    for (const s of this.sessions.values()) yield [s.id, s.epoch];
  }

  /** Highest request seq of the session the guest has taken (0 if none or unknown). */
  delivered(session: number): number {
    return this.sessions.get(session)?.delivered ?? 0;
  }

  /** Records that the guest took request `seq` of `session` (seq = delivered or delivered + 1); creates the session if unknown, as opened in `session_epoch` (default: the current epoch). */
  setDelivered(session: number, seq: number, session_epoch?: number): void {
    assertU32('session', session);
    assertSeq('seq', seq, 1);
    const s = this.sessions.get(session);
    if (!s) {
      const epoch = session_epoch ?? this.options.epoch();
      assertSeq('session_epoch', epoch, 0);
      const created = this.create(session, epoch);
      created.delivered = created.received = seq;
      return;
    }
    if (seq === s.delivered) return;
    if (seq !== s.delivered + 1) {
      throw new NetError('FTW_NET_STATE', `setDelivered(session ${session}, seq ${seq}): the next seq to deliver is ${s.delivered + 1}`);
    }
    s.delivered = seq;
    if (s.received < seq) s.received = seq;
    s.active_ms = this.now();
  }

  /** Tells the session's client that every request up to `seq` is durably logged (cumulative; lower seqs are ignored). */
  accept(session: number, seq: number): void {
    assertSeq('seq', seq, 1);
    const s = this.sessions.get(session);
    if (!s || seq <= s.accepted) return;
    if (seq > s.received) {
      throw new NetError('FTW_NET_STATE', `accept(session ${session}, seq ${seq}): only ${s.received} requests were taken`);
    }
    s.accepted = seq;
    const connection = s.connection;
    if (connection?.state === 'open' && this.options.role() === 'primary') {
      // `accepted` is cumulative: the accepts of one turn go out as one, with the level reached by then.
      connection.accept_pending = true;
      this.markDirty(connection);
    }
  }

  /**
   * A node taking over as primary calls this after replaying all the log it holds: every delivered request
   * is accepted (this log is now the surviving copy), and requests this node took earlier but the guest never
   * got are forgotten, so the clients' resends of them are taken again.
   */
  goLive(): void {
    for (const s of this.sessions.values()) {
      s.received = s.delivered;
      if (s.delivered > s.accepted) this.accept(s.id, s.delivered);
    }
  }

  /**
   * Output `outputSeq` (counting the session's outputs from 1) may leave: sent if the client is connected to
   * this primary, and kept until acked either way (bounded). An output for an unknown session is dropped;
   * one the session already has (seq <= its outputs) is ignored. The server keeps `payload`: do not reuse it.
   */
  output(session: number, outputSeq: number, payload: Uint8Array, epoch: number): void {
    assertSeq('outputSeq', outputSeq, 1);
    assertSeq('epoch', epoch, 0);
    if (payload.length > this.limits.payload_bytes_max) {
      throw new NetError('FTW_NET_PAYLOAD', `output ${outputSeq} of session ${session}: ${payload.length} bytes > payload_bytes_max = ${this.limits.payload_bytes_max}`);
    }
    const s = this.sessions.get(session);
    if (!s || outputSeq <= s.outputs) return;
    if (outputSeq !== s.outputs + 1) {
      throw new NetError('FTW_NET_STATE', `output(session ${session}, seq ${outputSeq}): the next output seq is ${s.outputs + 1}`);
    }
    s.outputs = outputSeq;
    s.active_ms = this.now();
    s.buffer.push({ seq: outputSeq, epoch, payload });
    this.trimBuffer(s);
    if (s.connection?.state === 'open' && this.options.role() === 'primary') {
      this.send(s.connection, { type: 'output', epoch, session, seq: outputSeq, payload });
    }
  }

  /** Drops a session (e.g. mirroring the primary's expiry on the backup); its client, if connected, gets session_expired. */
  forget(session: number): void {
    const s = this.sessions.get(session);
    if (!s) return;
    if (s.connection) this.fail(s.connection, 'session_expired', `session ${session} was dropped by the host`);
    this.sessions.delete(session);
  }

  /** The session table as a plain object; payloads are shared, not copied. */
  snapshot(): SessionTableSnapshot {
    const sessions: SessionSnapshot[] = [];
    for (const s of this.sessions.values()) {
      sessions.push({
        session: s.id,
        session_epoch: s.epoch,
        delivered: s.delivered,
        outputs: s.outputs,
        output_acked: s.output_acked,
        buffered: s.buffer.toArray().map((b) => ({ ...b })),
      });
    }
    return { version: 1, next_session: this.next_session, sessions };
  }

  /** Replaces the session table with a snapshot (checked first); open connections are closed. Accepted levels start at 0: see goLive(). */
  restore(snapshot: SessionTableSnapshot): void {
    const restored = checkSnapshot(snapshot, this.limits);
    for (const connection of [...this.connections]) this.fail(connection, 'shutting_down', 'the session table was replaced');
    this.sessions.clear();
    const now = this.now();
    for (const snap of restored.sessions) {
      const s: Session = {
        id: snap.session,
        epoch: snap.session_epoch,
        delivered: snap.delivered,
        received: snap.delivered,
        accepted: 0,
        outputs: snap.outputs,
        output_acked: snap.output_acked,
        buffer: new OutputQueue(snap.buffered.map((b) => ({ ...b }))),
        connection: undefined,
        active_ms: now,
      };
      this.sessions.set(s.id, s);
    }
    this.next_session = restored.next_session;
    for (const id of this.sessions.keys()) this.bumpNextSession(id);
  }

  // -------------------------------------------------------------------------------------------------------
  // Connections

  private onConnection(socket: net.Socket): void {
    const peer = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    const now = this.now();
    const connection: Connection = {
      socket,
      decoder: new FrameDecoder(this.limits.frame_bytes_max),
      out: new WriteBatch(),
      dirty: false,
      accept_pending: false,
      peer,
      state: 'hello',
      session: undefined,
      opened_ms: now,
      frame_ms: now,
      nodes: false,
    };
    socket.on('error', (error) => this.event({ kind: 'socket_error', peer, message: error.message }));
    socket.on('close', () => this.onSocketClose(connection));
    if (this.closed) {
      socket.destroy();
      return;
    }
    this.connections.add(connection);
    if (this.connections.size > this.limits.connections_max) {
      this.fail(connection, 'too_many_connections', `the server holds connections_max = ${this.limits.connections_max} connections`);
      return;
    }
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(connection, chunk));
  }

  private onSocketClose(connection: Connection): void {
    if (connection.state !== 'closed') {
      connection.state = 'closed';
      this.event({ kind: 'connection_closed', peer: connection.peer, code: 'peer_closed', message: 'the client closed the connection', session: connection.session?.id });
    }
    this.detach(connection);
    connection.out.clear();
    this.connections.delete(connection);
  }

  private onData(connection: Connection, chunk: Buffer): void {
    if (connection.state === 'closed') return;
    try {
      connection.decoder.push(chunk);
      let body = connection.decoder.next();
      if (body !== undefined) connection.frame_ms = this.now();
      for (; body !== undefined; body = connection.decoder.next()) {
        this.onMessage(connection, decodeClientMessage(body));
        if (isClosed(connection)) return;
      }
    } catch (error) {
      if (error instanceof ProtocolError) {
        this.fail(connection, error.code, `${error.message} from ${connection.peer}`);
      } else {
        this.event({ kind: 'host_error', peer: connection.peer, message: `unexpected: ${(error as Error)?.stack ?? String(error)}` });
        this.fail(connection, 'internal', 'the server failed to handle a frame');
      }
    }
  }

  private onMessage(connection: Connection, message: ClientMessage): void {
    if (this.options.role() !== 'primary') {
      this.notPrimary(connection);
      return;
    }
    if (connection.state === 'hello') {
      if (message.type !== 'hello') throw new ProtocolError('not_hello', `first message was ${message.type}, expected hello`);
      this.onHello(connection, message);
      return;
    }
    switch (message.type) {
      case 'hello':
        throw new ProtocolError('not_hello', 'a second hello on one connection');
      case 'request':
        this.onRequestMessage(connection, message);
        return;
      case 'ack':
        this.onAck(connection, message);
        return;
      case 'ping':
        this.send(connection, { type: 'pong' });
        return;
    }
  }

  private onHello(connection: Connection, hello: HelloMessage): void {
    if (hello.version !== PROTOCOL_VERSION) {
      throw new ProtocolError('unsupported_version', `hello.version = ${hello.version}; this server speaks ${PROTOCOL_VERSION}`);
    }
    const found = hello.session === undefined ? undefined : this.sessions.get(hello.session);
    let s: Session;
    let resumed = false;
    if (found !== undefined && found.epoch === hello.session_epoch) {
      this.checkResume(found, hello);
      s = found;
      resumed = true;
    } else {
      s = this.openSession();
      // A new session has no outputs yet; what the client held belonged to the session it asked for.
      hello = { ...hello, last_output_seq: 0 };
    }
    if (s.connection) this.fail(s.connection, 'session_taken_over', `session ${s.id} was resumed by ${connection.peer}`);
    this.ackTo(s, hello.last_output_seq);
    connection.session = s;
    connection.state = 'open';
    s.connection = connection;
    s.active_ms = this.now();
    this.send(connection, {
      type: 'welcome',
      version: PROTOCOL_VERSION,
      epoch: this.options.epoch(),
      session: s.id,
      session_epoch: s.epoch,
      role: 'primary',
      resumed,
      accepted: s.accepted,
      received: s.received,
      outputs: s.outputs,
      limits: this.wireLimits(),
    });
    connection.nodes = hello.nodes === true;
    if (connection.nodes) this.sendNodes(connection);
    for (const b of s.buffer) {
      if (isClosed(connection)) return;
      if (b.seq > hello.last_output_seq) this.send(connection, { type: 'output', epoch: b.epoch, session: s.id, seq: b.seq, payload: b.payload });
    }
  }

  /** A resuming client must not claim outputs the session never produced, nor need ones the buffer dropped. */
  private checkResume(s: Session, hello: HelloMessage): void {
    const have = hello.last_output_seq;
    if (have > s.outputs) {
      throw new ProtocolError('ack_out_of_range', `hello.last_output_seq = ${have} but session ${s.id} has produced ${s.outputs} outputs`);
    }
    const oldest = s.buffer.first?.seq ?? s.outputs + 1;
    if (have < s.outputs && have + 1 < oldest) {
      throw new ProtocolError('outputs_lost', `session ${s.id} no longer holds outputs ${have + 1}..${oldest - 1} (acked up to ${s.output_acked}, buffer starts at ${oldest})`);
    }
  }

  private onRequestMessage(connection: Connection, request: RequestMessage): void {
    const s = this.sessionOf(connection, request.session);
    if (request.seq <= s.received) {
      // A resend (reconnect, failover): never handed up twice. Answer now if it is already durable; else the
      // accept() to come reaches whichever connection the session has by then.
      if (request.seq <= s.accepted) this.send(connection, { type: 'accepted', session: s.id, seq: s.accepted });
      return;
    }
    if (request.seq !== s.received + 1) {
      throw new ProtocolError('seq_gap', `request seq ${request.seq} of session ${s.id}, but the next expected is ${s.received + 1}`);
    }
    if (request.payload.length > this.limits.payload_bytes_max) {
      throw new ProtocolError('payload_too_large', `request seq ${request.seq}: payload ${request.payload.length} bytes > payload_bytes_max = ${this.limits.payload_bytes_max}`);
    }
    const settled = Math.max(s.accepted, s.delivered);
    if (request.seq - settled > this.limits.requests_inflight_max) {
      throw new ProtocolError('too_many_inflight', `request seq ${request.seq} of session ${s.id}: only up to ${settled} are settled and requests_inflight_max = ${this.limits.requests_inflight_max}`);
    }
    const onRequest = this.onRequest;
    if (!onRequest) {
      this.fail(connection, 'internal', 'the server has no request handler yet');
      return;
    }
    s.received = request.seq;
    s.active_ms = this.now();
    try {
      onRequest(s.id, request.seq, request.payload);
    } catch (error) {
      s.received = request.seq - 1;
      this.event({ kind: 'host_error', session: s.id, peer: connection.peer, message: `onRequest threw: ${(error as Error)?.message ?? String(error)}` });
      this.fail(connection, 'internal', `the host refused request seq ${request.seq}; send it again`);
    }
  }

  private onAck(connection: Connection, ack: AckMessage): void {
    const s = this.sessionOf(connection, ack.session);
    if (ack.output_seq > s.outputs) {
      throw new ProtocolError('ack_out_of_range', `ack output_seq ${ack.output_seq} but session ${s.id} has produced ${s.outputs} outputs`);
    }
    this.ackTo(s, ack.output_seq);
  }

  private sessionOf(connection: Connection, session: number): Session {
    const s = connection.session;
    if (!s || s.id !== session) {
      throw new ProtocolError('wrong_session', `message names session ${session} but this connection holds session ${s?.id ?? 'none'}`);
    }
    return s;
  }

  // -------------------------------------------------------------------------------------------------------
  // Session table

  private openSession(): Session {
    if (this.sessions.size >= this.limits.sessions_max) this.expireIdle();
    if (this.sessions.size >= this.limits.sessions_max) {
      throw new ProtocolError('too_many_sessions', `the session table holds sessions_max = ${this.limits.sessions_max} sessions`);
    }
    // Ids are never reused while in the table, and next_session only moves on, so within one epoch an id
    // names one session; across epochs the (id, epoch) pair does.
    let id = this.next_session;
    for (let tries = 0; this.sessions.has(id); tries++) {
      if (tries > this.sessions.size) throw new NetError('FTW_NET_STATE', 'no free session id');
      id = id >= U32_MAX ? 1 : id + 1;
    }
    const s = this.create(id, this.options.epoch());
    return s;
  }

  private create(id: number, epoch: number): Session {
    if (this.sessions.size >= this.limits.session_table_max) this.evictOne();
    const s: Session = {
      id,
      epoch,
      delivered: 0,
      received: 0,
      accepted: 0,
      outputs: 0,
      output_acked: 0,
      buffer: new OutputQueue(),
      connection: undefined,
      active_ms: this.now(),
    };
    this.sessions.set(id, s);
    this.bumpNextSession(id);
    return s;
  }

  private bumpNextSession(id: number): void {
    if (id >= this.next_session) this.next_session = id >= U32_MAX ? 1 : id + 1;
  }

  /** Makes room for an entry the host creates: drops the least recently active detached, settled one. */
  private evictOne(): void {
    let victim: Session | undefined;
    for (const s of this.sessions.values()) {
      if (s.connection || s.received > s.delivered) continue;
      if (!victim || s.active_ms < victim.active_ms) victim = s;
    }
    if (!victim) return; // every entry is busy: grow past the limit rather than refuse the host
    this.sessions.delete(victim.id);
    this.event({ kind: 'session_evicted', session: victim.id, message: `session ${victim.id} evicted: session_table_max = ${this.limits.session_table_max}` });
    if (this.options.role() === 'primary') this.onSessionExpired?.(victim.id);
  }

  /** On the primary, drops sessions idle past session_idle_timeout_ms with no connection and no request pending. */
  private expireIdle(): void {
    if (this.options.role() !== 'primary') return;
    const now = this.now();
    for (const s of [...this.sessions.values()]) {
      if (s.connection || s.received > s.delivered) continue;
      if (now - s.active_ms < this.limits.session_idle_timeout_ms) continue;
      this.sessions.delete(s.id);
      this.event({ kind: 'session_expired', session: s.id, message: `session ${s.id} idle for ${Math.round(now - s.active_ms)} ms` });
      this.onSessionExpired?.(s.id);
    }
  }

  private ackTo(s: Session, seq: number): void {
    if (seq <= s.output_acked) return;
    s.output_acked = seq;
    let drop = 0;
    while (drop < s.buffer.length && s.buffer.at(drop)!.seq <= seq) drop++;
    if (drop > 0) s.buffer.drop(drop);
  }

  private trimBuffer(s: Session): void {
    let drop = 0;
    let bytes = s.buffer.bytes;
    const keep_max = this.limits.outputs_buffered_max;
    while (s.buffer.length - drop > 1 && (s.buffer.length - drop > keep_max || bytes > this.limits.output_bytes_buffered_max)) {
      bytes -= s.buffer.at(drop++)!.payload.length;
    }
    if (drop === 0) return;
    const last = s.buffer.at(drop - 1)!.seq;
    s.buffer.drop(drop);
    if (last > s.output_acked) {
      this.evictedUnacked += drop;
      // A backup's clients ack the primary, not it: there, dropping the oldest is the buffer's normal
      // turnover (bounded by outputs_buffered_max), counted in stats() rather than announced per output.
      if (this.options.role() !== 'primary') return;
      this.event({ kind: 'outputs_evicted', session: s.id, message: `session ${s.id}: unacked outputs up to ${last} dropped from the buffer` });
    }
  }

  // -------------------------------------------------------------------------------------------------------
  // Writing and closing

  /**
   * Queues a frame. The frames a connection gets during one event-loop turn leave together, in one socket
   * write (flushAll, on setImmediate); sooner once WRITE_BATCH_BYTES_MAX are queued, or when they would take
   * the connection past write_buffer_bytes_max (then the flush checks what the client left unread).
   */
  private send(connection: Connection, message: ServerMessage): void {
    if (connection.state === 'closed') return;
    writeMessage(connection.out, message);
    const pending = connection.out.pending;
    if (pending >= WRITE_BATCH_BYTES_MAX || pending + connection.socket.writableLength > this.limits.write_buffer_bytes_max) {
      this.flush(connection);
      return;
    }
    this.markDirty(connection);
  }

  private markDirty(connection: Connection): void {
    if (connection.dirty) return;
    connection.dirty = true;
    this.dirty.push(connection);
    this.flush_timer ??= setImmediate(() => this.flushAll());
  }

  /** Queues the `accepted` that accept() left for the end of the burst. */
  private queueAccepted(connection: Connection): void {
    if (!connection.accept_pending) return;
    connection.accept_pending = false;
    const s = connection.session;
    if (s && s.accepted > 0) writeMessage(connection.out, { type: 'accepted', session: s.id, seq: s.accepted });
  }

  private flushAll(): void {
    this.flush_timer = undefined;
    const dirty = this.dirty;
    this.dirty = [];
    for (const connection of dirty) {
      connection.dirty = false;
      this.flush(connection);
    }
  }

  /** Writes what the connection has queued; cuts it if the client leaves more than write_buffer_bytes_max unread. */
  private flush(connection: Connection): void {
    if (connection.state !== 'closed') this.queueAccepted(connection);
    const bytes = connection.out.take();
    if (bytes === undefined || connection.state === 'closed') return;
    connection.socket.write(bytes);
    if (connection.socket.writableLength > this.limits.write_buffer_bytes_max) {
      connection.state = 'closed';
      connection.out.clear();
      this.detach(connection);
      this.event({ kind: 'connection_closed', peer: connection.peer, code: 'slow_reader', message: `${connection.socket.writableLength} bytes unread > write_buffer_bytes_max`, session: connection.session?.id });
      connection.socket.destroy();
    }
  }

  /** Sends an error frame naming what was wrong, then closes. */
  private fail(connection: Connection, code: WireErrorCode, message: string): void {
    this.closeWith(connection, { type: 'error', code, message }, code, message);
  }

  private notPrimary(connection: Connection): void {
    const hint = this.options.primaryHint?.();
    const message: NotPrimaryMessage = { type: 'not_primary', epoch: this.options.epoch() };
    if (hint !== undefined) message.primary_hint = hint;
    this.closeWith(connection, message, 'not_primary', `this node is not primary${hint ? `; primary is ${hint}` : ''}`);
  }

  private closeWith(connection: Connection, last: ServerMessage, code: ServerEvent['code'], message: string): void {
    if (connection.state === 'closed') return;
    connection.state = 'closed';
    this.detach(connection);
    this.event({ kind: 'connection_closed', peer: connection.peer, code, message, session: connection.session?.id });
    const socket = connection.socket;
    if (socket.destroyed) return connection.out.clear();
    // What was queued goes first, the last frame after it, in the one write that ends the stream.
    this.queueAccepted(connection);
    writeMessage(connection.out, last);
    socket.end(connection.out.take()!);
    const timer = setTimeout(() => socket.destroy(), this.limits.linger_ms);
    timer.unref();
    socket.once('close', () => clearTimeout(timer));
  }

  private destroy(connection: Connection, message: string): void {
    if (connection.state !== 'closed') {
      connection.state = 'closed';
      this.event({ kind: 'connection_closed', peer: connection.peer, message, session: connection.session?.id });
    }
    this.detach(connection);
    connection.out.clear();
    connection.socket.destroy();
    this.connections.delete(connection);
  }

  private detach(connection: Connection): void {
    const s = connection.session;
    if (s && s.connection === connection) {
      s.connection = undefined;
      s.active_ms = this.now();
    }
  }

  private sweep(): void {
    const now = this.now();
    for (const connection of [...this.connections]) {
      if (connection.state === 'hello' && now - connection.opened_ms > this.limits.hello_timeout_ms) {
        this.fail(connection, 'hello_timeout', `no hello within hello_timeout_ms = ${this.limits.hello_timeout_ms}`);
      } else if (connection.state === 'open' && now - connection.frame_ms > this.limits.idle_timeout_ms) {
        this.fail(connection, 'idle_timeout', `no frame within idle_timeout_ms = ${this.limits.idle_timeout_ms}`);
      }
    }
    this.expireIdle();
  }

  private wireLimits(): WireLimits {
    const l = this.limits;
    return {
      frame_bytes_max: l.frame_bytes_max,
      payload_bytes_max: l.payload_bytes_max,
      requests_inflight_max: l.requests_inflight_max,
      outputs_buffered_max: l.outputs_buffered_max,
      idle_timeout_ms: l.idle_timeout_ms,
    };
  }

  private event(event: ServerEvent): void {
    try {
      this.options.onEvent?.(event);
    } catch {
      // An observer's failure must not take the server down.
    }
  }
}

/** A handler may close the connection; this re-reads the state TypeScript narrowed earlier. */
function isClosed(connection: Connection): boolean {
  return connection.state === 'closed';
}

function assertU32(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 0 || value > U32_MAX) throw new NetError('FTW_NET_STATE', `${name} = ${value} is not a u32`);
}

function assertSeq(name: string, value: number, min: number): void {
  if (!Number.isSafeInteger(value) || value < min) throw new NetError('FTW_NET_STATE', `${name} = ${value} is not an integer in ${min}..${SEQ_MAX}`);
}

/** Checks a snapshot field by field; returns it typed. */
function checkSnapshot(snapshot: SessionTableSnapshot, limits: ServerLimits): SessionTableSnapshot {
  const bad = (what: string): never => {
    throw new NetError('FTW_NET_SNAPSHOT', what);
  };
  if (typeof snapshot !== 'object' || snapshot === null) bad('snapshot is not an object');
  if (snapshot.version !== 1) bad(`snapshot version ${String(snapshot.version)} is not 1`);
  const isSeq = (v: unknown, min = 0): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= min;
  if (!isSeq(snapshot.next_session, 1) || snapshot.next_session > U32_MAX) bad(`next_session ${String(snapshot.next_session)} is not in 1..${U32_MAX}`);
  if (!Array.isArray(snapshot.sessions)) bad('sessions is not an array');
  const seen = new Set<number>();
  snapshot.sessions.forEach((s, i) => {
    const where = `sessions[${i}]`;
    if (!isSeq(s?.session) || s.session > U32_MAX) bad(`${where}.session is not a u32`);
    if (seen.has(s.session)) bad(`${where}: session ${s.session} appears twice`);
    seen.add(s.session);
    for (const field of ['session_epoch', 'delivered', 'outputs', 'output_acked'] as const) {
      if (!isSeq(s[field])) bad(`${where}.${field} = ${String(s[field])} is not an integer >= 0`);
    }
    if (s.output_acked > s.outputs) bad(`${where}: output_acked ${s.output_acked} > outputs ${s.outputs}`);
    if (!Array.isArray(s.buffered)) bad(`${where}.buffered is not an array`);
    let expect = s.outputs - s.buffered.length + 1;
    if (expect <= s.output_acked && s.buffered.length > 0) bad(`${where}: buffered outputs start at ${expect}, at or below output_acked ${s.output_acked}`);
    for (const b of s.buffered) {
      if (!isSeq(b?.seq, 1) || b.seq !== expect) bad(`${where}: buffered output seq ${String(b?.seq)}, expected ${expect} (they end at outputs = ${s.outputs})`);
      if (!isSeq(b.epoch)) bad(`${where}: buffered output ${b.seq} has epoch ${String(b.epoch)}`);
      if (!(b.payload instanceof Uint8Array) || b.payload.length > limits.payload_bytes_max) bad(`${where}: buffered output ${b.seq} payload is not bin within payload_bytes_max`);
      expect++;
    }
  });
  return snapshot;
}
