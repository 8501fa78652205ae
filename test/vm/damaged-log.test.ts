// Every single-byte change of a small recorded log is caught, in-process (test/e2e covers the CLI).
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { instrument } from '../../host/instrument/index.ts';
import { decodeLogFile, encodeFileHeader, FrameWriter, LogError } from '../../host/log/index.ts';
import type { LogEntry } from '../../host/log/index.ts';
import { GuestCore, DivergenceError, ArraySource } from '../../host/vm/index.ts';
import { MemorySink, ScriptedWorld, message } from '../support/memlog.ts';

const kv = new WebAssembly.Module(instrument(readFileSync(new URL('../../build/guest/kv.wasm', import.meta.url))));
const MODULE_HASH = new Uint8Array(32).fill(7);

function recordFile(): Uint8Array {
  const sink = new MemorySink();
  new GuestCore({ module: kv, mode: 'record', world: new ScriptedWorld(5, [message(1, 'SET k v'), message(1, 'GET k'), message(2, 'ID')]), sink }).run();
  const chunks: Uint8Array[] = [encodeFileHeader({ moduleHash: MODULE_HASH, ftwasmVersion: '0.1.0', createdAtMs: 1 })];
  const frames = new FrameWriter({ entries_max: 4, on_frame: (f) => chunks.push(f) });
  for (const e of sink.entries) frames.append(e);
  frames.flush();
  return Buffer.concat(chunks);
}

function replayBytes(bytes: Uint8Array): void {
  const contents = decodeLogFile(bytes);
  if (Buffer.compare(Buffer.from(contents.header.moduleHash), Buffer.from(MODULE_HASH)) !== 0) throw new Error('module hash differs');
  if (contents.tail !== 'clean') throw new Error(`torn tail at ${contents.tail.offset}`);
  const entries: LogEntry[] = contents.entries;
  const result = new GuestCore({ module: kv, mode: 'replay', source: new ArraySource(entries) }).run();
  if (result.exit !== 'returned') throw new Error(`replay ended by ${result.exit}`);
}

describe('damaged log file', () => {
  it('the intact file replays', () => {
    expect(() => replayBytes(recordFile())).not.toThrow();
  });

  it('changing any single byte is caught as corrupt, torn, foreign or divergent (all positions)', () => {
    const original = recordFile();
    expect(original.length).toBeLessThan(2000);
    const outcomes = new Map<string, number>();
    for (let at = 0; at < original.length; at++) {
      for (const mask of [0x01, 0x80]) {
        const bytes = new Uint8Array(original);
        bytes[at]! ^= mask;
        let error: unknown;
        try {
          replayBytes(bytes);
        } catch (e) {
          error = e;
        }
        expect(error, `byte ${at} ^ ${mask} went unnoticed`).toBeDefined();
        const kind = error instanceof LogError ? (error as LogError).code : error instanceof DivergenceError ? 'divergence' : (error as Error).message.split(' ')[0]!;
        outcomes.set(kind, (outcomes.get(kind) ?? 0) + 1);
        if (error instanceof LogError) expect((error as Error).message).toMatch(/frame|header|offset|byte/i);
      }
    }
    console.log(`damaged-log outcomes over ${original.length} bytes x 2 flips:`, Object.fromEntries(outcomes));
  });
});
