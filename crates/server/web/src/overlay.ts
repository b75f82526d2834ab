// Drawing: the coloured mask overlay and the prompt marks.
import { Annotations, type AnnotatedObject } from "./annotations";

/** Mask opacity on the overlay (0-255). */
export const OVERLAY_ALPHA = 120;

/** Paints every object's chosen mask in its colour onto `canvas` (image-sized). */
export function drawMasks(canvas: HTMLCanvasElement, objects: AnnotatedObject[]): void {
  const context = canvas.getContext("2d");
  if (!context) return;
  const pixels = context.createImageData(canvas.width, canvas.height);
  for (const object of objects) {
    const chosen = Annotations.chosenMask(object);
    if (!chosen || chosen.mask.width !== canvas.width || chosen.mask.height !== canvas.height) continue;
    const [r, g, b] = object.color;
    const data = chosen.mask.data;
    for (let i = 0; i < data.length; i++) {
      if (data[i] === 0) continue;
      const o = i * 4;
      pixels.data[o] = r;
      pixels.data[o + 1] = g;
      pixels.data[o + 2] = b;
      pixels.data[o + 3] = OVERLAY_ALPHA;
    }
  }
  context.putImageData(pixels, 0, 0);
}

/** Draws points (green foreground, red background), boxes and a box being dragged. */
export function drawPrompts(
  canvas: HTMLCanvasElement,
  objects: AnnotatedObject[],
  dragging: [number, number, number, number] | null,
): void {
  const context = canvas.getContext("2d");
  if (!context) return;
  context.clearRect(0, 0, canvas.width, canvas.height);
  const radius = Math.max(3, Math.round(Math.max(canvas.width, canvas.height) / 150));
  context.lineWidth = Math.max(1, radius / 2);
  for (const object of objects) {
    const [r, g, b] = object.color;
    if (object.box) {
      const [x1, y1, x2, y2] = object.box;
      context.strokeStyle = `rgb(${r}, ${g}, ${b})`;
      context.strokeRect(x1, y1, x2 - x1, y2 - y1);
    }
    for (const point of object.points) {
      context.beginPath();
      context.arc(point.x, point.y, radius, 0, 2 * Math.PI);
      context.fillStyle = point.label === 1 ? "#22c55e" : "#ef4444";
      context.fill();
      context.strokeStyle = "white";
      context.stroke();
    }
  }
  if (dragging) {
    const [x1, y1, x2, y2] = dragging;
    context.setLineDash([6, 4]);
    context.strokeStyle = "white";
    context.strokeRect(x1, y1, x2 - x1, y2 - y1);
    context.setLineDash([]);
  }
}
