// The live preview: while the pointer moves over the image, the mask a click there would
// give follows it. Every hover asks the server with `supersede_pending`, so a hover that
// is still queued when the next arrives is answered ABORTED and never decoded (latest
// wins); at most three requests are in flight, and only an answer newer than the one shown
// is drawn. A click commits: it cancels the preview, and the page predicts the click.
import { Superseded } from "@mobilesam/client";
import type { ClickPoint, MaskCandidate } from "./annotations";

/** Requests in flight at most (a browser has few connections per origin over HTTP/1.1). */
const MAX_IN_FLIGHT = 3;

/** Asks for the best mask with `point` added to the active object's prompt. */
export type PreviewRequest = (point: ClickPoint) => Promise<MaskCandidate | null>;

/** Counters, for the page's tests and the console. */
export interface PreviewStats {
  /** Hover requests sent. */
  sent: number;
  /** Answered ABORTED: superseded by a newer hover on the server. */
  superseded: number;
  /** Answers drawn. */
  shown: number;
  /** The point of the mask on screen, if any. */
  point: ClickPoint | null;
  /** The request id of the mask on screen (0: none). */
  shownRequest: number;
}

export class LivePreview {
  private nextId = 0;
  private shownId = 0;
  private inFlight = 0;
  private waiting: ClickPoint | null = null;
  /** Bumped by `cancel`: answers to requests of an older epoch are dropped. */
  private epoch = 0;
  readonly stats: PreviewStats = { sent: 0, superseded: 0, shown: 0, point: null, shownRequest: 0 };

  constructor(
    private readonly request: PreviewRequest,
    private readonly show: (candidate: MaskCandidate | null) => void,
    private readonly onError: (error: unknown) => void,
  ) {}

  /** The pointer is at `point`: preview a click there. */
  hover(point: ClickPoint): void {
    this.waiting = point;
    this.pump();
  }

  /** Stops previewing (a click, the pointer left the image, a new image): in-flight answers
   * are dropped and the preview is cleared. */
  cancel(): void {
    this.epoch++;
    this.waiting = null;
    this.stats.point = null;
    this.stats.shownRequest = 0;
    this.show(null);
  }

  private pump(): void {
    while (this.waiting && this.inFlight < MAX_IN_FLIGHT) {
      const point = this.waiting;
      this.waiting = null;
      void this.send(point);
    }
  }

  private async send(point: ClickPoint): Promise<void> {
    const id = ++this.nextId;
    const epoch = this.epoch;
    this.inFlight++;
    this.stats.sent++;
    try {
      const candidate = await this.request(point);
      if (epoch === this.epoch && id > this.shownId) {
        this.shownId = id;
        this.stats.shown++;
        this.stats.point = point;
        this.stats.shownRequest = id;
        this.show(candidate);
      }
    } catch (error) {
      if (error instanceof Superseded) {
        this.stats.superseded++;
      } else if (epoch === this.epoch) {
        this.onError(error);
      }
    } finally {
      this.inFlight--;
      this.pump();
    }
  }
}
