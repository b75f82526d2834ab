// Video frames: seek a <video> element frame by frame and grab each frame as a JPEG.

/** A video opened for frame stepping at a fixed frame rate. */
export class FrameSource {
  index = 0;

  constructor(
    readonly video: HTMLVideoElement,
    public fps: number,
  ) {}

  /** Loads `file` into the video element and waits for its metadata. */
  static async open(video: HTMLVideoElement, file: File, fps: number): Promise<FrameSource> {
    video.src = URL.createObjectURL(file);
    await new Promise<void>((resolve, reject) => {
      video.onloadeddata = () => resolve();
      video.onerror = () => reject(new Error(`cannot play ${file.name} in this browser`));
    });
    // Recorded WebM (MediaRecorder) often has no duration until the end is seeked once.
    if (!Number.isFinite(video.duration)) {
      await new Promise<void>((resolve) => {
        video.ondurationchange = () => {
          if (Number.isFinite(video.duration)) resolve();
        };
        video.currentTime = Number.MAX_SAFE_INTEGER;
      });
      video.ondurationchange = null;
    }
    return new FrameSource(video, fps);
  }

  /** Number of frames at the chosen rate. */
  get frameCount(): number {
    return Math.max(1, Math.floor(this.video.duration * this.fps));
  }

  /** Seeks to frame `index` (clamped) and draws it onto `canvas`, resized to the video. */
  async show(index: number, canvas: HTMLCanvasElement): Promise<void> {
    this.index = Math.min(Math.max(0, index), this.frameCount - 1);
    const time = Math.min(this.index / this.fps, Math.max(0, this.video.duration - 1e-3));
    if (Math.abs(this.video.currentTime - time) > 1e-4 || this.video.readyState < 2) {
      await new Promise<void>((resolve) => {
        this.video.onseeked = () => resolve();
        this.video.currentTime = time;
      });
    }
    canvas.width = this.video.videoWidth;
    canvas.height = this.video.videoHeight;
    canvas.getContext("2d")?.drawImage(this.video, 0, 0);
  }
}

/** JPEG quality of the frames sent to the server: a 720p PNG frame is several MB, a JPEG
 * at this quality a few hundred KB. */
export const FRAME_JPEG_QUALITY = 0.92;

/** The canvas' pixels as JPEG bytes. */
export async function canvasJpeg(canvas: HTMLCanvasElement): Promise<Uint8Array> {
  const blob = await new Promise<Blob | null>((resolve) =>
    canvas.toBlob(resolve, "image/jpeg", FRAME_JPEG_QUALITY),
  );
  if (!blob) throw new Error("cannot encode the frame");
  return new Uint8Array(await blob.arrayBuffer());
}
