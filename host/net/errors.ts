// Errors of the net layer. Two families: what the host or a caller did wrong (`NetError`, thrown), and what a
// peer sent that breaks the protocol (`ProtocolError`, turned into an `error` frame on the wire).

/** Codes a peer sees in an `error` frame; docs/PROTOCOL.md lists what each one means. */
export type WireErrorCode =
  | 'frame_too_large' // a frame's length prefix is above the receiver's frame_bytes_max
  | 'frame_empty' // a frame's length prefix is 0
  | 'malformed' // the frame body is not exactly one msgpack value
  | 'bad_message' // the value is not a map with a string `type`, or a field is missing or has the wrong type
  | 'unknown_type' // `type` names no message this side accepts
  | 'unsupported_version' // hello.version is not one the server speaks
  | 'not_hello' // the first message on a connection was not `hello`, or a second `hello` came
  | 'wrong_session' // a message names a session other than the connection's
  | 'session_expired' // the host dropped the session from the table while the client held it
  | 'seq_out_of_range' // a seq is not an integer in 1 .. 2^53-1
  | 'seq_gap' // a request seq skips past the next one the server expects
  | 'payload_too_large' // a request payload above payload_bytes_max
  | 'too_many_inflight' // a request beyond the session's requests_inflight_max window
  | 'too_many_sessions' // the session table is full
  | 'too_many_connections' // the server holds connections_max connections
  | 'ack_out_of_range' // an ack or hello.last_output_seq above the highest output seq of the session
  | 'outputs_lost' // outputs the client has not acknowledged were dropped from the buffer
  | 'hello_timeout' // no hello within hello_timeout_ms of connecting
  | 'idle_timeout' // no frame within idle_timeout_ms
  | 'slow_reader' // the client let more than write_buffer_bytes_max of frames pile up unread
  | 'session_taken_over' // another connection resumed this session
  | 'shutting_down' // the server is closing
  | 'internal'; // the host refused a request (its callback threw); the session is intact

/** A peer broke the protocol; `code` goes on the wire, `message` says what and where. */
export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
  constructor(
    readonly code: WireErrorCode,
    message: string,
  ) {
    super(`${code}: ${message}`);
  }
}

/** Why the net layer threw. */
export type NetErrorCode =
  | 'FTW_NET_OPTION' // an option outside its range (bad address, limit, non-loopback host without consent)
  | 'FTW_NET_STATE' // the host used the API against the session table's invariants (seq order, unknown session)
  | 'FTW_NET_SNAPSHOT' // a session table snapshot handed to restore() is not well-formed
  | 'FTW_NET_CLOSED' // the client or server was closed
  | 'FTW_NET_QUEUE_FULL' // the client holds requests_queued_max unaccepted requests
  | 'FTW_NET_PAYLOAD' // a payload above payload_bytes_max
  | 'FTW_NET_UNAVAILABLE' // no primary reached, or requests not accepted, within retries_max attempts
  | 'FTW_NET_SESSION_LOST' // the servers no longer hold the session, or outputs of it were dropped
  | 'FTW_NET_REFUSED'; // the server closed the connection with an error the client cannot retry

/** Base of every error host/net throws or rejects with; `code` says which kind. */
export class NetError extends Error {
  override readonly name: string = 'NetError';
  constructor(
    readonly code: NetErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${code}: ${message}`, options);
  }
}
