// Framing and lighting hints for the enrolment recording: is one face in the picture, centred and big
// enough, and lit neither too dark nor too bright? The enrolment job checks the recording again
// (training/enrol.py check_recording) and refuses it without enough face frames; these hints let the
// person fix what they can before recording instead of after a refused upload.
//
// The face comes from tracking.js's FaceTracker (MediaPipe, loaded on demand: without it the page
// still records, with lighting hints only); brightness is the mean luminance of a small copy of the
// frame drawn into a canvas, over the face's box when there is one.

// configs/enrol.yaml `checks`: the enrolment warns when the face box's mean luminance (0-255) is
// below 40 (noisy landmarks and fits) or above 215 (skin texture clipped away).
export const DARK_LUMINANCE = 40;
export const BRIGHT_LUMINANCE = 215;
// The face box's centre may stray this far from the picture's centre (fractions of width and height):
// the enrolment crops around the face, and a head turning near an edge leaves the picture.
export const MAX_OFFSET_X = 0.18;
export const MAX_OFFSET_Y = 0.2;
// Face box height as a fraction of the picture's: smaller faces give blurred crops (the enrolment's
// sharpness check works on 128 px), larger ones leave the frame when the head moves.
export const MIN_FACE_HEIGHT = 0.22;
export const MAX_FACE_HEIGHT = 0.8;
const SAMPLE_WIDTH = 96; // the luminance canvas: enough pixels for a mean, cheap to read back each check

/**
 * A face's bounding box in normalised image coordinates (0-1, origin top left).
 * @typedef {{x0: number, y0: number, x1: number, y1: number}} FaceBox
 */

/**
 * What one check found. face: "found" (centred, big enough), "none", "off-centre", "small", "large", or
 * "unknown" (no tracker). light: "ok", "dark", "bright" or "unknown" (no frame yet). luminance: 0-255.
 * @typedef {{
 *   face: "found" | "none" | "off-centre" | "small" | "large" | "unknown",
 *   light: "ok" | "dark" | "bright" | "unknown",
 *   luminance: number | null,
 *   box: FaceBox | null,
 *   faceHint: string,
 *   lightHint: string,
 *   good: boolean,
 * }} FramingCheck
 */

/**
 * Return the bounding box of normalised landmarks ([x, y, z] each).
 * @param {number[][]} landmarks
 * @returns {FaceBox}
 */
export function faceBox(landmarks) {
  let x0 = Infinity;
  let y0 = Infinity;
  let x1 = -Infinity;
  let y1 = -Infinity;
  for (const [x, y] of landmarks) {
    x0 = Math.min(x0, x);
    y0 = Math.min(y0, y);
    x1 = Math.max(x1, x);
    y1 = Math.max(y1, y);
  }
  return { x0, y0, x1, y1 };
}

/**
 * Return how a face box sits in the picture, and the advice for it.
 * @param {FaceBox | null} box null: no face found
 * @returns {[FramingCheck["face"], string]}
 */
export function judgeFace(box) {
  if (!box) return ["none", "No face found: look at the camera with your whole face in the picture."];
  const height = box.y1 - box.y0;
  const dx = (box.x0 + box.x1) / 2 - 0.5;
  const dy = (box.y0 + box.y1) / 2 - 0.5;
  if (height < MIN_FACE_HEIGHT) return ["small", "Come closer: your face is small in the picture."];
  if (height > MAX_FACE_HEIGHT) return ["large", "Move back a little: keep your whole head in the picture."];
  if (Math.abs(dx) > MAX_OFFSET_X || Math.abs(dy) > MAX_OFFSET_Y) {
    // Directions in the picture as shown (not mirrored), so "left" is the viewer's left.
    const where = Math.abs(dx) > MAX_OFFSET_X ? (dx < 0 ? "left" : "right") : dy < 0 ? "top" : "bottom";
    return ["off-centre", `Centre your face: it is near the ${where} of the picture.`];
  }
  return ["found", "Face found, centred and big enough."];
}

/**
 * Return whether a mean luminance is good, and the advice for it.
 * @param {number | null} luminance 0-255, null when no frame was measured
 * @returns {[FramingCheck["light"], string]}
 */
export function judgeLight(luminance) {
  if (luminance === null) return ["unknown", "Measuring the light…"];
  if (luminance < DARK_LUMINANCE) return ["dark", "Too dark: turn on a light in front of you."];
  if (luminance > BRIGHT_LUMINANCE) return ["bright", "Too bright: move away from direct light or a window."];
  return ["ok", "Lighting is good."];
}

/**
 * Return the mean luminance (Rec. 601 luma, 0-255) of RGBA pixels inside a normalised box.
 * @param {ImageData} image
 * @param {FaceBox | null} box null: the whole image
 * @returns {number | null} null when the box holds no pixel
 */
export function meanLuminance(image, box = null) {
  const { width, height, data } = image;
  const clamp = (/** @type {number} */ v, /** @type {number} */ n) => Math.min(Math.max(Math.round(v * n), 0), n);
  const [x0, x1] = box ? [clamp(box.x0, width), clamp(box.x1, width)] : [0, width];
  const [y0, y1] = box ? [clamp(box.y0, height), clamp(box.y1, height)] : [0, height];
  let sum = 0;
  let count = 0;
  for (let y = y0; y < y1; y += 1) {
    for (let x = x0; x < x1; x += 1) {
      const i = (y * width + x) * 4;
      sum += 0.299 * data[i] + 0.587 * data[i + 1] + 0.114 * data[i + 2];
      count += 1;
    }
  }
  return count ? sum / count : null;
}

/** Checks a live <video> for framing and lighting; the face part once MediaPipe has loaded. */
export class FramingCoach {
  /** @param {HTMLVideoElement} video */
  constructor(video) {
    this.video = video;
    /** @type {{track: (video: HTMLVideoElement, timestampMs: number) => {landmarks: number[][] | null}, close: () => void} | null} */
    this.tracker = null;
    /** Why there are no face hints, when there are none. */
    this.trackerProblem = "";
    this.canvas = document.createElement("canvas");
    this.context = /** @type {CanvasRenderingContext2D} */ (this.canvas.getContext("2d", { willReadFrequently: true }));
  }

  /**
   * Load the face tracker; on failure the coach goes on with lighting hints and says why in `trackerProblem`.
   * @returns {Promise<boolean>} whether face hints are available
   */
  async loadTracker() {
    try {
      // Imported here, not at the top: tracking.js pulls MediaPipe's bundle, which a gateway without
      // `make web` does not serve — the page must still record then.
      const { FaceTracker } = await import("./tracking.js");
      this.tracker = await FaceTracker.create([]);
      return true;
    } catch (error) {
      this.trackerProblem = `face hints are unavailable (${error instanceof Error ? error.message : String(error)})`;
      return false;
    }
  }

  /**
   * Return what the video's current frame shows.
   * @param {number} now performance.now() in ms
   * @returns {FramingCheck}
   */
  check(now) {
    const { video } = this;
    if (!video.videoWidth || video.readyState < 2) {
      const waiting = "Waiting for the camera…";
      return {
        face: "unknown",
        light: "unknown",
        luminance: null,
        box: null,
        faceHint: waiting,
        lightHint: "",
        good: false,
      };
    }
    /** @type {FaceBox | null} */
    let box = null;
    /** @type {[FramingCheck["face"], string]} */
    let face = ["unknown", this.trackerProblem ? `No face hints: ${this.trackerProblem}.` : "Loading face tracking…"];
    if (this.tracker) {
      const tracked = this.tracker.track(video, now);
      box = tracked.landmarks ? faceBox(tracked.landmarks) : null;
      face = judgeFace(box);
    }
    const width = SAMPLE_WIDTH;
    const height = Math.max(1, Math.round((SAMPLE_WIDTH * video.videoHeight) / video.videoWidth));
    if (this.canvas.width !== width || this.canvas.height !== height) {
      this.canvas.width = width;
      this.canvas.height = height;
    }
    this.context.drawImage(video, 0, 0, width, height);
    const luminance = meanLuminance(this.context.getImageData(0, 0, width, height), box);
    const [light, lightHint] = judgeLight(luminance);
    // Without a tracker only the light can be judged; the job's own checks still guard the face.
    const faceOk = face[0] === "found" || (face[0] === "unknown" && !this.tracker && this.trackerProblem !== "");
    return { face: face[0], light, luminance, box, faceHint: face[1], lightHint, good: faceOk && light === "ok" };
  }

  /** Release MediaPipe's graph. */
  close() {
    this.tracker?.close();
    this.tracker = null;
  }
}
