// The enrolment page: camera with framing and lighting hints → countdown → a 10-25 s recording
// (MediaRecorder, WebM) → preview and explicit consent → resumable upload → the enrolment job's
// progress until the new avatar is ready to drive (signaling/enrolment.py is the other side).
//
// Link: /enrol?target=T#token=... (the token in the fragment, as on the other pages; `headcast token
// --role enrol --target T` mints one). One status region says what the page is doing; every step
// also has a visible control or progress bar, so nothing depends on seeing the video.

import { FramingCoach } from "./enrol-framing.js";
import { EnrolRefusal, EnrolmentClient, sha256Hex, Unreachable } from "./enrol-upload.js";
import { readLink, StatusView, tokenClaims } from "./ui.js";

// The enrolment's needs (configs/enrol.yaml): at least 50 frames with the face — 2 s at 25 fps — and
// the paper's 50-500 frames; 10-25 s leaves room for a few bad seconds and keeps uploads small.
export const MIN_SECONDS = 10;
export const MAX_SECONDS = 25;
export const COUNTDOWN_SECONDS = 3;
const CHECK_INTERVAL_MS = 250; // face hints four times a second: enough to steer by, light on the CPU
// The recording checks refuse a recording with a face in under half its frames.
const MIN_FACE_SHARE = 0.5;
const TARGET_ID = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const VIDEO_TYPES = ["video/webm;codecs=vp8", "video/webm;codecs=vp9", "video/webm"];

/** The page's states beyond ui.js's, with their severity (the status region's colour and urgency). */
const SEVERITY = /** @type {Record<string, "info" | "ok" | "warn" | "error">} */ ({
  camera: "info",
  framing: "warn",
  countdown: "info",
  recording: "info",
  recorded: "ok",
  uploading: "info",
  retrying: "warn",
  enrolling: "info",
  ready: "ok",
  refused: "error",
  "too-large": "error",
  "too-many-uploads": "error",
});

/** ui.js's StatusView, knowing the enrolment states' severities too. */
class EnrolStatus extends StatusView {
  /** @param {string} state @param {string} message */
  show(state, message) {
    super.show(state, message);
    const severity = SEVERITY[state];
    if (severity) {
      this.element.dataset.severity = severity;
      this.element.setAttribute("aria-live", severity === "error" ? "assertive" : "polite");
    }
  }
}

/** @param {string} id */
const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

/**
 * Return "1.2 MB" style sizes.
 * @param {number} bytes
 */
export function formatBytes(bytes) {
  return bytes >= 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : `${Math.max(1, Math.round(bytes / 1e3))} kB`;
}

/**
 * Return "about 2 min" style durations.
 * @param {number} seconds
 */
export function formatEta(seconds) {
  if (seconds < 60) return `about ${Math.max(1, Math.round(seconds))} s`;
  return `about ${Math.round(seconds / 60)} min`;
}

class EnrolPage {
  constructor() {
    this.status = new EnrolStatus($("status"));
    this.camera = /** @type {HTMLVideoElement} */ ($("camera"));
    this.preview = /** @type {HTMLVideoElement} */ ($("preview"));
    this.target = /** @type {HTMLInputElement} */ ($("target"));
    this.subject = /** @type {HTMLInputElement} */ ($("subject"));
    this.token = /** @type {HTMLInputElement} */ ($("token"));
    this.consent = /** @type {HTMLInputElement} */ ($("consent"));
    this.recordButton = /** @type {HTMLButtonElement} */ ($("record"));
    this.stopButton = /** @type {HTMLButtonElement} */ ($("stop"));
    this.againButton = /** @type {HTMLButtonElement} */ ($("again"));
    this.enrolButton = /** @type {HTMLButtonElement} */ ($("enrol"));
    this.recordProgress = /** @type {HTMLProgressElement} */ ($("record-progress"));
    this.uploadProgress = /** @type {HTMLProgressElement} */ ($("upload-progress"));
    this.jobProgress = /** @type {HTMLProgressElement} */ ($("job-progress"));
    this.coach = new FramingCoach(this.camera);
    /** @type {MediaStream | null} */
    this.stream = null;
    /** @type {MediaRecorder | null} */
    this.recorder = null;
    /** @type {{blob: Blob, seconds: number, sha256: string, faceShare: number | null} | null} */
    this.recording = null;
    /** The upload of the current recording, kept so that pressing Enrol again resumes it. */
    this.uploadId = /** @type {string | null} */ (null);
    this.busy = false; // counting down, recording, uploading or enrolling: the inputs that matter are locked
    this.faceChecks = { seen: 0, total: 0 }; // during the recording: what share of it shows the face
    this.lastHints = "";
  }

  async start() {
    const link = readLink();
    const claims = link.token ? tokenClaims(link.token) : null;
    this.token.value = link.token;
    this.target.value = link.target;
    this.subject.value = claims?.sub ?? "";
    for (const input of [this.target, this.subject, this.token, this.consent]) {
      input.addEventListener("input", () => this.updateButtons());
    }
    // An upload is made for one avatar id: another id needs a new one.
    this.target.addEventListener("input", () => {
      this.uploadId = null;
    });
    this.recordButton.addEventListener("click", () => void this.record());
    this.stopButton.addEventListener("click", () => this.recorder?.stop());
    this.againButton.addEventListener("click", () => this.discardRecording());
    this.enrolButton.addEventListener("click", () => void this.enrol());
    if (claims && claims.role !== "enrol") {
      this.status.show("forbidden", `This link's token is for the ${claims.role} role: ask for an enrol token.`);
    }
    if (!navigator.mediaDevices?.getUserMedia || typeof MediaRecorder === "undefined") {
      this.status.show(
        "no-camera",
        "This browser cannot record video here (it needs HTTPS or localhost, and MediaRecorder).",
      );
      return;
    }
    this.status.show("starting", "Asking for the camera…");
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({
        video: { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 25 } },
        audio: false,
      });
    } catch (error) {
      if (error instanceof DOMException && error.name === "NotAllowedError") {
        this.status.show("camera-denied", "The camera was not allowed: allow it for this site, then reload the page.");
      } else {
        this.status.show("no-camera", `No camera could be opened (${error instanceof Error ? error.message : error}).`);
      }
      return;
    }
    this.camera.srcObject = this.stream;
    await this.camera.play().catch(() => {}); // muted video: autoplay is allowed; play() only hurries it
    this.status.show("camera", "Camera on. Loading face tracking for the framing hints…");
    const tracked = await this.coach.loadTracker();
    const next = tracked ? "follow the hints below" : `${this.coach.trackerProblem}; check the lighting`;
    this.status.show("camera", `Camera on: ${next}, then press Record.`);
    this.updateButtons();
    this.watch();
  }

  /** Check the framing and lighting a few times a second for as long as the page lives. */
  watch() {
    const tick = () => {
      // Once there is a recording the hints have done their work: spare the CPU for the upload and the job.
      if (this.recording) return;
      const check = this.coach.check(performance.now());
      const face = $("hint-face");
      const light = $("hint-light");
      face.dataset.hint = check.face;
      light.dataset.hint = check.light;
      if (this.recorder?.state === "recording") {
        this.faceChecks.total += 1;
        if (check.face === "found" || check.face === "off-centre" || check.face === "large" || check.face === "small") {
          this.faceChecks.seen += 1;
        }
      }
      // Rewritten only when the words change, so screen readers announce changes, not every check.
      const hints = `${check.faceHint}|${check.lightHint}`;
      if (hints !== this.lastHints) {
        this.lastHints = hints;
        face.textContent = check.faceHint;
        light.textContent = check.lightHint;
      }
      $("camera-figure").dataset.framing = check.good ? "good" : "adjust";
    };
    setInterval(tick, CHECK_INTERVAL_MS);
  }

  updateButtons() {
    // What still keeps Enrol disabled, said next to it: a disabled button alone does not tell why.
    const missing = [
      TARGET_ID.test(this.target.value) ? "" : "a valid avatar id",
      this.subject.value.trim() ? "" : "the recorded person's name",
      this.token.value.trim() ? "" : "an enrol token",
      this.consent.checked ? "" : "the consent",
    ].filter(Boolean);
    this.recordButton.disabled = this.busy || !this.stream || this.recording !== null;
    this.enrolButton.disabled = this.busy || !this.recording || missing.length > 0;
    $("enrol-help").textContent = missing.length ? `To enrol, give ${missing.join(", ")}.` : "";
    this.againButton.disabled = this.busy;
    for (const input of [this.target, this.subject, this.token]) input.disabled = this.busy;
    this.consent.disabled = this.busy;
  }

  async record() {
    if (!this.stream || this.busy) return;
    this.busy = true;
    this.updateButtons();
    const countdown = $("countdown");
    countdown.hidden = false;
    for (let left = COUNTDOWN_SECONDS; left > 0; left -= 1) {
      countdown.textContent = String(left);
      this.status.show("countdown", `Recording starts in ${left}…`);
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    countdown.hidden = true;
    const type = VIDEO_TYPES.find((t) => MediaRecorder.isTypeSupported(t)) ?? "";
    const recorder = new MediaRecorder(this.stream, { mimeType: type, videoBitsPerSecond: 2_500_000 });
    this.recorder = recorder;
    /** @type {Blob[]} */
    const parts = [];
    recorder.addEventListener("dataavailable", (event) => {
      if (event.data.size) parts.push(event.data);
    });
    this.faceChecks = { seen: 0, total: 0 };
    const began = performance.now();
    const stopped = new Promise((resolve) => recorder.addEventListener("stop", resolve, { once: true }));
    recorder.start(1000); // a part every second: a long recording is not one huge buffer at the end
    const label = $("record-label");
    const timer = setInterval(() => {
      const seconds = (performance.now() - began) / 1000;
      this.recordProgress.value = Math.min(seconds, MAX_SECONDS);
      label.textContent = `Recorded: ${Math.floor(seconds)} s (at least ${MIN_SECONDS} s, at most ${MAX_SECONDS} s)`;
      this.stopButton.disabled = seconds < MIN_SECONDS;
      if (seconds >= MAX_SECONDS && recorder.state === "recording") recorder.stop();
      // Said every 5 s rather than every second, so a screen reader is not flooded.
      if (Math.floor(seconds) % 5 === 0) {
        const more = seconds < MIN_SECONDS ? `keep going until ${MIN_SECONDS} s` : "press Stop when you are done";
        this.status.show("recording", `Recording: ${Math.floor(seconds)} s — ${more}.`);
      }
    }, 250);
    this.status.show("recording", `Recording: talk and turn your head a little; keep going until ${MIN_SECONDS} s.`);
    await stopped;
    clearInterval(timer);
    this.stopButton.disabled = true;
    const seconds = (performance.now() - began) / 1000;
    const blob = new Blob(parts, { type: type || "video/webm" });
    const faceShare = this.coach.tracker && this.faceChecks.total ? this.faceChecks.seen / this.faceChecks.total : null;
    this.status.show("recorded", "Checking the recording…");
    this.recording = { blob, seconds, sha256: await sha256Hex(blob), faceShare };
    this.uploadId = null;
    this.showPreview();
    this.busy = false;
    this.updateButtons();
  }

  showPreview() {
    const recording = /** @type {NonNullable<EnrolPage["recording"]>} */ (this.recording);
    if (this.preview.src) URL.revokeObjectURL(this.preview.src);
    this.preview.src = URL.createObjectURL(recording.blob);
    const info = $("recording-info");
    info.textContent = `${recording.seconds.toFixed(1)} s, ${formatBytes(recording.blob.size)}`;
    info.dataset.sha256 = recording.sha256;
    info.dataset.bytes = String(recording.blob.size);
    const warning = $("recording-warning");
    const share = recording.faceShare;
    warning.hidden = share === null || share >= MIN_FACE_SHARE;
    if (share !== null) {
      warning.textContent = ` Your face was visible in only ${Math.round(share * 100)} % of it: the enrolment will likely refuse it. Record again?`;
    }
    $("preview-figure").hidden = false;
    this.status.show("recorded", "Recorded. Watch the preview; if it is good, confirm the consent and press Enrol.");
  }

  discardRecording() {
    if (this.busy) return;
    if (this.preview.src) URL.revokeObjectURL(this.preview.src);
    this.preview.removeAttribute("src");
    this.recording = null;
    this.uploadId = null;
    this.consent.checked = false;
    $("preview-figure").hidden = true;
    this.recordProgress.value = 0;
    this.status.show("camera", "Ready to record again.");
    this.updateButtons();
  }

  async enrol() {
    const recording = this.recording;
    if (!recording || this.busy || !this.consent.checked) return;
    this.busy = true;
    this.updateButtons();
    $("progress-section").hidden = false;
    $("result").hidden = true;
    const name = this.target.value;
    const client = new EnrolmentClient(this.token.value.trim());
    client.onRetry = (error, delayMs, attempt) => {
      this.status.show(
        "retrying",
        `${error.message} — trying again in ${Math.ceil(delayMs / 1000)} s (attempt ${attempt}).`,
      );
    };
    const uploadLabel = $("upload-label");
    try {
      this.status.show("uploading", `Uploading the recording (${formatBytes(recording.blob.size)})…`);
      const uploadId = await client.upload(recording.blob, name, recording.sha256, {
        resume: this.uploadId,
        onCreated: (id) => {
          this.uploadId = id;
        },
        onProgress: (sent, size) => {
          this.uploadProgress.value = size ? sent / size : 0;
          uploadLabel.textContent = `Upload: ${formatBytes(sent)} of ${formatBytes(size)}`;
          if (this.status.state === "retrying") this.status.show("uploading", "Connection back: uploading again…");
        },
      });
      uploadLabel.textContent = `Upload: done, ${formatBytes(recording.blob.size)}`;
      this.status.show("enrolling", "Uploaded. Starting the enrolment job…");
      const job = await client.enrol(uploadId, this.subject.value.trim());
      $("progress-section").dataset.job = job;
      const final = await client.follow(job, (progress) => this.showProgress(progress));
      if (final.state === "succeeded") this.showReady(final.target);
      else this.showFailure(final.message);
    } catch (error) {
      this.showError(error);
    } finally {
      this.busy = false;
      this.updateButtons();
    }
  }

  /** @param {import("./enrol-upload.js").EnrolmentProgress} progress */
  showProgress(progress) {
    const label = $("job-label");
    const eta = $("job-eta");
    const section = $("progress-section");
    section.dataset.state = progress.state;
    section.dataset.stage = progress.stage;
    if (progress.total > 0) {
      this.jobProgress.max = progress.total;
      this.jobProgress.value = progress.step;
    } else {
      this.jobProgress.removeAttribute("value"); // indeterminate: the stage's amount of work is not known yet
    }
    const steps = progress.total > 1 ? ` ${progress.step} of ${progress.total}` : "";
    const stage = progress.state === "queued" ? "waiting for a worker" : progress.stage || progress.state;
    label.textContent = `Job: ${stage}${steps}`;
    eta.textContent = progress.eta_s !== null ? `${formatEta(progress.eta_s)} left in this stage` : "";
    if (progress.state === "queued" || progress.state === "running") {
      const left = progress.eta_s !== null ? `, ${formatEta(progress.eta_s)} left` : "";
      this.status.show("enrolling", `Enrolling “${progress.target}”: ${stage}${steps}${left}.`);
    }
  }

  /** @param {string} target */
  showReady(target) {
    this.jobProgress.max = 1;
    this.jobProgress.value = 1;
    $("job-label").textContent = "Job: done";
    $("job-eta").textContent = "";
    const result = $("result");
    const link = document.createElement("a");
    link.href = `/send?target=${encodeURIComponent(target)}`;
    link.textContent = `Drive “${target}” from the sender page`;
    result.replaceChildren(`The avatar “${target}” is enrolled. `, link);
    result.hidden = false;
    this.recording = null; // enrolled: a new recording starts a new enrolment
    this.uploadId = null;
    $("preview-figure").hidden = true;
    this.status.show("ready", `Ready: target ${target} can now be driven.`);
  }

  /** @param {string} reason */
  showFailure(reason) {
    $("job-label").textContent = "Job: refused";
    this.status.show("refused", `The enrolment did not succeed: ${reason}. Record again, following the hints.`);
  }

  /** @param {unknown} error */
  showError(error) {
    if (error instanceof EnrolRefusal) {
      // The state names ui.js and this page style: the code with dashes ("too_large" → "too-large").
      const state = error.code.replace(/_/g, "-");
      const known = state in SEVERITY || ["unauthorized", "forbidden", "unavailable", "bad-request"].includes(state);
      this.status.show(known ? state : "error", `The gateway refused (${error.code}): ${error.message}`);
    } else if (error instanceof Unreachable) {
      this.status.show("failed", `${error.message}. Check the connection and press Enrol again: the upload resumes.`);
    } else {
      this.status.show("error", `Something went wrong: ${error instanceof Error ? error.message : error}`);
    }
  }
}

void new EnrolPage().start();
