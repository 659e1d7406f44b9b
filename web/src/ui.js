// What the pages share: reading the link (room, target, token), the status region and its states, numbers.
//
// Links: /send?room=R&target=T#token=... and /view?room=R#token=... The token travels in the fragment,
// which browsers never send to a server; a `?token=` (the protocol's viewer links) is accepted too and
// removed from the address bar at once.

/**
 * The link's parameters; missing ones are empty strings.
 * @typedef {{room: string, target: string, token: string}} LinkParams
 */

/**
 * Return the room, target and token of the page's link, and take a query-string token out of the address bar.
 * @param {Location} location
 * @returns {LinkParams}
 */
export function readLink(location = window.location) {
  const query = new URLSearchParams(location.search);
  const fragment = new URLSearchParams(location.hash.replace(/^#/, ""));
  const token = fragment.get("token") || query.get("token") || "";
  if (query.has("token")) {
    query.delete("token");
    const rest = query.toString();
    history.replaceState(null, "", `${location.pathname}${rest ? `?${rest}` : ""}#token=${encodeURIComponent(token)}`);
  }
  return { room: query.get("room") || "", target: query.get("target") || "", token };
}

/**
 * Return the claims of a headcast token (a JWT) read without verifying it — the gateway verifies; the
 * page only uses them to prefill the room and the targets. Null when it is not a readable JWT.
 * @param {string} token
 * @returns {{room?: string, role?: string, targets?: string[], exp?: number, sub?: string} | null}
 */
export function tokenClaims(token) {
  const parts = token.trim().split(".");
  if (parts.length !== 3) return null;
  try {
    const base64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
    const claims = JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(padded), (c) => c.charCodeAt(0))));
    return claims && typeof claims === "object" ? claims : null;
  } catch {
    return null;
  }
}

/**
 * The states a page shows, with their severity: "info" (working), "ok" (live), "warn", "error".
 * @type {Record<string, "info" | "ok" | "warn" | "error">}
 */
export const STATES = {
  "needs-link": "warn",
  starting: "info",
  "camera-denied": "error",
  "no-camera": "error",
  loading: "info",
  connecting: "info",
  live: "ok",
  "no-face": "warn",
  lost: "warn",
  reconnecting: "warn",
  reconnected: "ok",
  failed: "error",
  ended: "warn",
  unauthorized: "error",
  forbidden: "error",
  "target-not-allowed": "error",
  "unknown-room": "error",
  "unknown-target": "error",
  "target-revoked": "error",
  "room-busy": "error",
  "too-many-sessions": "error",
  "room-full": "error",
  unavailable: "error",
  "bad-request": "error",
  error: "error",
  stopped: "info",
};

/**
 * The status region (role="status", aria-live) and its state: one place says what the page is doing,
 * in words, and `data-state` names the state for styles and tests.
 */
export class StatusView {
  /** @param {HTMLElement} element the region (it gets role, aria-live and data-state) */
  constructor(element) {
    this.element = element;
    this.state = "";
    /** @type {{state: string, message: string, at: number}[]} every state shown, oldest first (tests read it) */
    this.history = [];
    element.setAttribute("role", "status");
    element.setAttribute("aria-live", "polite");
    element.setAttribute("aria-atomic", "true");
  }

  /**
   * Show `state` with `message`; errors are announced assertively.
   * @param {keyof typeof STATES | string} state
   * @param {string} message
   */
  show(state, message) {
    const severity = STATES[state] ?? "info";
    this.state = state;
    this.element.dataset.state = state;
    this.element.dataset.severity = severity;
    this.element.setAttribute("aria-live", severity === "error" ? "assertive" : "polite");
    this.element.textContent = message;
    this.history.push({ state, message, at: performance.now() });
    if (this.history.length > 200) this.history.shift();
  }
}

/**
 * Return the state and the words for a refusal by the gateway (docs/live-protocol.md's table).
 * @param {{status: number, code: string, message: string}} refusal
 * @param {{room: string, target?: string, targets?: string[] | null}} context
 * @returns {[string, string]}
 */
export function describeRefusal(refusal, { room, target, targets }) {
  const why = refusal.message;
  switch (refusal.code) {
    case "unauthorized":
      return ["unauthorized", `The link's token was refused (${why}). Ask the room's owner for a new link.`];
    case "forbidden":
      if (target && targets && !targets.includes("*") && !targets.includes(target)) {
        return [
          "target-not-allowed",
          `Your token does not allow driving “${target}” (${why}). You may drive: ${targets.join(", ") || "no target"}.`,
        ];
      }
      if (target && /target/.test(why)) {
        return ["target-not-allowed", `Your token does not allow driving “${target}” (${why}).`];
      }
      return ["forbidden", `This link does not open room “${room}” for you (${why}).`];
    case "unknown_room":
      return ["unknown-room", `Room “${room}” does not exist: nobody is sending to it yet. (${why})`];
    case "unknown_target":
      return ["unknown-target", `No avatar “${target}” is enrolled on this server. (${why})`];
    case "target_revoked":
      return ["target-revoked", `The avatar “${target}” was withdrawn and can no longer be driven. (${why})`];
    case "room_busy":
      return ["room-busy", `Someone is already sending to room “${room}”. (${why})`];
    case "too_many_sessions":
      return ["too-many-sessions", `This link is already in use in another tab or device. (${why})`];
    case "room_full":
      return ["room-full", `Room “${room}” has all the viewers it allows. (${why})`];
    case "unavailable":
      return ["unavailable", `The avatar renderer is unavailable right now; try again in a minute. (${why})`];
    case "bad_request":
    case "too_large":
      return ["bad-request", `The gateway could not use this browser's request (${why}).`];
    default:
      return ["error", `The gateway refused (HTTP ${refusal.status}: ${why}).`];
  }
}

/**
 * Return `value` with `digits` decimals, or "–" when there is none.
 * @param {number | null | undefined} value
 * @param {number} digits
 */
export function formatNumber(value, digits = 0) {
  return value === null || value === undefined || !Number.isFinite(value) ? "–" : value.toFixed(digits);
}

/**
 * Fill the <dd> elements that carry `data-stat="name"` inside `root` with the values of `stats`.
 * @param {HTMLElement} root
 * @param {Record<string, string>} values
 */
export function showStats(root, values) {
  for (const [name, text] of Object.entries(values)) {
    const cell = root.querySelector(`[data-stat="${name}"]`);
    if (cell && cell.textContent !== text) cell.textContent = text;
  }
}

/**
 * Count the frames a <video> presents (requestVideoFrameCallback), calling `onFrame` for each.
 * @param {HTMLVideoElement} video
 * @param {(now: number, metadata: VideoFrameCallbackMetadata) => void} onFrame
 */
export function watchFrames(video, onFrame) {
  /** @param {number} now @param {VideoFrameCallbackMetadata} metadata */
  const step = (now, metadata) => {
    onFrame(now, metadata);
    video.requestVideoFrameCallback(step);
  };
  video.requestVideoFrameCallback(step);
}
