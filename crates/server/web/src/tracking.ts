// Video tracking on the server: the masks each frame's SetImage answers (ImageReady.tracked),
// kept per frame for the exports and for revisits.
import type { ObjectResult } from "@mobilesam/client";
import {
  toCandidate,
  type AnnotatedObject,
  type BoxCorners,
  type ClickPoint,
  type ImageInfo,
  type MaskCandidate,
  type TrackState,
} from "./annotations";

/** One object's result on one frame, and the clicks made on it there. */
export interface FrameObject {
  id: number;
  state: TrackState;
  /** None when the object is lost or occluded on the frame. */
  mask?: MaskCandidate;
  /** The clicks and box given on this frame (a conditioning frame of the object). */
  points: ClickPoint[];
  box: BoxCorners | null;
}

/** What is known of one frame: its image and every object's result. */
export interface FrameRecord {
  index: number;
  image: ImageInfo;
  objects: FrameObject[];
}

/** The page's state of a server track state; "none" (an untracked object) reads as
 * tracked, as the page only asks for tracked objects. */
export function trackState(state: ObjectResult["state"]): TrackState {
  return state === "lost" || state === "occluded" ? state : "tracked";
}

/** Applies a frame's tracked masks to the objects; returns the ids of the lost ones. An
 * occluded object keeps being followed: it gets no mask on this frame and is not lost. */
export function applyTracked(objects: AnnotatedObject[], tracked: ObjectResult[]): number[] {
  const lost: number[] = [];
  for (const result of tracked) {
    const object = objects.find((o) => o.id === result.objectId);
    if (!object) continue;
    applyResult(object, result);
    if (object.state === "lost") lost.push(object.id);
  }
  return lost;
}

/** Sets `object`'s state and candidates from its result on the frame shown. A tracked
 * object without a mask counts as lost (the recipe answers no mask when it loses one). */
export function applyResult(object: AnnotatedObject, result: ObjectResult | undefined): void {
  let state = trackState(result?.state ?? "tracked");
  if (state === "tracked" && (result?.masks.length ?? 0) === 0) state = "lost";
  object.state = state;
  object.candidates = state === "tracked" ? (result?.masks ?? []).map(toCandidate) : [];
  object.chosen = object.candidates.reduce(
    (best, candidate, index, all) => (candidate.score > all[best].score ? index : best),
    0,
  );
}

/** The frame's record from the objects' current masks and clicks. */
export function recordFrame(index: number, image: ImageInfo, objects: AnnotatedObject[]): FrameRecord {
  return {
    index,
    image,
    objects: objects
      .filter((o) => o.state !== undefined || o.candidates.length > 0)
      .map((o) => {
        const state = o.state ?? "tracked";
        return {
          id: o.id,
          state,
          mask: state === "tracked" ? o.candidates[o.chosen] : undefined,
          points: [...o.points],
          box: o.box,
        };
      }),
  };
}

/** Puts back the clicks made on a revisited frame (`record`, none for a new frame): clicks
 * belong to the frame they were made on, and a further click there adds to them. */
export function restoreClicks(objects: AnnotatedObject[], record: FrameRecord | undefined): void {
  for (const object of objects) {
    const kept = record?.objects.find((o) => o.id === object.id);
    object.points = kept ? [...kept.points] : [];
    object.box = kept?.box ?? null;
  }
}
