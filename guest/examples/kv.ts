// Key-value store served over recv/send; the text protocol is specified in docs/ABI.md ("kv protocol").
// Each message holds one or more request lines; every line gets exactly one reply line, in order, sent
// back to the session it came from. Expiry reads clock_now (at most once per message, and only when an
// expiring key is touched); ID reads random_fill. Exits when input closes.

import * as ft from "../sdk";

const KEYS_MAX: i32 = 10_000;
const KEY_BYTES_MAX: i32 = 256;
const VALUE_BYTES_MAX: i32 = 4096;
const TTL_MS_MAX: i64 = 365 * 24 * 3600 * 1000;
const REQUEST_BYTES_MAX: i32 = 65536;
// Replies are batched into one send per message, split at line ends once a batch passes this size.
const REPLY_FLUSH_BYTES: i32 = 16384;
// The longest request is `SET key value ttl_ms`; one more token is enough to know a line has too many.
const TOKENS_MAX: i32 = 4;
const ID_BYTES: i32 = 8;
const NEVER: i64 = i64.MAX_VALUE;
const NS_PER_MS: i64 = 1_000_000;

const NEWLINE: u8 = 0x0a;
const RETURN: u8 = 0x0d;
const SPACE: u8 = 0x20;

class Item {
  constructor(
    public value: string,
    /** clock_now time (ns) from which the key reads as absent; NEVER for keys without a ttl. */
    public expiresAtNs: i64,
  ) {}
}

const store = new Map<string, Item>();

// clock_now is read lazily and at most once per message: every request in a message sees the same time.
let nowKnown = false;
let nowNs: i64 = 0;

function now(): i64 {
  if (!nowKnown) {
    nowNs = ft.clockNow();
    nowKnown = true;
  }
  return nowNs;
}

function expired(item: Item): bool {
  return item.expiresAtNs != NEVER && now() >= item.expiresAtNs;
}

/** The live item under key, dropping it first if it has expired. */
function lookup(key: string): Item | null {
  if (!store.has(key)) return null;
  const item = store.get(key);
  if (expired(item)) {
    store.delete(key);
    return null;
  }
  return item;
}

function sweepExpired(): void {
  const keys = store.keys();
  for (let i = 0; i < keys.length; i++) {
    const key = unchecked(keys[i]);
    if (expired(store.get(key))) store.delete(key);
  }
}

/** True when one more key fits, after dropping expired keys if the store looks full. */
function roomForNewKey(): bool {
  if (store.size < KEYS_MAX) return true;
  sweepExpired();
  return store.size < KEYS_MAX;
}

// ---- one request line ----------------------------------------------------------------------------------

// Token i of the current line is bytes[tokenStart[i], tokenEnd[i]).
const tokenStart = new StaticArray<i32>(TOKENS_MAX + 1);
const tokenEnd = new StaticArray<i32>(TOKENS_MAX + 1);

/** Splits bytes[start, end) at spaces; returns the token count, capped at TOKENS_MAX + 1. */
function tokenize(bytes: Uint8Array, start: i32, end: i32): i32 {
  let count = 0;
  let i = start;
  while (i < end && count <= TOKENS_MAX) {
    while (i < end && unchecked(bytes[i]) == SPACE) i++;
    if (i == end) break;
    unchecked((tokenStart[count] = i));
    while (i < end && unchecked(bytes[i]) != SPACE) i++;
    unchecked((tokenEnd[count] = i));
    count++;
  }
  return count;
}

function tokenBytes(i: i32): i32 {
  return unchecked(tokenEnd[i]) - unchecked(tokenStart[i]);
}

function tokenText(bytes: Uint8Array, i: i32): string {
  return ft.utf8Decode(bytes, unchecked(tokenStart[i]), unchecked(tokenEnd[i]));
}

function doSet(bytes: Uint8Array, count: i32): string {
  if (count != 3 && count != 4) return "ERR usage: SET <key> <value> [ttl_ms]";
  if (tokenBytes(1) > KEY_BYTES_MAX) return "ERR key too long";
  if (tokenBytes(2) > VALUE_BYTES_MAX) return "ERR value too long";
  let expiresAtNs = NEVER;
  if (count == 4) {
    const ttl = ft.parseDecimal(bytes, unchecked(tokenStart[3]), unchecked(tokenEnd[3]));
    if (!ttl.ok || ttl.value < 1 || ttl.value > TTL_MS_MAX) return "ERR bad ttl_ms";
    expiresAtNs = now() + ttl.value * NS_PER_MS;
  }
  const key = tokenText(bytes, 1);
  if (lookup(key) == null && !roomForNewKey()) return "ERR store full";
  store.set(key, new Item(tokenText(bytes, 2), expiresAtNs));
  return "OK";
}

function doGet(bytes: Uint8Array, count: i32): string {
  if (count != 2) return "ERR usage: GET <key>";
  if (tokenBytes(1) > KEY_BYTES_MAX) return "ERR key too long";
  const item = lookup(tokenText(bytes, 1));
  if (item == null) return "NOT_FOUND";
  return "VALUE " + item.value;
}

function doDel(bytes: Uint8Array, count: i32): string {
  if (count != 2) return "ERR usage: DEL <key>";
  if (tokenBytes(1) > KEY_BYTES_MAX) return "ERR key too long";
  const key = tokenText(bytes, 1);
  if (lookup(key) == null) return "NOT_FOUND";
  store.delete(key);
  return "OK";
}

function doIncr(bytes: Uint8Array, count: i32): string {
  if (count != 2) return "ERR usage: INCR <key>";
  if (tokenBytes(1) > KEY_BYTES_MAX) return "ERR key too long";
  const key = tokenText(bytes, 1);
  const item = lookup(key);
  if (item == null) {
    if (!roomForNewKey()) return "ERR store full";
    store.set(key, new Item("1", NEVER));
    return "VALUE 1";
  }
  const digits = ft.utf8Encode(item.value);
  const parsed = ft.parseDecimal(digits, 0, digits.length);
  if (!parsed.ok) return "ERR not an integer";
  if (parsed.value == i64.MAX_VALUE) return "ERR overflow";
  // The key keeps its expiry, as in Redis.
  item.value = (parsed.value + 1).toString();
  return "VALUE " + item.value;
}

function doId(count: i32): string {
  if (count != 1) return "ERR usage: ID";
  return "ID " + ft.hexEncode(ft.randomBytes(ID_BYTES));
}

function doCount(count: i32): string {
  if (count != 1) return "ERR usage: COUNT";
  sweepExpired();
  return "VALUE " + store.size.toString();
}

/** The reply line (without its newline) to the request in bytes[start, end). */
function execute(bytes: Uint8Array, start: i32, end: i32): string {
  if (!ft.utf8Valid(bytes, start, end)) return "ERR invalid utf-8";
  const count = tokenize(bytes, start, end);
  if (count == 0) return "ERR empty request";
  if (count > TOKENS_MAX) return "ERR too many arguments";
  const command = tokenText(bytes, 0);
  if (command == "SET") return doSet(bytes, count);
  if (command == "GET") return doGet(bytes, count);
  if (command == "DEL") return doDel(bytes, count);
  if (command == "INCR") return doIncr(bytes, count);
  if (command == "ID") return doId(count);
  if (command == "COUNT") return doCount(count);
  return "ERR unknown command";
}

// ---- one message ---------------------------------------------------------------------------------------

class Reply {
  private parts: string[] = [];
  private bytes: i32 = 0;

  constructor(private session: u32) {}

  line(text: string): void {
    this.parts.push(text);
    this.parts.push("\n");
    this.bytes += String.UTF8.byteLength(text) + 1;
    if (this.bytes >= REPLY_FLUSH_BYTES) this.flush();
  }

  flush(): void {
    if (this.parts.length == 0) return;
    ft.send(this.session, this.parts.join(""));
    this.parts = [];
    this.bytes = 0;
  }
}

function serve(message: ft.Message): void {
  nowKnown = false;
  const bytes = message.payload;
  const reply = new Reply(message.session);
  if (bytes.length > REQUEST_BYTES_MAX) {
    reply.line("ERR request too large");
    reply.flush();
    return;
  }
  // A final newline ends the last line; it does not start an empty one.
  let end = bytes.length;
  if (end > 0 && unchecked(bytes[end - 1]) == NEWLINE) end--;
  let start = 0;
  for (;;) {
    let lineEnd = start;
    while (lineEnd < end && unchecked(bytes[lineEnd]) != NEWLINE) lineEnd++;
    const textEnd = lineEnd > start && unchecked(bytes[lineEnd - 1]) == RETURN ? lineEnd - 1 : lineEnd;
    reply.line(execute(bytes, start, textEnd));
    if (lineEnd >= end) break;
    start = lineEnd + 1;
  }
  reply.flush();
}

function main(): void {
  ft.log("kv: serving");
  let messages = 0;
  for (;;) {
    const message = ft.recv(ft.WAIT_FOREVER);
    if (message == null) {
      if (ft.inputClosed()) break;
      continue;
    }
    serve(message);
    messages++;
  }
  ft.log("kv: input closed after " + messages.toString() + " messages, " + store.size.toString() + " keys");
}

main();
