// The default arbiter: a directory on shared storage ("shared disk"). Each won epoch is one file, created by
// hard-linking a fully written and fsynced temp file to its final name; link(2) fails with EEXIST when the name
// exists, so exactly one claimant of an epoch creates it, and a reader never sees a half-written claim.
import { constants as fsConstants } from 'node:fs';
import { link, mkdir, open, readdir, stat, unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import {
  assertOpen,
  checkEpoch,
  checkNodeId,
  CLAIM_BYTES_MAX,
  decodeClaimRecord,
  DEPLOYMENT_PATTERN,
  encodeClaimRecord,
  EPOCH_DIGITS,
  newClaimRecord,
  publicClaim,
  type Arbiter,
  type ClaimRecord,
  type ClaimResult,
  type EpochClaim,
} from './claim.ts';
import { ArbiterError, ArbiterGapError, ArbiterUnreachableError } from './errors.ts';

/** Options of the file arbiter. */
export interface FileArbiterOptions {
  /** Subdirectory of the arbiter directory holding this deployment's claims; default 'default'. */
  deployment?: string;
  /** Epoch files kept, counting the current one; older ones are deleted by the next winner. Default 64. */
  epochs_kept_max?: number;
}

export const EPOCHS_KEPT_MAX_DEFAULT = 64;
/** Upper bound accepted for epochs_kept_max. */
export const EPOCHS_KEPT_MAX_LIMIT = 1_000_000;
/** A temp file older than this is a leftover of a crashed claimant and is deleted by the next winner. */
export const TEMP_STALE_MS = 60_000;
/** How many times a read retries when the highest epoch file vanished between listing and reading it. */
export const SCAN_ROUNDS_MAX = 3;

const EPOCH_FILE = /^epoch-(\d{16})$/;
const TEMP_FILE = /^\.claim-\d{16}-[0-9a-f]{32}\.tmp$/;
/** Errors from link(2) that mean the file system has no hard links, as opposed to a transient failure. */
const NO_LINK_CODES = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS', 'EXDEV']);

/** The file name of epoch `epoch`'s claim. */
export function epochFileName(epoch: number): string {
  return `epoch-${String(epoch).padStart(EPOCH_DIGITS, '0')}`;
}

/**
 * Opens the file arbiter in `root`. `root` must already exist (an absent directory usually means the shared
 * storage is not mounted, and claiming on a local disk instead would let two nodes win); the deployment
 * subdirectory is created if missing.
 */
export async function openFileArbiter(root: string, options: FileArbiterOptions = {}): Promise<FileArbiter> {
  const deployment = options.deployment ?? 'default';
  const epochsKeptMax = options.epochs_kept_max ?? EPOCHS_KEPT_MAX_DEFAULT;
  const rootPath = resolve(root);
  if (!DEPLOYMENT_PATTERN.test(deployment)) {
    throw new ArbiterError('FTW_ARBITER_SPEC', `deployment name ${JSON.stringify(deployment)} must match ${DEPLOYMENT_PATTERN}`, rootPath);
  }
  if (!Number.isSafeInteger(epochsKeptMax) || epochsKeptMax < 1 || epochsKeptMax > EPOCHS_KEPT_MAX_LIMIT) {
    throw new ArbiterError('FTW_ARBITER_SPEC', `epochs_kept_max must be an integer in 1..${EPOCHS_KEPT_MAX_LIMIT}, got ${epochsKeptMax}`, rootPath);
  }
  try {
    const info = await stat(rootPath);
    if (!info.isDirectory()) throw new ArbiterUnreachableError('arbiter path is not a directory', rootPath);
  } catch (error) {
    if (error instanceof ArbiterError) throw error;
    const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
    const message = missing ? 'arbiter directory does not exist (is the shared storage mounted? it is never created implicitly)' : 'cannot stat the arbiter directory';
    throw new ArbiterUnreachableError(message, rootPath, undefined, error);
  }
  const dir = join(rootPath, deployment);
  try {
    await mkdir(dir);
    await fsyncDirectory(rootPath);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
      throw new ArbiterUnreachableError('cannot create the deployment directory', dir, undefined, error);
    }
  }
  return new FileArbiter(dir, epochsKeptMax);
}

/** Claims as files `epoch-<16 digits>` in one directory; see docs/ARBITER.md for the layout. */
export class FileArbiter implements Arbiter {
  readonly where: string;
  /** The deployment directory holding the epoch files. */
  readonly dir: string;
  private readonly epochsKeptMax: number;
  private closed = false;

  constructor(dir: string, epochsKeptMax: number) {
    this.dir = dir;
    this.where = `file:${dir}`;
    this.epochsKeptMax = epochsKeptMax;
  }

  async current(): Promise<EpochClaim | undefined> {
    assertOpen(this.closed, this.where);
    const highest = await this.highestRecord();
    return highest === undefined ? undefined : publicClaim(highest);
  }

  async claim(epoch: number, nodeId: string): Promise<ClaimResult> {
    assertOpen(this.closed, this.where);
    checkEpoch(epoch, this.where);
    checkNodeId(nodeId, this.where);
    const before = await this.highestRecord();
    const currentEpoch = before?.epoch ?? 0;
    if (before !== undefined && epoch <= currentEpoch) return { won: false, holder: publicClaim(before) };
    if (epoch > currentEpoch + 1) throw new ArbiterGapError(epoch, currentEpoch, this.where);

    const record = newClaimRecord(epoch, nodeId);
    const created = await this.createEpochFile(record);
    // Re-read after the link: a higher epoch seen now means ours is stale already (a successor, or a scan that
    // missed newer files); either way the caller must not go live, so it is reported as lost to that holder.
    const after = await this.highestRecord();
    if (after === undefined) {
      throw new ArbiterUnreachableError(`epoch file ${epochFileName(epoch)} vanished right after the claim`, this.dir, epoch);
    }
    if (!created || after.epoch > epoch) {
      if (after.epoch < epoch) {
        throw new ArbiterUnreachableError(`lost the claim yet the highest epoch file is ${after.epoch}`, this.dir, epoch);
      }
      return { won: false, holder: publicClaim(after) };
    }
    if (after.claimId !== record.claimId) {
      throw new ArbiterUnreachableError('epoch file linked by this claim holds another claim', join(this.dir, epochFileName(epoch)), epoch);
    }
    await this.prune(epoch);
    return { won: true, claim: publicClaim(record) };
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  /** Writes the record to a temp file, makes it durable, links it to the epoch's name; true iff this call created that name. */
  private async createEpochFile(record: ClaimRecord): Promise<boolean> {
    const temp = join(this.dir, `.claim-${String(record.epoch).padStart(EPOCH_DIGITS, '0')}-${record.claimId}.tmp`);
    const final = join(this.dir, epochFileName(record.epoch));
    await writeDurably(temp, encodeClaimRecord(record), record.epoch);
    try {
      const created = await linkExclusive(temp, final, record.epoch);
      if (created) await fsyncDirectory(this.dir).catch((error: unknown) => {
        throw new ArbiterUnreachableError('claim linked but the directory fsync failed; check current()', this.dir, record.epoch, error);
      });
      return created;
    } finally {
      await unlink(temp).catch(() => undefined);
    }
  }

  /** The highest epoch file's record, re-listing when it vanished between listing and reading (bounded). */
  private async highestRecord(): Promise<ClaimRecord | undefined> {
    for (let round = 1; round <= SCAN_ROUNDS_MAX; round++) {
      const { epochs } = await this.scan();
      const highest = epochs[epochs.length - 1];
      if (highest === undefined) return undefined;
      const record = await this.readEpochFile(highest);
      if (record !== undefined) return record;
    }
    throw new ArbiterUnreachableError(`the highest epoch file vanished while being read, ${SCAN_ROUNDS_MAX} times in a row`, this.dir);
  }

  /** The epoch file's record, or undefined if it does not exist (any other failure throws). */
  private async readEpochFile(epoch: number): Promise<ClaimRecord | undefined> {
    const path = join(this.dir, epochFileName(epoch));
    let bytes: Buffer;
    try {
      const handle = await open(path, fsConstants.O_RDONLY);
      try {
        bytes = Buffer.alloc(CLAIM_BYTES_MAX + 1);
        const { bytesRead } = await handle.read(bytes, 0, bytes.length, 0);
        bytes = bytes.subarray(0, bytesRead);
      } finally {
        await handle.close();
      }
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new ArbiterUnreachableError('cannot read the epoch file', path, epoch, error);
    }
    return decodeClaimRecord(bytes, path, epoch);
  }

  /** Epoch numbers present (ascending) and names of temp files. */
  private async scan(): Promise<{ epochs: number[]; temps: string[] }> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (error) {
      throw new ArbiterUnreachableError('cannot list the deployment directory', this.dir, undefined, error);
    }
    const epochs: number[] = [];
    const temps: string[] = [];
    for (const name of names) {
      const match = EPOCH_FILE.exec(name);
      if (match !== null) {
        const epoch = Number(match[1]);
        if (Number.isSafeInteger(epoch) && epoch >= 1) epochs.push(epoch);
      } else if (TEMP_FILE.test(name)) {
        temps.push(name);
      }
    }
    epochs.sort((a, b) => a - b);
    return { epochs, temps };
  }

  /** Deletes epoch files more than epochs_kept_max below `wonEpoch` and stale temp files; best effort. */
  private async prune(wonEpoch: number): Promise<void> {
    let listing: { epochs: number[]; temps: string[] };
    try {
      listing = await this.scan();
    } catch {
      return; // the bound on files is best effort; a won claim stays won
    }
    const oldest = wonEpoch - this.epochsKeptMax; // delete epochs <= oldest: keeps wonEpoch and the ones below it
    for (const epoch of listing.epochs) {
      if (epoch > oldest) break;
      await unlink(join(this.dir, epochFileName(epoch))).catch(() => undefined);
    }
    const staleBeforeMs = Date.now() - TEMP_STALE_MS;
    for (const name of listing.temps) {
      const path = join(this.dir, name);
      const info = await stat(path).catch(() => undefined);
      if (info !== undefined && info.mtimeMs < staleBeforeMs) await unlink(path).catch(() => undefined);
    }
  }
}

/** Creates `path` exclusively, writes `text` and fsyncs it before returning. */
async function writeDurably(path: string, text: string, epoch: number): Promise<void> {
  try {
    const handle = await open(path, 'wx', 0o644);
    try {
      await handle.writeFile(text, 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch (error) {
    await unlink(path).catch(() => undefined);
    throw new ArbiterUnreachableError('cannot write the claim temp file', path, epoch, error);
  }
}

/**
 * link(temp, final): true if this call created `final`. On EEXIST the two are compared by inode, because over
 * NFS a retransmitted link that did succeed can still report EEXIST.
 */
async function linkExclusive(temp: string, final: string, epoch: number): Promise<boolean> {
  try {
    await link(temp, final);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? '';
    if (code === 'EEXIST') return sameFile(temp, final, epoch);
    if (NO_LINK_CODES.has(code)) {
      throw new ArbiterError('FTW_ARBITER_UNSUPPORTED', `the file system refused a hard link (${code}); the file arbiter needs link(2)`, final, epoch, { cause: error });
    }
    throw new ArbiterUnreachableError('cannot link the claim file', final, epoch, error);
  }
}

/** Whether `temp` and `final` are one inode (the link was ours after all). */
async function sameFile(temp: string, final: string, epoch: number): Promise<boolean> {
  try {
    const [ours, theirs] = await Promise.all([stat(temp), stat(final).catch(() => undefined)]);
    return theirs !== undefined && ours.ino === theirs.ino && ours.dev === theirs.dev;
  } catch (error) {
    throw new ArbiterUnreachableError('cannot stat the claim temp file after EEXIST', temp, epoch, error);
  }
}

/** fsync of a directory, so that names created in it survive a crash. */
async function fsyncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, fsConstants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
