// The viewer page: join a room by link + token and watch its avatar (a receive-only WebRTC video).
//
// States said in the status region (ui.js): a refusal (wrong token 401, wrong room 403, a room with no
// sender 404, a full room 429), live, connection lost → reconnecting → reconnected, and the room's end.
// `window.headcast` exposes the page's state for tests.

import { GatewayRefusal, LiveSession, RateMeter } from "./session.js";
import { StatusView, describeRefusal, formatNumber, readLink, showStats, tokenClaims, watchFrames } from "./ui.js";

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const status = new StatusView($("status"));
const form = /** @type {HTMLFormElement} */ ($("setup"));
const roomInput = /** @type {HTMLInputElement} */ ($("room"));
const tokenInput = /** @type {HTMLInputElement} */ ($("token"));
const joinButton = /** @type {HTMLButtonElement} */ ($("join"));
const leaveButton = /** @type {HTMLButtonElement} */ ($("leave"));
const video = /** @type {HTMLVideoElement} */ ($("avatar"));
const statsList = $("stats");

/** @type {LiveSession | null} */
let session = null;
const frames = new RateMeter();
let framesReceived = 0;
let downlinkKbitS = /** @type {number | null} */ (null);
let lastBytes = /** @type {[number, number] | null} */ (null);

watchFrames(video, (now) => {
  framesReceived += 1;
  frames.add(now);
  session?.heard();
});

/** @param {boolean} joined */
function setJoined(joined) {
  joinButton.disabled = joined;
  leaveButton.disabled = !joined;
  roomInput.disabled = tokenInput.disabled = joined;
}

async function join() {
  const room = roomInput.value.trim();
  const token = tokenInput.value.trim();
  if (!room || !token) {
    status.show("needs-link", "Fill in the room and the token (or open the link you were given), then press Join.");
    return;
  }
  session?.close();
  setJoined(true);
  status.show("connecting", `Joining room “${room}”…`);
  const live = new LiveSession({ role: "view", room, token }, {
    onState: (state, detail) => {
      if (live !== session) return;
      if (state === "lost") status.show("lost", `Connection lost (${detail.reason}). Reconnecting…`);
      if (state === "reconnecting") {
        status.show("reconnecting", `Connection lost (${detail.reason}). Reconnecting, attempt ${detail.attempt} of ${detail.of}…`);
      }
      if (state === "reconnected") {
        status.show("reconnected", `Reconnected after ${(detail.afterMs / 1000).toFixed(1)} s: watching room “${room}”.`);
      }
      if (state === "ended") {
        status.show(detail.code === "target_revoked" ? "target-revoked" : "ended", `Room “${room}” has ended: ${detail.message}`);
        setJoined(false);
      }
      if (state === "failed") {
        const ended = detail.error instanceof GatewayRefusal && detail.error.code === "unknown_room";
        status.show(
          ended ? "ended" : "failed",
          ended
            ? `Room “${room}” has ended: its sender left. Press Join to try again.`
            : `Connection lost and could not be restored (${detail.error?.message ?? detail.reason}). Press Join to try again.`,
        );
        setJoined(false);
      }
    },
    onTrack: (stream) => {
      video.srcObject = stream;
      video.play().catch(() => {});
    },
  });
  session = live;
  try {
    await live.start();
  } catch (error) {
    if (live !== session) return;
    if (error instanceof GatewayRefusal) {
      const [state, message] = describeRefusal(error, { room });
      status.show(state, message);
    } else {
      status.show("failed", `Could not join: ${error instanceof Error ? error.message : error}`);
    }
    live.close();
    setJoined(false);
    return;
  }
  status.show("live", `Watching room “${room}”.`);
}

async function sampleDownlink() {
  const pc = session?.pc;
  if (!pc) return;
  const report = await pc.getStats();
  report.forEach((entry) => {
    if (entry.type !== "inbound-rtp" || entry.kind !== "video") return;
    const now = performance.now();
    if (lastBytes) downlinkKbitS = ((entry.bytesReceived - lastBytes[1]) * 8) / (now - lastBytes[0]);
    lastBytes = [now, entry.bytesReceived];
  });
}

/** Return the numbers the page shows. */
function stats() {
  return {
    connected: session?.connected ?? false,
    framesReceived,
    videoFps: frames.rate(performance.now()),
    downlinkKbitS,
    width: video.videoWidth,
    height: video.videoHeight,
  };
}

window.setInterval(() => {
  sampleDownlink().catch(() => {});
  const s = stats();
  showStats(statsList, {
    video: formatNumber(s.videoFps, 1),
    downlink: formatNumber(s.downlinkKbitS, 0),
    size: s.width ? `${s.width}×${s.height}` : "–",
    frames: String(s.framesReceived),
  });
}, 500);

form.addEventListener("submit", (event) => {
  event.preventDefault();
  join();
});
leaveButton.addEventListener("click", () => {
  session?.close();
  session = null;
  video.srcObject = null;
  setJoined(false);
  status.show("stopped", "You left the room. Press Join to watch again.");
});
window.addEventListener("pagehide", () => session?.close());

// @ts-ignore: the page's state, read by tests
window.headcast = {
  get state() {
    return status.state;
  },
  get states() {
    return status.history.map((entry) => entry.state);
  },
  stats,
};

const link = readLink();
const claims = tokenClaims(link.token);
roomInput.value = link.room || claims?.room || "";
tokenInput.value = link.token;
$("token-label").hidden = tokenInput.hidden = $("token-help").hidden = Boolean(link.token);
if (link.token && roomInput.value) {
  join();
} else {
  status.show("needs-link", "Fill in the room and the token, then press Join.");
}
