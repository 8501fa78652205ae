// Arbiter specs, options and the stored claim record: what is accepted and what is refused, with which code.
import { describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ArbiterCorruptError, ArbiterError, openArbiter, parseArbiterSpec } from '../../host/arbiter/index.ts';
import { decodeClaimRecord, encodeClaimRecord, newClaimRecord } from '../../host/arbiter/claim.ts';
import { expectCode } from './suite.ts';

describe('arbiter specs', () => {
  it('file:DIR and etcd:URL[,URL...] parse; anything else is FTW_ARBITER_SPEC naming the spec', () => {
    expect(parseArbiterSpec('file:/mnt/shared/ftwasm')).toEqual({ kind: 'file', dir: '/mnt/shared/ftwasm' });
    expect(parseArbiterSpec('file:relative/dir')).toEqual({ kind: 'file', dir: 'relative/dir' });
    expect(parseArbiterSpec('etcd:http://a:2379,http://b:2379')).toEqual({ kind: 'etcd', urls: ['http://a:2379', 'http://b:2379'] });
    for (const spec of ['', '/mnt/shared', 'file:', 'etcd:', 'nfs:/x', 'FILE:/x']) {
      expect(() => parseArbiterSpec(spec), spec).toThrowError(ArbiterError);
      try {
        parseArbiterSpec(spec);
      } catch (error) {
        expect((error as ArbiterError).code).toBe('FTW_ARBITER_SPEC');
        expect((error as ArbiterError).message).toContain(JSON.stringify(spec));
      }
    }
  });

  it('bad options and names are FTW_ARBITER_SPEC before any storage is touched', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ftwasm-arbiter-spec-'));
    try {
      for (const deployment of ['', '../escape', 'a/b', 'with space', '-dash-first', 'x'.repeat(65)]) {
        await expectCode(openArbiter(`file:${dir}`, { deployment }), 'FTW_ARBITER_SPEC', 'deployment');
        await expectCode(openArbiter('etcd:http://127.0.0.1:1', { deployment }), 'FTW_ARBITER_SPEC', 'deployment');
      }
      for (const epochs_kept_max of [0, -1, 1.5, 2e6]) {
        await expectCode(openArbiter(`file:${dir}`, { epochs_kept_max }), 'FTW_ARBITER_SPEC', 'epochs_kept_max');
      }
      for (const request_timeout_ms of [0, -5, 0.5, 1e9]) {
        await expectCode(openArbiter('etcd:http://127.0.0.1:1', { request_timeout_ms }), 'FTW_ARBITER_SPEC', 'request_timeout_ms');
      }
      for (const retries_max of [-1, 1.5, 101]) {
        await expectCode(openArbiter('etcd:http://127.0.0.1:1', { retries_max }), 'FTW_ARBITER_SPEC', 'retries_max');
      }
      for (const url of ['127.0.0.1:2379', 'ftp://h:1', 'http://h:1/path', 'http://']) {
        await expectCode(openArbiter(`etcd:${url}`), 'FTW_ARBITER_SPEC', 'etcd URL');
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the stored claim record', () => {
  it('round-trips as one line of JSON', () => {
    const record = newClaimRecord(42, 'node-1');
    const text = encodeClaimRecord(record);
    expect(text.endsWith('\n')).toBe(true);
    expect(decodeClaimRecord(text, 'here', 42)).toEqual(record);
    expect(decodeClaimRecord(Buffer.from(text), 'here')).toEqual(record);
  });

  it('every cut of an encoded record short of its closing brace is refused as corrupt, naming where', () => {
    const text = encodeClaimRecord(newClaimRecord(7, 'node-with-a-longer-id'));
    const closing = text.lastIndexOf('}');
    for (let cut = 0; cut < closing; cut++) {
      let error: unknown;
      try {
        decodeClaimRecord(text.slice(0, cut), '/shared/epoch-x', 7);
      } catch (caught) {
        error = caught;
      }
      expect(error, `cut at ${cut}`).toBeInstanceOf(ArbiterCorruptError);
      expect((error as ArbiterCorruptError).message).toContain('/shared/epoch-x');
    }
  });

  it('every single flipped byte is either refused or still a whole record of the expected epoch', () => {
    const text = encodeClaimRecord(newClaimRecord(7, 'node'));
    for (let at = 0; at < text.length; at++) {
      const bytes = Buffer.from(text);
      bytes[at] = bytes[at]! ^ 0x01;
      try {
        const record = decodeClaimRecord(bytes, 'here', 7);
        expect(record.epoch, `byte ${at}`).toBe(7);
      } catch (error) {
        expect(error, `byte ${at}`).toBeInstanceOf(ArbiterCorruptError);
      }
    }
  });
});
