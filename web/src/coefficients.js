// Landmarks and blendshape scores → smoothed Coefficients, exactly as face3d/online.py computes them.
//
// Pose: weighted Procrustes (similarity) alignment of MediaPipe's 33 reference landmarks onto the
// canonical mean face (face3d/camera.py: landmarks in width units, aligned onto the shape so the
// residual is in centimetres; a degenerate fit is refused). The Python code takes the rotation from an
// SVD; here it is the maximal eigenvector of Horn's 4×4 quaternion matrix, which is the same optimal
// proper rotation (det +1) — the two agree to rounding. Expression: MediaPipe's scores. Both smoothed by
// One-Euro filters with face3d.online.OnlineConfig's settings, which /api/face-model.json hands over
// with the reference points, so the browser and the Python edge send the same numbers for the same
// landmarks (tests/browser/test_js_parity.py holds them to it).

/** @typedef {import('./wire.js').Coefficients} Coefficients */

/**
 * The numbers face3d uses (from /api/face-model.json).
 * @typedef {{
 *   procrustes: {ids: number[], weights: number[], positions_cm: number[][]},
 *   blendshape_names: string[],
 *   degenerate_relative_rms: number,
 *   min_spread: number,
 *   online: {expression_min_cutoff_hz: number, expression_beta: number, rotation_min_cutoff_hz: number,
 *            rotation_beta: number, position_min_cutoff_hz: number, position_beta: number,
 *            derivative_cutoff_hz: number, reset_after_ms: number},
 * }} FaceModel
 */

/** A frame the estimator cannot use (collapsed, scrambled or mirrored landmarks; NaN input). */
export class FitError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "FitError";
  }
}

/**
 * Return the face model the gateway describes at `url`.
 * @param {string} url
 * @returns {Promise<FaceModel>}
 */
export async function loadFaceModel(url = "/api/face-model.json") {
  const response = await fetch(url);
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(body.error || `the gateway could not describe the face model (HTTP ${response.status})`);
  }
  return response.json();
}

// --------------------------------------------------------------------------------------------- 3-vectors

/** @typedef {[number, number, number]} Vec3 */
/** @typedef {number[][]} Mat3 3×3, row-major */

/**
 * Return the eigenvector of the largest eigenvalue of a symmetric 4×4 matrix (cyclic Jacobi) and that value.
 * @param {number[][]} matrix symmetric; not modified
 * @returns {[number[], number]}
 */
function largestEigenvector(matrix) {
  const a = matrix.map((row) => row.slice());
  const v = [
    [1, 0, 0, 0],
    [0, 1, 0, 0],
    [0, 0, 1, 0],
    [0, 0, 0, 1],
  ];
  for (let sweep = 0; sweep < 50; sweep += 1) {
    let off = 0;
    for (let p = 0; p < 3; p += 1) for (let q = p + 1; q < 4; q += 1) off += a[p][q] * a[p][q];
    if (off < 1e-30) break;
    for (let p = 0; p < 3; p += 1) {
      for (let q = p + 1; q < 4; q += 1) {
        if (a[p][q] === 0) continue;
        const theta = (a[q][q] - a[p][p]) / (2 * a[p][q]);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < 4; k += 1) {
          const akp = a[k][p];
          const akq = a[k][q];
          a[k][p] = c * akp - s * akq;
          a[k][q] = s * akp + c * akq;
        }
        for (let k = 0; k < 4; k += 1) {
          const apk = a[p][k];
          const aqk = a[q][k];
          a[p][k] = c * apk - s * aqk;
          a[q][k] = s * apk + c * aqk;
        }
        for (let k = 0; k < 4; k += 1) {
          const vkp = v[k][p];
          const vkq = v[k][q];
          v[k][p] = c * vkp - s * vkq;
          v[k][q] = s * vkp + c * vkq;
        }
      }
    }
  }
  let best = 0;
  for (let i = 1; i < 4; i += 1) if (a[i][i] > a[best][best]) best = i;
  return [v.map((row) => row[best]), a[best][best]];
}

/**
 * Return the rotation matrix of a unit quaternion (w, x, y, z).
 * @param {number[]} q
 * @returns {Mat3}
 */
function quaternionMatrix([w, x, y, z]) {
  return [
    [w * w + x * x - y * y - z * z, 2 * (x * y - w * z), 2 * (x * z + w * y)],
    [2 * (x * y + w * z), w * w - x * x + y * y - z * z, 2 * (y * z - w * x)],
    [2 * (x * z - w * y), 2 * (y * z + w * x), w * w - x * x - y * y + z * z],
  ];
}

/**
 * Return (a, Q, c) minimising Σ w_k ‖a·Q·source_k + c − target_k‖² with det Q = +1 (face3d.camera.similarity_align).
 * @param {Vec3[]} source
 * @param {Vec3[]} target
 * @param {number[]} weights
 * @param {number} minSpread
 * @returns {{a: number, rotation: Mat3, offset: Vec3}}
 */
export function similarityAlign(source, target, weights, minSpread) {
  const total = weights.reduce((sum, w) => sum + w, 0);
  const w = weights.map((value) => value / total);
  const srcMean = [0, 0, 0];
  const dstMean = [0, 0, 0];
  source.forEach((p, k) => p.forEach((value, i) => (srcMean[i] += w[k] * value)));
  target.forEach((p, k) => p.forEach((value, i) => (dstMean[i] += w[k] * value)));
  let srcVar = 0;
  // S[i][j] = Σ w_k src_k,i dst_k,j: Horn's correlation of the centred point sets.
  const S = [
    [0, 0, 0],
    [0, 0, 0],
    [0, 0, 0],
  ];
  for (let k = 0; k < source.length; k += 1) {
    const s = [0, 1, 2].map((i) => source[k][i] - srcMean[i]);
    const d = [0, 1, 2].map((i) => target[k][i] - dstMean[i]);
    srcVar += w[k] * (s[0] * s[0] + s[1] * s[1] + s[2] * s[2]);
    for (let i = 0; i < 3; i += 1) for (let j = 0; j < 3; j += 1) S[i][j] += w[k] * s[i] * d[j];
  }
  if (!(srcVar > minSpread * minSpread)) {
    throw new FitError("degenerate pose: the landmarks have collapsed to a point, no pose can be estimated");
  }
  const [[xx, xy, xz], [yx, yy, yz], [zx, zy, zz]] = S;
  const N = [
    [xx + yy + zz, yz - zy, zx - xz, xy - yx],
    [yz - zy, xx - yy - zz, xy + yx, zx + xz],
    [zx - xz, xy + yx, -xx + yy - zz, yz + zy],
    [xy - yx, zx + xz, yz + zy, -xx - yy + zz],
  ];
  const [q, best] = largestEigenvector(N);
  const norm = Math.hypot(...q);
  const rotation = quaternionMatrix(q.map((value) => value / norm));
  const a = best / srcVar; // the largest eigenvalue is Σ w (Q s)·d, the SVD's Σσ·sign
  const rotatedMean = [0, 1, 2].map((i) => rotation[i].reduce((sum, r, j) => sum + r * srcMean[j], 0));
  const offset = /** @type {Vec3} */ ([0, 1, 2].map((i) => dstMean[i] - a * rotatedMean[i]));
  return { a, rotation, offset };
}

/**
 * A scaled-orthographic camera: canonical cm → width units (face3d.camera.Camera).
 * @typedef {{rotation: Mat3, scale: number, translation: Vec3}} Camera
 */

/**
 * Return the camera that best maps the reference points onto the landmarks (face3d.camera.fit_camera).
 * @param {Vec3[]} points landmarks in width units (centre origin, y up, z toward the camera)
 * @param {Vec3[]} shape canonical positions, cm
 * @param {number[]} weights
 * @param {FaceModel} model
 * @returns {Camera}
 */
export function fitCamera(points, shape, weights, model) {
  const { a, rotation: Q, offset: c } = similarityAlign(points, shape, weights, model.min_spread);
  if (!(Number.isFinite(a) && a > 0)) {
    throw new FitError("degenerate pose: the landmarks cannot be aligned onto a face shape");
  }
  const n = shape.length;
  const shapeMean = [0, 1, 2].map((i) => shape.reduce((sum, p) => sum + p[i], 0) / n);
  let spread = 0;
  let miss = 0;
  for (let k = 0; k < n; k += 1) {
    for (let i = 0; i < 3; i += 1) {
      const aligned = a * (Q[i][0] * points[k][0] + Q[i][1] * points[k][1] + Q[i][2] * points[k][2]) + c[i];
      spread += (shape[k][i] - shapeMean[i]) ** 2;
      miss += (aligned - shape[k][i]) ** 2;
    }
  }
  spread = Math.sqrt(spread / n);
  miss = Math.sqrt(miss / n);
  if (miss > model.degenerate_relative_rms * spread) {
    const share = Math.round((100 * miss) / spread);
    throw new FitError(
      `degenerate pose: after the best similarity the landmarks still miss the face by ${share}% of its size`,
    );
  }
  const rotation = [0, 1, 2].map((i) => [0, 1, 2].map((j) => Q[j][i])); // Qᵀ
  const translation = /** @type {Vec3} */ (
    [0, 1, 2].map((i) => -(rotation[i][0] * c[0] + rotation[i][1] * c[1] + rotation[i][2] * c[2]) / a)
  );
  return { rotation, scale: 1 / a, translation };
}

/**
 * Return the camera of one frame from MediaPipe landmarks (face3d.online.pose_from_landmarks).
 * @param {ArrayLike<number>[]} landmarks (≥468) [x, y, z], MediaPipe-normalised
 * @param {[number, number]} imageSize [width, height] in pixels
 * @param {FaceModel} model
 * @returns {Camera}
 */
export function poseFromLandmarks(landmarks, imageSize, model) {
  const [width, height] = imageSize;
  if (!(width > 0 && height > 0)) throw new FitError(`image size must be positive, got ${imageSize}`);
  const { ids, weights, positions_cm: shape } = model.procrustes;
  const points = ids.map((id) => {
    const [x, y, z] = landmarks[id];
    return /** @type {Vec3} */ ([x - 0.5, (0.5 - y) * (height / width), -z]);
  });
  return fitCamera(points, /** @type {Vec3[]} */ (shape), weights, model);
}

/**
 * Return the quaternion [x, y, z, w] of a rotation matrix (scipy's Rotation.from_matrix algorithm).
 * @param {Mat3} m
 * @returns {number[]}
 */
export function matrixToQuaternion(m) {
  const decision = [m[0][0], m[1][1], m[2][2], m[0][0] + m[1][1] + m[2][2]];
  let choice = 0;
  for (let i = 1; i < 4; i += 1) if (decision[i] > decision[choice]) choice = i;
  const q = [0, 0, 0, 0];
  if (choice !== 3) {
    const i = choice;
    const j = (i + 1) % 3;
    const k = (j + 1) % 3;
    q[i] = 1 - decision[3] + 2 * m[i][i];
    q[j] = m[j][i] + m[i][j];
    q[k] = m[k][i] + m[i][k];
    q[3] = m[k][j] - m[j][k];
  } else {
    q[0] = m[2][1] - m[1][2];
    q[1] = m[0][2] - m[2][0];
    q[2] = m[1][0] - m[0][1];
    q[3] = 1 + decision[3];
  }
  const norm = Math.hypot(...q);
  return q.map((v) => v / norm);
}

/**
 * Return the rotation vector (axis × angle, |angle| ≤ π) of a quaternion [x, y, z, w] (scipy's as_rotvec).
 * @param {number[]} quaternion
 * @returns {number[]}
 */
export function quaternionToRotvec(quaternion) {
  const q = quaternion[3] < 0 ? quaternion.map((v) => -v) : quaternion;
  const sine = Math.hypot(q[0], q[1], q[2]);
  const angle = 2 * Math.atan2(sine, q[3]);
  const scale = angle <= 1e-3 ? 2 + angle ** 2 / 12 + (7 * angle ** 4) / 2880 : angle / Math.sin(angle / 2);
  return [scale * q[0], scale * q[1], scale * q[2]];
}

// ------------------------------------------------------------------------------------------ smoothing

/** Return the EMA factor for a cutoff and a time step: 1 / (1 + τ/dt), τ = 1/(2π f_c). */
function alpha(/** @type {number} */ cutoffHz, /** @type {number} */ dtS) {
  return 1.0 / (1.0 + 1.0 / (2.0 * Math.PI * cutoffHz * dtS));
}

/** A vectorised One-Euro filter (face3d.online.OneEuroFilter): each channel filtered independently. */
export class OneEuroFilter {
  /** @param {number} minCutoffHz @param {number} beta @param {number} derivativeCutoffHz */
  constructor(minCutoffHz, beta, derivativeCutoffHz) {
    this.minCutoffHz = minCutoffHz;
    this.beta = beta;
    this.derivativeCutoffHz = derivativeCutoffHz;
    /** @type {number[] | null} */
    this.value = null;
    /** @type {number[] | null} */
    this.speed = null;
  }

  /** Forget the past: the next sample passes through unchanged. */
  reset() {
    this.value = this.speed = null;
  }

  /**
   * Return the filtered value for a new sample `dtS` seconds after the previous one.
   * @param {number[]} value
   * @param {number} dtS
   * @returns {number[]}
   */
  filter(value, dtS) {
    if (this.value === null || this.speed === null) {
      this.value = value.slice();
      this.speed = value.map(() => 0);
      return this.value.slice();
    }
    const previous = this.value;
    const derivativeAlpha = alpha(this.derivativeCutoffHz, dtS);
    this.speed = this.speed.map((s, i) => s + derivativeAlpha * ((value[i] - previous[i]) / dtS - s));
    this.value = previous.map((v, i) => {
      const cutoff = this.minCutoffHz + this.beta * Math.abs(/** @type {number[]} */ (this.speed)[i]);
      return v + alpha(cutoff, dtS) * (value[i] - v);
    });
    return this.value.slice();
  }
}

/**
 * Per-frame Coefficients from tracked frames, causally smoothed; one per face stream
 * (face3d.online.OnlineEstimator). Call `reset()` when the face was lost.
 */
export class OnlineEstimator {
  /** @param {FaceModel} model */
  constructor(model) {
    this.model = model;
    const c = model.online;
    this.expression = new OneEuroFilter(c.expression_min_cutoff_hz, c.expression_beta, c.derivative_cutoff_hz);
    this.rotation = new OneEuroFilter(c.rotation_min_cutoff_hz, c.rotation_beta, c.derivative_cutoff_hz);
    this.position = new OneEuroFilter(c.position_min_cutoff_hz, c.position_beta, c.derivative_cutoff_hz);
    /** @type {number | null} */
    this.lastMs = null;
    /** @type {number[] | null} */
    this.lastQuat = null;
  }

  /** Forget the past (a new face). */
  reset() {
    this.expression.reset();
    this.rotation.reset();
    this.position.reset();
    this.lastMs = null;
    this.lastQuat = null;
  }

  /**
   * Return the smoothed Coefficients of one frame. Throws FitError for NaN input or a degenerate pose;
   * the filters keep their state then.
   * @param {ArrayLike<number>[]} landmarks (478) [x, y, z], MediaPipe-normalised
   * @param {ArrayLike<number>} blendshapes (52) scores in face3d.BLENDSHAPE_NAMES order
   * @param {[number, number]} imageSize [width, height] in pixels
   * @param {number} timestampMs integer capture time
   * @param {number} seq frame sequence number
   * @returns {Coefficients}
   */
  update(landmarks, blendshapes, imageSize, timestampMs, seq) {
    const scores = Array.from(blendshapes, Number);
    if (scores.length !== this.model.blendshape_names.length) {
      throw new FitError(`expected ${this.model.blendshape_names.length} blendshape scores, got ${scores.length}`);
    }
    if (!scores.every(Number.isFinite) || !landmarks.every((p) => Array.from(p).every(Number.isFinite))) {
      throw new FitError(`frame ${seq}: landmarks or blendshapes hold NaN or infinity`);
    }
    const camera = poseFromLandmarks(landmarks, imageSize, this.model);
    const gap = this.lastMs === null ? null : timestampMs - this.lastMs;
    if (gap !== null && !(gap > 0 && gap <= this.model.online.reset_after_ms)) this.reset();
    const dtS = this.lastMs === null ? 1.0 : (timestampMs - this.lastMs) / 1000.0;
    this.lastMs = timestampMs;

    let quat = matrixToQuaternion(camera.rotation);
    const last = this.lastQuat;
    if (last !== null && quat.reduce((sum, v, i) => sum + v * last[i], 0) < 0) {
      quat = quat.map((v) => -v); // q and −q are one rotation: keep the filter on one hemisphere
    }
    quat = this.rotation.filter(quat, dtS);
    const norm = Math.hypot(...quat);
    quat = quat.map((v) => v / norm);
    this.lastQuat = quat;
    const position = this.position.filter(
      [camera.translation[0], -camera.translation[1], Math.log(camera.scale)],
      dtS,
    );
    const expression = this.expression.filter(
      scores.map((s) => Math.min(Math.max(s, 0), 1)),
      dtS,
    );
    const wrap = 2 ** 32;
    return {
      seq: ((seq % wrap) + wrap) % wrap,
      timestampMs: ((timestampMs % wrap) + wrap) % wrap,
      blendshapes: Float32Array.from(expression, (v) => Math.min(Math.max(v, 0), 1)),
      rotation: Float32Array.from(quaternionToRotvec(quat)),
      translation: Float32Array.from(position.slice(0, 2)),
      scale: Math.exp(position[2]),
    };
  }
}
