// The sender page: camera → MediaPipe FaceLandmarker → Coefficients (as face3d.online) → compact wire
// packets on the "coeffs" data channel; the avatar comes back as video (the self-view).
//
// Flow: read the link → ask for the camera → (connect to the gateway ∥ load the tracker) → one tracked
// frame per camera frame. Every state the person can be in is said in the status region (ui.js):
// camera denied, no face, a refusal by the gateway (401/403/404/409/429/503), connection lost →
// reconnecting → reconnected.
//
// `window.headcast` exposes the page's live state for tests and for curious people (read-only use).

import { FaceTracker } from "./tracking.js";
import { FitError, OnlineEstimator, loadFaceModel } from "./coefficients.js";
import { CompactEncoder, isKeyPacket } from "./wire.js";
import { GatewayRefusal, LiveSession, RateMeter } from "./session.js";
import { StatusView, describeRefusal, formatNumber, readLink, showStats, tokenClaims, watchFrames } from "./ui.js";

const FPS = 25; // the session's render rate asked of the gateway (its default)
const NO_FACE_AFTER_MS = 400; // this long without a face before the page says so
const HISTORY = 900; // tracked frames kept for window.headcast.history (~35 s at 25 fps)
const MOUTH = ["jawOpen", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft", "mouthUpperUpRight"];

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const status = new StatusView($("status"));
const form = /** @type {HTMLFormElement} */ ($("setup"));
const roomInput = /** @type {HTMLInputElement} */ ($("room"));
const targetSelect = /** @type {HTMLSelectElement} */ ($("target"));
const targetOther = /** @type {HTMLInputElement} */ ($("target-other"));
const tokenInput = /** @type {HTMLInputElement} */ ($("token"));
const startButton = /** @type {HTMLButtonElement} */ ($("start"));
const stopButton = /** @type {HTMLButtonElement} */ ($("stop"));
const cameraVideo = /** @type {HTMLVideoElement} */ ($("camera"));
const avatarVideo = /** @type {HTMLVideoElement} */ ($("avatar"));
const faceLabel = $("face");
const statsList = $("stats");

/** Everything one run of the page holds (Start → Stop). */
class SenderRun {
  /** @param {{room: string, target: string, token: string, targets: string[] | null}} params */
  constructor(params) {
    this.params = params;
    /** @type {MediaStream | null} */
    this.camera = null;
    /** @type {FaceTracker | null} */
    this.tracker = null;
    /** @type {OnlineEstimator | null} */
    this.estimator = null;
    this.encoder = new CompactEncoder();
    /** @type {LiveSession | null} */
    this.session = null;
    this.stopped = false;
    this.seq = 0;
    this.frames = 0;
    this.faces = 0;
    this.lastFaceAt = performance.now();
    /** @type {number[]} */
    this.trackingMs = [];
    this.videoFrames = new RateMeter();
    /** @type {object[]} */
    this.history = [];
    /** @type {object | null} */
    this.lastCoefficients = null;
    this.busy = false;
    this.mouth = /** @type {number[]} */ ([]);
  }

  async run() {
    const { room, target, token } = this.params;
    status.show("starting", "Asking for the camera…");
    try {
      this.camera = await navigator.mediaDevices.getUserMedia({
        video: { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 30 } },
        audio: false,
      });
    } catch (error) {
      const name = error instanceof DOMException ? error.name : "";
      if (name === "NotAllowedError" || name === "SecurityError") {
        status.show(
          "camera-denied",
          "Camera access was denied. Allow this site to use the camera (the camera icon in the address bar), then press Start.",
        );
      } else {
        status.show("no-camera", `No camera could be opened (${name || error}). Connect one, then press Start.`);
      }
      return false;
    }
    if (this.stopped) return false;
    cameraVideo.srcObject = this.camera;
    await cameraVideo.play().catch(() => {});

    status.show("connecting", `Connecting to room “${room}” as “${target}”…`);
    const model = loadFaceModel();
    const tracker = model.then((m) => FaceTracker.create(m.blendshape_names));
    model.catch(() => {});
    tracker.catch(() => {});
    this.session = new LiveSession({ role: "send", room, token, target, fps: FPS }, {
      onState: (state, detail) => this.sessionState(state, detail),
      onMessage: (message) => {
        // The gateway's decoder lost this chain (a dropped packet): the next packet is a key frame.
        if (message.type === "key_frame") this.encoder.reset();
      },
      onTrack: (stream) => {
        avatarVideo.srcObject = stream;
        avatarVideo.play().catch(() => {});
      },
    });
    try {
      await this.session.start();
    } catch (error) {
      this.showFailure(error);
      return false;
    }
    if (this.stopped) return false;
    status.show("loading", "Connected. Loading the face tracker…");
    try {
      this.estimator = new OnlineEstimator(await model);
      this.tracker = await tracker;
    } catch (error) {
      status.show("error", `The face tracker could not start: ${error instanceof Error ? error.message : error}`);
      return false;
    }
    if (this.stopped) return false;
    status.show("live", `Live: you appear as “${target}” in room “${room}”.`);
    this.lastFaceAt = performance.now();
    watchFrames(cameraVideo, (now, metadata) => this.frame(now, metadata));
    watchFrames(avatarVideo, (now) => this.videoFrames.add(now));
    return true;
  }

  /**
   * Show why the session could not start.
   * @param {unknown} error
   */
  showFailure(error) {
    if (error instanceof GatewayRefusal) {
      const [state, message] = describeRefusal(error, this.params);
      status.show(state, message);
    } else {
      status.show("failed", `Could not connect: ${error instanceof Error ? error.message : error}`);
    }
  }

  /**
   * @param {string} state
   * @param {any} detail
   */
  sessionState(state, detail) {
    if (this.stopped) return;
    const { room, target } = this.params;
    if (state === "lost") {
      status.show("lost", `Connection lost (${detail.reason}). Reconnecting…`);
    } else if (state === "reconnecting") {
      status.show(
        "reconnecting",
        `Connection lost (${detail.reason}). Reconnecting, attempt ${detail.attempt} of ${detail.of}…`,
      );
    } else if (state === "reconnected") {
      this.encoder.reset(); // the new session's decoder holds no reference: a key frame first
      status.show("reconnected", `Reconnected after ${(detail.afterMs / 1000).toFixed(1)} s: live again as “${target}” in room “${room}”.`);
    } else if (state === "ended") {
      status.show(detail.code === "target_revoked" ? "target-revoked" : "ended", `The session has ended: ${detail.message}`);
      finish(false);
    } else if (state === "failed") {
      if (detail.error instanceof GatewayRefusal) {
        const [, message] = describeRefusal(detail.error, this.params);
        status.show("failed", `Connection lost and could not be restored: ${message}`);
      } else {
        status.show("failed", `Connection lost and could not be restored (${detail.reason}). Press Start to try again.`);
      }
      finish(false);
    }
  }

  /**
   * Track one camera frame and send its Coefficients.
   * @param {number} now
   * @param {VideoFrameCallbackMetadata} metadata
   */
  frame(now, metadata) {
    if (this.stopped || this.busy || !this.tracker || !this.estimator || !this.session) return;
    this.busy = true;
    try {
      const captured = metadata.captureTime ?? now;
      const tracked = this.tracker.track(cameraVideo, captured);
      const timestampMs = this.tracker.lastTimestampMs;
      this.frames += 1;
      this.trackingMs.push(tracked.trackingMs);
      if (this.trackingMs.length > 100) this.trackingMs.shift();
      const at = performance.timeOrigin + now;
      if (!tracked.landmarks || !tracked.blendshapes) {
        this.estimator.reset(); // as the Python edge: no filter state carries across a lost face
        this.noFace(now);
        this.remember({ t: at, face: false });
        return;
      }
      this.faces += 1;
      this.lastFaceAt = now;
      this.faceFound();
      let c;
      try {
        c = this.estimator.update(tracked.landmarks, tracked.blendshapes, tracked.imageSize, timestampMs, this.seq);
      } catch (error) {
        if (error instanceof FitError) {
          this.remember({ t: at, face: false, error: error.message });
          return;
        }
        throw error;
      }
      const names = this.estimator.model.blendshape_names;
      const raw = Object.fromEntries(MOUTH.map((name) => [name, tracked.blendshapes[names.indexOf(name)]]));
      const sent = this.session.admit();
      if (sent) {
        const packet = this.encoder.encode(c);
        this.session.send(packet, c.seq, isKeyPacket(packet));
      }
      this.lastCoefficients = c;
      this.remember({
        t: at,
        face: true,
        seq: c.seq,
        sent,
        raw,
        jawOpen: c.blendshapes[names.indexOf("jawOpen")],
        mouth: MOUTH.slice(1).reduce((sum, name) => sum + c.blendshapes[names.indexOf(name)], 0),
        rotation: Array.from(c.rotation),
        scale: c.scale,
      });
      this.seq = (this.seq + 1) % 2 ** 32;
    } finally {
      this.busy = false;
    }
  }

  /** @param {object} entry */
  remember(entry) {
    this.history.push(entry);
    if (this.history.length > HISTORY) this.history.shift();
  }

  /** @param {number} now */
  noFace(now) {
    faceLabel.textContent = "not found";
    faceLabel.dataset.face = "missing";
    if (now - this.lastFaceAt > NO_FACE_AFTER_MS && ["live", "reconnected"].includes(status.state)) {
      status.show("no-face", "No face in view: face the camera, in good light. Nothing is sent meanwhile.");
    }
  }

  faceFound() {
    faceLabel.textContent = "found";
    faceLabel.dataset.face = "found";
    if (status.state === "no-face") {
      status.show("live", `Live: you appear as “${this.params.target}” in room “${this.params.room}”.`);
    }
  }

  /** Return the numbers the page shows, and more. */
  stats() {
    const now = performance.now();
    const session = this.session?.stats() ?? {};
    const tracking = this.trackingMs.length
      ? this.trackingMs.reduce((sum, ms) => sum + ms, 0) / this.trackingMs.length
      : null;
    const gateway = session.gateway;
    const gatewayDropped = gateway?.dropped
      ? Object.values(gateway.dropped).reduce((sum, n) => sum + Number(n || 0), 0)
      : 0;
    return {
      ...session,
      trackingMsMean: tracking,
      framesTracked: this.frames,
      facesFound: this.faces,
      videoFps: this.videoFrames.rate(now),
      viewers: gateway?.viewers ?? null,
      dropped: (session.droppedOffline ?? 0) + (session.droppedCongested ?? 0) + gatewayDropped,
    };
  }

  showStats() {
    const s = this.stats();
    showStats(statsList, {
      uplink: formatNumber(s.uplinkKbitS, 1),
      fps: formatNumber(s.sentFps, 1),
      bytes: formatNumber(s.bytesPerFrame, 1),
      latency: s.roundTripMsP50 === null ? "–" : `${formatNumber(s.roundTripMsP50)} (p95 ${formatNumber(s.roundTripMsP95)})`,
      rtt: formatNumber(s.rttMs, 1),
      tracking: formatNumber(s.trackingMsMean, 1),
      video: formatNumber(s.videoFps, 1),
      viewers: s.viewers === null ? "–" : String(s.viewers),
      dropped: String(s.dropped),
    });
  }

  stop() {
    this.stopped = true;
    this.session?.close();
    this.tracker?.close();
    for (const track of this.camera?.getTracks() ?? []) track.stop();
    cameraVideo.srcObject = null;
    avatarVideo.srcObject = null;
  }
}

/** @type {SenderRun | null} */
let current = null;
let statsTimer = 0;

/** Fill the form from the link and the token's claims; return what a start needs. */
function prefill() {
  const link = readLink();
  const claims = tokenClaims(link.token);
  roomInput.value = link.room || claims?.room || "";
  tokenInput.value = link.token;
  $("token-label").hidden = tokenInput.hidden = $("token-help").hidden = Boolean(link.token);
  const targets = Array.isArray(claims?.targets) ? claims.targets.map(String) : null;
  fillTargets(targets, link.target);
  return link;
}

/**
 * Offer the targets the token allows (and the link's, even when it is not among them: the gateway decides).
 * @param {string[] | null} targets
 * @param {string} chosen
 */
function fillTargets(targets, chosen) {
  const names = (targets ?? []).filter((t) => t !== "*");
  if (chosen && !names.includes(chosen)) names.unshift(chosen);
  targetSelect.replaceChildren(...names.map((name) => new Option(name, name, false, name === chosen)));
  const any = !targets || targets.includes("*");
  if (any) targetSelect.append(new Option("another avatar…", "", false, false));
  const other = () => {
    targetOther.hidden = targetSelect.value !== "";
  };
  targetSelect.onchange = other;
  if (!names.length) targetSelect.value = "";
  other();
}

/** @returns {{room: string, target: string, token: string, targets: string[] | null}} */
function formValues() {
  const token = tokenInput.value.trim();
  const claims = tokenClaims(token);
  return {
    room: roomInput.value.trim(),
    target: (targetSelect.value || targetOther.value).trim(),
    token,
    targets: Array.isArray(claims?.targets) ? claims.targets.map(String) : null,
  };
}

/** @param {boolean} running */
function setRunning(running) {
  startButton.disabled = running;
  stopButton.disabled = !running;
  for (const input of [roomInput, targetSelect, targetOther, tokenInput]) input.disabled = running;
}

/** @param {boolean} ok the run is live (false: it ended; leave its message on screen) */
function finish(ok) {
  if (ok) return;
  current?.stop();
  setRunning(false);
}

async function start() {
  const params = formValues();
  const missing = ["room", "target", "token"].filter((key) => !params[/** @type {"room"} */ (key)]);
  if (missing.length) {
    status.show("needs-link", `Fill in the ${missing.join(" and ")} (or open the link you were given), then press Start.`);
    return;
  }
  current?.stop();
  const run = new SenderRun(params);
  current = run;
  setRunning(true);
  const live = await run.run();
  if (!live && current === run) finish(false);
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  start();
});
stopButton.addEventListener("click", () => {
  current?.stop();
  setRunning(false);
  status.show("stopped", "Stopped. Nothing is sent. Press Start to appear again.");
});
window.addEventListener("pagehide", () => current?.stop());

statsTimer = window.setInterval(() => current?.showStats(), 500);

// @ts-ignore: the page's state, read by tests
window.headcast = {
  get state() {
    return status.state;
  },
  get states() {
    return status.history.map((entry) => entry.state);
  },
  get run() {
    return current;
  },
  stats: () => current?.stats() ?? null,
  history: () => current?.history ?? [],
  statsTimer,
};

const link = prefill();
if (link.token && roomInput.value && formValues().target && link.target) {
  start();
} else {
  status.show("needs-link", "Choose the room and the avatar, then press Start.");
}
