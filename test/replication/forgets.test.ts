// The bookkeeping of dropped sessions (host/replication/forgets.ts): FORGET payloads, the list kept for
// backups that join later, and the queue a backup holds until its log reaches each drop.
import { describe, expect, it } from 'vitest';
import { FORGETS_MAX, FORGET_RECORD_BYTES, ForgetLog, PendingForgets, decodeForgets, encodeForgets } from '../../host/replication/forgets.ts';

describe('FORGET records', () => {
  it('round-trip, and a damaged payload is named, not half-read', () => {
    const records = [{ session: 1, at_seq: 10 }, { session: 0xffffffff, at_seq: Number.MAX_SAFE_INTEGER }];
    expect(decodeForgets(encodeForgets(records))).toEqual(records);
    expect(decodeForgets(new Uint8Array(0))).toBe('FORGET payload of 0 bytes is not whole records');
    expect(decodeForgets(new Uint8Array(FORGET_RECORD_BYTES + 1))).toBe(`FORGET payload of ${FORGET_RECORD_BYTES + 1} bytes is not whole records`);
    const past = encodeForgets([{ session: 7, at_seq: 0 }]);
    past.writeBigUInt64LE(1n << 60n, 4);
    expect(decodeForgets(past)).toBe(`FORGET of session 7 at seq ${1n << 60n}, past 2^53`);
  });
});

describe('the list kept for backups that join later', () => {
  it('keeps records in seq order, skips the repeats a reconnecting backup is sent, and is given up past FORGETS_MAX', () => {
    const log = new ForgetLog();
    log.add({ session: 1, at_seq: 5 });
    log.add({ session: 2, at_seq: 5 });
    log.add({ session: 1, at_seq: 3 }); // sent again: below the last
    log.add({ session: 2, at_seq: 5 }); // sent again: the last itself
    log.add({ session: 3, at_seq: 9 });
    expect([...log.chunks(2)]).toEqual([[{ session: 1, at_seq: 5 }, { session: 2, at_seq: 5 }], [{ session: 3, at_seq: 9 }]]);
    for (let i = log.size; i < FORGETS_MAX; i++) log.add({ session: i, at_seq: 10 + i });
    expect(log.size).toBe(FORGETS_MAX);
    expect(log.lost).toBe(false);
    log.add({ session: 0, at_seq: 2 * FORGETS_MAX });
    expect(log.lost).toBe(true);
    expect(log.size).toBe(0);
    log.add({ session: 1, at_seq: 3 * FORGETS_MAX });
    expect(log.size).toBe(0);
  });
});

describe('a backup\'s waiting drops', () => {
  it('come out once the log passes their seq, in order, all of them at Infinity, and refuse past FORGETS_MAX', () => {
    const pending = new PendingForgets();
    for (const [session, at_seq] of [[1, 4], [2, 4], [3, 8], [4, 20]] as const) expect(pending.push({ session, at_seq })).toBe(true);
    expect(pending.take(3)).toEqual([]);
    expect(pending.take(4).map((f) => f.session)).toEqual([1, 2]);
    expect(pending.take(19).map((f) => f.session)).toEqual([3]);
    expect(pending.size).toBe(1);
    expect(pending.take(Infinity).map((f) => f.session)).toEqual([4]);
    for (let i = 0; i < FORGETS_MAX; i++) pending.push({ session: i, at_seq: 100 });
    expect(pending.push({ session: 1, at_seq: 100 })).toBe(false);
    expect(pending.take(100)).toHaveLength(FORGETS_MAX);
    expect(pending.size).toBe(0);
  });
});
