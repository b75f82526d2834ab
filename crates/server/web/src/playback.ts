// Playing a video through the server, forward or backward: "play" steps at the chosen
// frame rate; "track" steps as fast as the server answers and pauses on the first frame
// where an object is lost (the MobileSAM recipe; SAM 2.1's memory tracking never loses
// one: an object out of sight is occluded and followed on).

/** +1: increasing frame indices; -1: decreasing. */
export type Direction = 1 | -1;

/** One playback: its direction and whether it pauses on lost objects. */
export interface Run {
  direction: Direction;
  mode: "play" | "track";
}

/** What a playback drives. */
export interface PlaybackHooks {
  /** Whether there is a frame to move to in `direction`. */
  canStep(direction: Direction): boolean;
  /** Moves one frame in `direction`; resolves with the ids of the objects lost there, or
   * null when the move failed (the error is shown by the caller; playback stops). */
  step(direction: Direction): Promise<number[] | null>;
  /** Frames per second of "play". */
  fps(): number;
  /** The running playback changed (null: stopped). */
  changed(run: Run | null): void;
  /** "track" paused because `ids` were lost. */
  lost(ids: number[]): void;
}

/** At most one playback at a time; pressing the running one's button again pauses it. */
export class Playback {
  private current: Run | null = null;

  constructor(private readonly hooks: PlaybackHooks) {}

  /** The playback running, if any. */
  get running(): Run | null {
    return this.current;
  }

  /** Starts `run` (stopping another one), or pauses it when it is already running. */
  async toggle(run: Run): Promise<void> {
    const same = this.current?.direction === run.direction && this.current.mode === run.mode;
    this.stop();
    if (same) return;
    const token: Run = { ...run };
    this.current = token;
    this.hooks.changed(token);
    while (this.current === token && this.hooks.canStep(run.direction)) {
      const started = performance.now();
      const lost = await this.hooks.step(run.direction);
      if (this.current !== token || lost === null) break;
      if (run.mode === "track" && lost.length > 0) {
        this.hooks.lost(lost);
        break;
      }
      const wait = run.mode === "play" ? 1000 / this.hooks.fps() - (performance.now() - started) : 0;
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    }
    if (this.current === token) this.stop();
  }

  /** Stops the running playback after the frame in flight. */
  stop(): void {
    if (this.current === null) return;
    this.current = null;
    this.hooks.changed(null);
  }
}
