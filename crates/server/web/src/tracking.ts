// Video tracking on the server: the masks each frame's SetImage answers (ImageReady.tracked),
// kept per frame for the exports.
import type { ObjectResult } from "@mobilesam/client";
import {
  toCandidate,
  type AnnotatedObject,
  type ImageInfo,
  type MaskCandidate,
} from "./annotations";

/** One object's result on one frame. */
export interface FrameObject {
  id: number;
  state: "tracked" | "lost";
  mask?: MaskCandidate;
}

/** What is known of one frame: its image and every object's result. */
export interface FrameRecord {
  index: number;
  image: ImageInfo;
  objects: FrameObject[];
}

/** Applies a frame's tracked masks to the objects; returns the ids of the lost ones. */
export function applyTracked(objects: AnnotatedObject[], tracked: ObjectResult[]): number[] {
  const lost: number[] = [];
  for (const result of tracked) {
    const object = objects.find((o) => o.id === result.objectId);
    if (!object) continue;
    const isLost = result.state === "lost" || result.masks.length === 0;
    object.state = isLost ? "lost" : "tracked";
    object.candidates = isLost ? [] : result.masks.map(toCandidate);
    object.chosen = 0;
    if (isLost) lost.push(object.id);
  }
  return lost;
}

/** The frame's record from the objects' current masks. */
export function recordFrame(index: number, image: ImageInfo, objects: AnnotatedObject[]): FrameRecord {
  return {
    index,
    image,
    objects: objects
      .filter((o) => o.state !== undefined || o.candidates.length > 0)
      .map((o) => ({
        id: o.id,
        state: o.state === "lost" ? "lost" : "tracked",
        mask: o.state === "lost" ? undefined : o.candidates[o.chosen],
      })),
  };
}
