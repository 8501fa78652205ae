// Compute-bound guest driven by interrupts. It runs rounds of integer work (a xorshift/multiply hash)
// forever; `ft_interrupt` counts timer ticks and notes waiting input, and between rounds the main loop
// drains its messages. Every message, whatever it says, is answered on its session with one line:
//   TICKS <ticks delivered> LAST <last tick's arg> ROUNDS <rounds> SUM <hash, 8 hex> MONO <clock_mono ns>
// The handler only writes the globals below (no allocation, no imports): it may run at any check point,
// also inside the allocator, and even before the top-level code has started. Exits when input closes.

import * as ft from "../sdk";

const ROUND_STEPS: i32 = 20_000;
// Poll for input every this many rounds even without an INTERRUPT_INPUT, so the guest also answers
// under a host that delivers no interrupts (each empty poll is one logged `recv` returning 0).
const POLL_EVERY_ROUNDS: i32 = 256;

// Written by ft_interrupt. Plain globals with constant initializers, so they are valid before `_start`
// runs. The main loop reads them only around `ft` import calls, which the optimizer must assume can
// change any global: that keeps the reads from being hoisted out of the loop.
let ticks: u32 = 0;
let lastTick: i32 = 0;
let inputReady: bool = false;

/** Called by the host at a check point; see docs/ABI.md ("Interrupts"). Unknown kinds are ignored. */
export function ft_interrupt(kind: i32, arg: i32): void {
  if (kind == ft.INTERRUPT_TIMER) {
    ticks++;
    lastTick = arg;
  } else if (kind == ft.INTERRUPT_INPUT) {
    inputReady = true;
  }
}

let hash: u32 = 0x9e3779b9;
let rounds: u64 = 0;

function workRound(): void {
  let x = hash;
  for (let i = 0; i < ROUND_STEPS; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    x = x * 0x85ebca6b + <u32>i;
  }
  hash = x;
  rounds++;
}

function hex32(value: u32): string {
  const bytes = new Uint8Array(4);
  for (let i = 0; i < 4; i++) unchecked((bytes[i] = <u8>(value >> (24 - 8 * i))));
  return ft.hexEncode(bytes);
}

function answer(message: ft.Message): void {
  const mono = ft.clockMono();
  // Copy the interrupt state before building the text: the calls below have check points, where another
  // tick may arrive, and the reply should describe one moment.
  const ticksSeen = ticks;
  const lastTickSeen = lastTick;
  ft.send(
    message.session,
    "TICKS " + ticksSeen.toString() + " LAST " + lastTickSeen.toString() + " ROUNDS " + rounds.toString() +
      " SUM " + hex32(hash) + " MONO " + mono.toString() + "\n",
  );
}

/** Answers every queued message without waiting; false once input is closed. */
function drainInput(): bool {
  inputReady = false;
  let message = ft.recv(0);
  while (message != null) {
    answer(message);
    message = ft.recv(0);
  }
  return !ft.inputClosed();
}

function main(): void {
  ft.log("ticker: running");
  for (;;) {
    workRound();
    if (inputReady || rounds % <u64>POLL_EVERY_ROUNDS == 0) {
      if (!drainInput()) break;
    }
  }
  ft.log("ticker: input closed after " + rounds.toString() + " rounds, " + ticks.toString() + " ticks");
}

main();
