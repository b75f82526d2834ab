// Prefetch around the playhead: the frames near the one shown are sent ahead with
// `SetImage{prefetch}` (the server encodes them on its lowest lane, without changing the
// session's image, and answers their SHA-256), so that moving to one of them sends only
// `SetImage{image_sha256, frame_index}` and costs no encode.
import type { Session } from "@mobilesam/client";
import { canvasJpeg, type FrameSource } from "./video";

/** Which frames around the playhead to prefetch. */
export interface PrefetchWindow {
  /** Frames in the direction of travel (0: prefetch nothing). */
  ahead: number;
  /** Frames the other way. */
  behind: number;
}

/** Prefetches in flight at most: the server's lowest lane encodes them one after another,
 * so more would only queue there, and a frame the page moves to waits for its prefetch. */
export const PREFETCH_IN_FLIGHT = 2;

/** Counts for the page's tests and the console. */
export interface PrefetchStats {
  /** `SetImage{prefetch}` calls made. */
  sent: number;
  /** Answered with the frame's digest. */
  answered: number;
  /** Failed (the frame is then sent as bytes when shown). */
  failed: number;
  /** Given up because the playhead moved away from the frame before its answer (the call
   * is aborted, so the server drops the encode if it has not started it). */
  cancelled: number;
}

/** A prefetch on its way: its answer (the digest, or undefined) and its abort switch. */
interface Pending {
  digest: Promise<string | undefined>;
  abort: AbortController;
}

/** The prefetched frames of one video in one session: frame index -> image SHA-256. */
export class Prefetcher {
  readonly stats: PrefetchStats = { sent: 0, answered: 0, failed: 0, cancelled: 0 };
  private readonly digests = new Map<number, string>();
  private readonly pending = new Map<number, Pending>();
  private wanted: number[] = [];
  /** Frames are grabbed one at a time: the frame source has one <video> element. */
  private grabbing: Promise<unknown> = Promise.resolve();
  private stopped = false;

  /**
   * @param source frames of the video, on a <video> element of its own (not the one shown)
   * @param canvas scratch canvas the frames are drawn on before JPEG encoding
   * @param session the session the prefetches are sent on
   */
  constructor(
    private readonly source: FrameSource,
    private readonly canvas: HTMLCanvasElement,
    private readonly session: Session,
  ) {}

  /** The SHA-256 of frame `index`, which is about to be shown: its digest when it has been
   * prefetched, after waiting for its prefetch when one is in flight; undefined otherwise
   * (and it is no longer prefetched: the frame's bytes are sent instead). */
  async digest(index: number): Promise<string | undefined> {
    this.wanted = this.wanted.filter((j) => j !== index);
    return this.digests.get(index) ?? (await this.pending.get(index)?.digest);
  }

  /** Forgets frame `index`'s digest (the server no longer has its embedding). */
  forget(index: number): void {
    this.digests.delete(index);
  }

  /** The frames prefetched so far, ascending. */
  ready(): number[] {
    return [...this.digests.keys()].sort((a, b) => a - b);
  }

  /** Prefetches the frames around `index`: `window.ahead` in `direction`, then
   * `window.behind` the other way, nearest first, skipping frames done or in flight. Replaces
   * the frames still waiting from an earlier call (the playhead has moved on). */
  around(index: number, direction: 1 | -1, window: PrefetchWindow): void {
    if (this.stopped) return;
    const wanted: number[] = [];
    for (let k = 1; k <= window.ahead; k++) wanted.push(index + direction * k);
    for (let k = 1; k <= window.behind; k++) wanted.push(index - direction * k);
    const inWindow = wanted.filter((j) => j >= 0 && j < this.source.frameCount);
    // Prefetches of frames the playhead has left (a scrub) would hold the slots: abort them.
    for (const [j, pending] of this.pending) if (!inWindow.includes(j)) pending.abort.abort();
    this.wanted = inWindow.filter((j) => !this.digests.has(j) && !this.pending.has(j));
    this.pump();
  }

  /** Stops prefetching (another video or session): calls on their way are aborted. */
  stop(): void {
    this.stopped = true;
    this.wanted = [];
    for (const pending of this.pending.values()) pending.abort.abort();
  }

  private pump(): void {
    while (!this.stopped && this.pending.size < PREFETCH_IN_FLIGHT && this.wanted.length > 0) {
      const index = this.wanted.shift()!;
      if (this.digests.has(index) || this.pending.has(index)) continue;
      const abort = new AbortController();
      const digest = this.prefetch(index, abort.signal).finally(() => {
        this.pending.delete(index);
        this.pump();
      });
      this.pending.set(index, { digest, abort });
    }
  }

  /** Grabs frame `index` as JPEG and prefetches it; resolves with its digest, or undefined
   * when that failed or was aborted (the frame is then sent as bytes when shown). */
  private async prefetch(index: number, signal: AbortSignal): Promise<string | undefined> {
    try {
      const grab = this.grabbing.then(async () => {
        if (signal.aborted) return null;
        await this.source.show(index, this.canvas);
        return canvasJpeg(this.canvas);
      });
      this.grabbing = grab.catch(() => undefined);
      const bytes = await grab;
      if (bytes === null) {
        this.stats.cancelled++;
        return undefined;
      }
      this.stats.sent++;
      const [answer] = await this.session.prefetch(bytes, { signal });
      if (!answer?.imageSha256) throw new Error("a prefetch answered no digest");
      this.stats.answered++;
      this.digests.set(index, answer.imageSha256);
      return answer.imageSha256;
    } catch {
      if (signal.aborted) this.stats.cancelled++;
      else this.stats.failed++;
      return undefined;
    }
  }
}
