// The arbiter layer's public face: test-and-set of epochs on shared storage, a directory (default) or etcd.
import type { Arbiter } from './claim.ts';
import { ArbiterError } from './errors.ts';
import { openEtcdArbiter, type EtcdArbiterOptions } from './etcd.ts';
import { openFileArbiter, type FileArbiterOptions } from './file.ts';

export type { Arbiter, ClaimResult, EpochClaim } from './claim.ts';
export { CLAIM_BYTES_MAX, DEPLOYMENT_PATTERN, EPOCH_DIGITS, NODE_ID_BYTES_MAX } from './claim.ts';
export { ArbiterError, ArbiterCorruptError, ArbiterGapError, ArbiterUnreachableError } from './errors.ts';
export type { ArbiterErrorCode } from './errors.ts';
export { FileArbiter, openFileArbiter, epochFileName, EPOCHS_KEPT_MAX_DEFAULT, TEMP_STALE_MS } from './file.ts';
export type { FileArbiterOptions } from './file.ts';
export {
  EtcdArbiter,
  openEtcdArbiter,
  epochKey,
  primaryKey,
  REQUEST_TIMEOUT_MS_DEFAULT,
  RETRIES_MAX_DEFAULT,
  LEASE_TTL_SECONDS_MIN,
  LEASE_TTL_SECONDS_MAX,
} from './etcd.ts';
export type { EtcdArbiterOptions, PrimaryLease } from './etcd.ts';

/** Options of openArbiter: the union of both kinds' options; each kind ignores the other's. */
export type ArbiterOptions = FileArbiterOptions & EtcdArbiterOptions;

/** A parsed arbiter spec. */
export type ArbiterSpec = { kind: 'file'; dir: string } | { kind: 'etcd'; urls: string[] };

/** Parses `file:DIR` or `etcd:URL[,URL...]`; throws FTW_ARBITER_SPEC naming the spec otherwise. */
export function parseArbiterSpec(spec: string): ArbiterSpec {
  const colon = spec.indexOf(':');
  const scheme = colon < 0 ? '' : spec.slice(0, colon);
  const rest = colon < 0 ? '' : spec.slice(colon + 1);
  if (scheme === 'file' && rest !== '') return { kind: 'file', dir: rest };
  if (scheme === 'etcd' && rest !== '') return { kind: 'etcd', urls: rest.split(',').map((url) => url.trim()) };
  throw new ArbiterError('FTW_ARBITER_SPEC', "arbiter spec must be 'file:DIR' or 'etcd:URL[,URL...]'", JSON.stringify(spec));
}

/** Opens the arbiter named by `spec` ('file:DIR' or 'etcd:URL[,URL...]') for `options.deployment` (default 'default'). */
export async function openArbiter(spec: string, options: ArbiterOptions = {}): Promise<Arbiter> {
  const parsed = parseArbiterSpec(spec);
  return parsed.kind === 'file' ? openFileArbiter(parsed.dir, options) : openEtcdArbiter(parsed.urls, options);
}
