// The etcd arbiter: one key per deployment holds the current claim; a claim is one transaction that compares
// the key's mod revision with the one just read (0 = absent) and puts the new claim only if it is unchanged.
import type { Etcd3, IOptions, IKeyValue, ITxnResponse, Lease } from 'etcd3';

/**
 * The etcd3 client library (gRPC, protobuf) is loaded when an etcd arbiter is first opened, not with the
 * package: it takes about 200 ms to load, and every CLI run with the file arbiter (and `inspect`, `replay`,
 * `load`) would pay for it.
 */
type Etcd3Library = typeof import('etcd3');
let library: Promise<Etcd3Library> | undefined;
const loadEtcd3 = (): Promise<Etcd3Library> => (library ??= import('etcd3'));
import {
  assertOpen,
  checkEpoch,
  checkNodeId,
  decodeClaimRecord,
  DEPLOYMENT_PATTERN,
  encodeClaimRecord,
  newClaimRecord,
  publicClaim,
  type Arbiter,
  type ClaimRecord,
  type ClaimResult,
  type EpochClaim,
} from './claim.ts';
import { ArbiterError, ArbiterGapError, ArbiterUnreachableError } from './errors.ts';

/** Options of the etcd arbiter. */
export interface EtcdArbiterOptions {
  /** Names the keys `ftwasm/<deployment>/...`; default 'default'. */
  deployment?: string;
  /** Deadline of each etcd request (and of connecting), in ms. Default 5000. */
  request_timeout_ms?: number;
  /** Retries of a request that failed recoverably (unavailable, deadline exceeded) before giving up. Default 3. */
  retries_max?: number;
}

export const REQUEST_TIMEOUT_MS_DEFAULT = 5_000;
export const REQUEST_TIMEOUT_MS_LIMIT = 600_000;
export const RETRIES_MAX_DEFAULT = 3;
export const RETRIES_MAX_LIMIT = 100;
/** First pause between retries; it doubles up to RETRY_BACKOFF_MS_MAX. */
export const RETRY_BACKOFF_MS_MIN = 50;
export const RETRY_BACKOFF_MS_MAX = 1_000;
/** Read-then-transaction rounds of one claim; one lost compare settles it, so more means the key is being meddled with. */
export const CLAIM_ROUNDS_MAX = 3;
/** Bounds of a primary lease's time to live, in seconds. */
export const LEASE_TTL_SECONDS_MIN = 1;
export const LEASE_TTL_SECONDS_MAX = 3_600;

/** The key holding the current claim of `deployment`. */
export function epochKey(deployment: string): string {
  return `ftwasm/${deployment}/epoch`;
}

/** The key the live primary keeps bound to its lease. */
export function primaryKey(deployment: string): string {
  return `ftwasm/${deployment}/primary`;
}

/** Opens the etcd arbiter on the cluster at `urls` (http:// or https://) and checks it answers. */
export async function openEtcdArbiter(urls: string[], options: EtcdArbiterOptions = {}): Promise<EtcdArbiter> {
  const where = `etcd:${urls.join(',')}`;
  const deployment = options.deployment ?? 'default';
  const requestTimeoutMs = options.request_timeout_ms ?? REQUEST_TIMEOUT_MS_DEFAULT;
  const retriesMax = options.retries_max ?? RETRIES_MAX_DEFAULT;
  checkSetting(DEPLOYMENT_PATTERN.test(deployment), `deployment name ${JSON.stringify(deployment)} must match ${DEPLOYMENT_PATTERN}`, where);
  checkSetting(urls.length > 0, 'no etcd URL given', where);
  for (const url of urls) checkSetting(isEtcdUrl(url), `etcd URL ${JSON.stringify(url)} must be http(s)://host:port`, where);
  checkSetting(isIntegerIn(requestTimeoutMs, 1, REQUEST_TIMEOUT_MS_LIMIT), `request_timeout_ms must be in 1..${REQUEST_TIMEOUT_MS_LIMIT}, got ${requestTimeoutMs}`, where);
  checkSetting(isIntegerIn(retriesMax, 0, RETRIES_MAX_LIMIT), `retries_max must be in 0..${RETRIES_MAX_LIMIT}, got ${retriesMax}`, where);
  const arbiter = new EtcdArbiter(await loadEtcd3(), urls, deployment, requestTimeoutMs, retriesMax);
  try {
    await arbiter.call('connect', undefined, (client) => client.get(arbiter.epochKey).exec());
  } catch (error) {
    await arbiter.close();
    throw error;
  }
  return arbiter;
}

/** A lease the live primary keeps alive, with the primary key bound to it; see holdLease. */
export interface PrimaryLease {
  /** The etcd key bound to the lease. */
  readonly key: string;
  /** The lease id, as etcd prints it (decimal). */
  readonly leaseId: string;
  readonly ttlSeconds: number;
  /** Resolves (never rejects) once the lease is known to be gone: keepalive failed past 2 ttl, or released. */
  readonly lost: Promise<ArbiterError>;
  /** Revokes the lease, deleting the key now; idempotent. */
  release(): Promise<void>;
}

/** Claims in etcd under `ftwasm/<deployment>/`; see docs/ARBITER.md for the keys and the transaction. */
export class EtcdArbiter implements Arbiter {
  readonly where: string;
  /** `etcd:URL,URL`, without a key. */
  readonly cluster: string;
  readonly epochKey: string;
  readonly primaryKey: string;
  /** One etcd3 client per URL, so that each retry can go to the next member (a shared client picks one at random). */
  private readonly clients: Etcd3[];
  /** Index of the client that answered last; requests start there. */
  private preferred = 0;
  private readonly retriesMax: number;
  private readonly leases = new Set<PrimaryLease>();
  private closed = false;

  constructor(
    private readonly lib: Etcd3Library,
    urls: string[],
    deployment: string,
    requestTimeoutMs: number,
    retriesMax: number,
  ) {
    this.epochKey = epochKey(deployment);
    this.primaryKey = primaryKey(deployment);
    this.cluster = `etcd:${urls.join(',')}`;
    this.where = `${this.cluster} key ${this.epochKey}`;
    this.retriesMax = retriesMax;
    // Retries are ours (bounded, rotating through the URLs, and a retried claim transaction recognises its own
    // earlier success by claimId), so the client's own retry and circuit-breaker policies are pass-throughs.
    const passThrough = {
      execute: <T>(fn: (context: { signal: AbortSignal }) => PromiseLike<T> | T, signal?: AbortSignal) =>
        Promise.resolve().then(() => fn({ signal: signal ?? new AbortController().signal })),
      onSuccess: () => ({ dispose: () => undefined }),
      onFailure: () => ({ dispose: () => undefined }),
    } as unknown as NonNullable<NonNullable<IOptions['faultHandling']>['global']>;
    this.clients = urls.map(
      (url) =>
        new lib.Etcd3({
          hosts: url,
          dialTimeout: requestTimeoutMs,
          defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + requestTimeoutMs }),
          faultHandling: { global: passThrough, host: () => passThrough },
        }),
    );
  }

  /** The etcd3 client requests start with (the one that answered last); for the arbiter's helpers and tests. */
  get client(): Etcd3 {
    return this.clients[this.preferred]!;
  }

  async current(): Promise<EpochClaim | undefined> {
    assertOpen(this.closed, this.where);
    const stored = await this.readKey(this.epochKey, undefined);
    return stored === undefined ? undefined : publicClaim(stored.record);
  }

  async claim(epoch: number, nodeId: string): Promise<ClaimResult> {
    assertOpen(this.closed, this.where);
    checkEpoch(epoch, this.where);
    checkNodeId(nodeId, this.where);
    const record = newClaimRecord(epoch, nodeId);
    const value = encodeClaimRecord(record);
    let stored = await this.readKey(this.epochKey, epoch);
    for (let round = 1; round <= CLAIM_ROUNDS_MAX; round++) {
      if (stored?.record.claimId === record.claimId) return { won: true, claim: publicClaim(record) }; // a retried commit
      const currentEpoch = stored?.record.epoch ?? 0;
      if (stored !== undefined && epoch <= currentEpoch) return { won: false, holder: publicClaim(stored.record) };
      if (epoch > currentEpoch + 1) throw new ArbiterGapError(epoch, currentEpoch, this.where);
      const modRevision = stored?.modRevision ?? '0';
      const result: ITxnResponse = await this.call('claim transaction', epoch, (client) =>
        client
          .if(this.epochKey, 'Mod', '==', modRevision)
          .then(client.put(this.epochKey).value(value))
          .else(client.get(this.epochKey))
          .commit(),
      );
      if (result.succeeded) return { won: true, claim: publicClaim(record) };
      stored = this.decodeKeyValue(result.responses[0]?.response_range?.kvs[0], this.epochKey);
    }
    throw new ArbiterUnreachableError(`the epoch key changed under ${CLAIM_ROUNDS_MAX} claim rounds in a row without settling`, this.where, epoch);
  }

  /**
   * For the live primary: binds `ftwasm/<deployment>/primary` to a lease of `ttlSeconds` kept alive from here,
   * so a backup can watch the primary's liveness in etcd. Only the holder of the current epoch may take it.
   * Informational: epochs, not leases, keep two primaries from going live.
   */
  async holdLease(claim: EpochClaim, ttlSeconds: number): Promise<PrimaryLease> {
    assertOpen(this.closed, this.where);
    if (!isIntegerIn(ttlSeconds, LEASE_TTL_SECONDS_MIN, LEASE_TTL_SECONDS_MAX)) {
      throw new ArbiterError('FTW_ARBITER_ARGUMENT', `lease ttl must be ${LEASE_TTL_SECONDS_MIN}..${LEASE_TTL_SECONDS_MAX} s, got ${ttlSeconds}`, this.where);
    }
    const stored = await this.readKey(this.epochKey, claim.epoch);
    if (stored === undefined || !sameClaim(stored.record, claim)) {
      throw new ArbiterError('FTW_ARBITER_LEASE', `node ${claim.nodeId} does not hold the current epoch, so it may not hold the primary lease`, this.where, claim.epoch);
    }
    const lease = this.client.lease(ttlSeconds, { autoKeepAlive: true });
    try {
      const leaseId = await lease.grant().catch((error: unknown) => {
        throw new ArbiterUnreachableError('etcd lease grant failed', this.where, claim.epoch, error);
      });
      const result = await this.call('lease transaction', claim.epoch, (client) =>
        client
          .if(this.epochKey, 'Mod', '==', stored.modRevision)
          .then(client.put(this.primaryKey).value(encodeClaimRecord(stored.record)).lease(leaseId))
          .commit(),
      );
      if (!result.succeeded) {
        throw new ArbiterError('FTW_ARBITER_LEASE', 'the epoch key changed while taking the primary lease', this.where, claim.epoch);
      }
      return this.track(lease, leaseId, ttlSeconds, claim.epoch);
    } catch (error) {
      await lease.revoke().catch(() => undefined);
      throw error;
    }
  }

  /** The claim of the primary whose lease is alive, or undefined when there is none (expired or released). */
  async leaseHolder(): Promise<EpochClaim | undefined> {
    assertOpen(this.closed, this.where);
    const stored = await this.readKey(this.primaryKey, undefined);
    return stored === undefined ? undefined : publicClaim(stored.record);
  }

  /** Releases held leases (best effort), then closes the clients. */
  async close(): Promise<void> {
    if (this.closed) return;
    await Promise.all([...this.leases].map((lease) => lease.release().catch(() => undefined)));
    this.closed = true;
    for (const client of this.clients) client.close();
  }

  /**
   * Runs one etcd request, retrying recoverable failures up to retries_max times with bounded backoff; each retry
   * goes to the next URL. Public for the arbiter's own helpers and for fault injection in tests.
   */
  async call<T>(what: string, epoch: number | undefined, request: (client: Etcd3) => Promise<T>): Promise<T> {
    let lastError: unknown;
    for (let attempt = 0; attempt <= this.retriesMax; attempt++) {
      if (attempt > 0) await sleep(Math.min(RETRY_BACKOFF_MS_MAX, RETRY_BACKOFF_MS_MIN * 2 ** (attempt - 1)));
      assertOpen(this.closed, this.where);
      const index = this.preferred;
      try {
        return await request(this.clients[index]!);
      } catch (error) {
        if (error instanceof ArbiterError) throw error;
        if (!(error instanceof Error) || !this.lib.isRecoverableError(error)) {
          throw new ArbiterUnreachableError(`etcd ${what} failed`, this.where, epoch, error);
        }
        lastError = error;
        if (this.preferred === index) this.preferred = (index + 1) % this.clients.length;
      }
    }
    throw new ArbiterUnreachableError(`etcd ${what} failed after ${this.retriesMax + 1} attempts`, this.where, epoch, lastError);
  }

  private async readKey(key: string, epoch: number | undefined): Promise<{ record: ClaimRecord; modRevision: string } | undefined> {
    const response = await this.call(`read of ${key}`, epoch, (client) => client.get(key).exec());
    return this.decodeKeyValue(response.kvs[0], key);
  }

  private decodeKeyValue(kv: IKeyValue | undefined, key: string): { record: ClaimRecord; modRevision: string } | undefined {
    if (kv === undefined) return undefined;
    return { record: decodeClaimRecord(kv.value, `${this.cluster} key ${key}`), modRevision: String(kv.mod_revision) };
  }

  private track(lease: Lease, leaseId: string, ttlSeconds: number, epoch: number): PrimaryLease {
    let resolveLost: (error: ArbiterError) => void = () => undefined;
    const lost = new Promise<ArbiterError>((resolve) => (resolveLost = resolve));
    lease.on('lost', (error) => resolveLost(new ArbiterError('FTW_ARBITER_LEASE', `primary lease ${leaseId} lost: ${error.message}`, this.where, epoch, { cause: error })));
    let released: Promise<void> | undefined;
    const held: PrimaryLease = {
      key: this.primaryKey,
      leaseId,
      ttlSeconds,
      lost,
      release: () => {
        released ??= lease.revoke().finally(() => {
          this.leases.delete(held);
          resolveLost(new ArbiterError('FTW_ARBITER_LEASE', `primary lease ${leaseId} released`, this.where, epoch));
        });
        return released;
      },
    };
    this.leases.add(held);
    return held;
  }
}

function sameClaim(record: ClaimRecord, claim: EpochClaim): boolean {
  return record.epoch === claim.epoch && record.nodeId === claim.nodeId && record.claimedAtMs === claim.claimedAtMs;
}

function checkSetting(ok: boolean, message: string, where: string): void {
  if (!ok) throw new ArbiterError('FTW_ARBITER_SPEC', message, where);
}

function isIntegerIn(value: number, min: number, max: number): boolean {
  return Number.isSafeInteger(value) && value >= min && value <= max;
}

function isEtcdUrl(text: string): boolean {
  try {
    const url = new URL(text);
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.hostname !== '' && (url.pathname === '/' || url.pathname === '');
  } catch {
    return false;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
