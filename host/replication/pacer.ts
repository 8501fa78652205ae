// Pacing a catch-up: a backup joining a node that is alone replays the log (or the frames after its snapshot)
// while the node goes on writing it. Under more load than the backup can replay, the gap never closes and the
// pair is never protected again. Once per heartbeat interval the node asks the pacer whether the backup gained
// enough over the last window; while it has not, the node holds client input and pauses its guest (the same
// throttle that keeps a following backup's replay close), so the log stops growing and the backup gains.
/** Over one window, the gap must shrink by at least this fraction of itself. */
export const CATCHUP_GAIN_MIN = 1 / 8;
export const CATCHUP_WINDOW_MS_DEFAULT = 1_000;

export class CatchupPacer {
  private samples: Array<{ ms: number; gap: number }> = [];

  /**
   * @param window_ms how far back the gap is compared.
   * @param slack a gap this small counts as caught up (the node syncs within it): never held back.
   * @param samples_max samples kept at most (bounded whatever the caller's rate).
   */
  constructor(
    private readonly window_ms = CATCHUP_WINDOW_MS_DEFAULT,
    private readonly slack = 0,
    private readonly samples_max = 1024,
  ) {}

  /** Starts over (a new backup joins, or the transfer before the frames just ended). */
  reset(): void {
    this.samples = [];
  }

  /**
   * `gap`: log entries written and not yet replayed by the backup, at `now_ms`. True while the node should
   * hold back: the backup did not shrink the gap by CATCHUP_GAIN_MIN of it over the last window.
   */
  step(now_ms: number, gap: number): boolean {
    this.samples.push({ ms: now_ms, gap });
    // Keep one sample at or beyond the window (the one compared with), drop the older ones.
    while (this.samples.length > 2 && now_ms - this.samples[1]!.ms >= this.window_ms) this.samples.shift();
    if (this.samples.length > this.samples_max) this.samples.splice(0, this.samples.length - this.samples_max);
    if (gap <= this.slack) return false;
    const then = this.samples[0]!;
    if (now_ms - then.ms < this.window_ms) return false; // not watched for a whole window yet
    return gap > then.gap * (1 - CATCHUP_GAIN_MIN);
  }
}
