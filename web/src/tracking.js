// MediaPipe FaceLandmarker in the page: VIDEO mode, CPU delegate, blendshapes and matrices — the same
// model file (face_landmarker.task) and settings as the Python edge (edge/tracking.py), served by the
// gateway together with MediaPipe's WASM (nothing comes from a CDN).

import { FaceLandmarker, FilesetResolver } from "/vendor/tasks-vision/vision_bundle.mjs";

export const WASM_BASE = "/vendor/tasks-vision/wasm";
export const MODEL_URL = "/models/face_landmarker.task";

/**
 * One tracked frame: a face, or `null` fields when none was found.
 * @typedef {{
 *   landmarks: number[][] | null,
 *   blendshapes: number[] | null,
 *   matrix: number[] | null,
 *   imageSize: [number, number],
 *   trackingMs: number,
 * }} TrackedFrame
 */

/** A FaceLandmarker fed from a <video>; one per camera stream. */
export class FaceTracker {
  /**
   * @param {FaceLandmarker} landmarker
   * @param {string[]} blendshapeNames face3d.BLENDSHAPE_NAMES, the order the Coefficients carry
   */
  constructor(landmarker, blendshapeNames) {
    this.landmarker = landmarker;
    this.blendshapeNames = blendshapeNames;
    this.lastTimestampMs = -1;
  }

  /**
   * Return a tracker once MediaPipe's WASM and the model are loaded (0.5–1 s; the first frame takes longer).
   * @param {string[]} blendshapeNames
   * @param {{wasmBase?: string, modelUrl?: string}} [where]
   * @returns {Promise<FaceTracker>}
   */
  static async create(blendshapeNames, { wasmBase = WASM_BASE, modelUrl = MODEL_URL } = {}) {
    const fileset = await FilesetResolver.forVisionTasks(wasmBase);
    const landmarker = await FaceLandmarker.createFromOptions(fileset, {
      baseOptions: { modelAssetPath: modelUrl, delegate: "CPU" },
      runningMode: "VIDEO",
      numFaces: 1,
      minFaceDetectionConfidence: 0.5,
      minFacePresenceConfidence: 0.5,
      minTrackingConfidence: 0.5,
      outputFaceBlendshapes: true,
      outputFacialTransformationMatrixes: true,
    });
    return new FaceTracker(landmarker, blendshapeNames);
  }

  /**
   * Return what the landmarker sees in the video's current frame.
   * @param {HTMLVideoElement} video
   * @param {number} timestampMs increasing; a repeated or earlier one is nudged forward by 1 ms
   * @returns {TrackedFrame}
   */
  track(video, timestampMs) {
    const timestamp = Math.max(Math.round(timestampMs), this.lastTimestampMs + 1);
    this.lastTimestampMs = timestamp;
    const start = performance.now();
    const result = this.landmarker.detectForVideo(video, timestamp);
    const trackingMs = performance.now() - start;
    /** @type {[number, number]} */
    const imageSize = [video.videoWidth, video.videoHeight];
    const points = result.faceLandmarks[0];
    const categories = result.faceBlendshapes[0]?.categories;
    if (!points || !categories) {
      return { landmarks: null, blendshapes: null, matrix: null, imageSize, trackingMs };
    }
    const byName = new Map(categories.map((c) => [c.categoryName, c.score]));
    return {
      landmarks: points.map((p) => [p.x, p.y, p.z]),
      blendshapes: this.blendshapeNames.map((name) => Math.min(Math.max(byName.get(name) ?? 0, 0), 1)),
      matrix: result.facialTransformationMatrixes[0] ? Array.from(result.facialTransformationMatrixes[0].data) : null,
      imageSize,
      trackingMs,
    };
  }

  /** Release MediaPipe's graph. */
  close() {
    this.landmarker.close();
  }
}
