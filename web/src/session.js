// A page's WebRTC session with the gateway (docs/live-protocol.md), mirroring edge/client.py:
// one RTCPeerConnection offered by POST /api/rooms/{room}/send or /view with the token as a Bearer
// header; a sender adds the data channel "coeffs" (unordered, no retransmits), pings once a second,
// counts its uplink and round trips, and re-offers with backoff after a drop (a key frame first);
// a viewer re-offers too, so it survives the sender's own reconnection.

/** A refusal by the gateway: its HTTP status, short code and message (the protocol's error table). */
export class GatewayRefusal extends Error {
  /** @param {number} status @param {string} code @param {string} message */
  constructor(status, code, message) {
    super(message);
    this.name = "GatewayRefusal";
    this.status = status;
    this.code = code;
  }
}

/** The gateway could not be reached, or the WebRTC connection did not come up. */
export class ConnectionFailure extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "ConnectionFailure";
  }
}

/**
 * The live client's settings (edge/config.py ClientConfig's defaults).
 * @typedef {{
 *   pingIntervalMs: number, silenceTimeoutMs: number, connectTimeoutMs: number,
 *   reconnectAttempts: number, reconnectFirstDelayMs: number, reconnectMaxDelayMs: number,
 *   busyRetries: number, maxBufferedBytes: number, latencyWindow: number,
 * }} ClientConfig
 */

/** @type {ClientConfig} */
export const CLIENT_CONFIG = Object.freeze({
  pingIntervalMs: 1000,
  silenceTimeoutMs: 5000,
  connectTimeoutMs: 10000,
  reconnectAttempts: 18, // ~60 s of backoff: a restarted `headcast serve` answers again after 19-24 s
  reconnectFirstDelayMs: 250,
  reconnectMaxDelayMs: 4000,
  busyRetries: 13,
  maxBufferedBytes: 8192,
  latencyWindow: 250,
});

// Right after a drop these mean the gateway still holds our old session: worth waiting for.
const OUR_OLD_SESSION = new Set(["room_busy", "too_many_sessions"]);

/** Amounts per second over a sliding window (edge/stats.py RateMeter). */
export class RateMeter {
  /** @param {number} windowMs */
  constructor(windowMs = 2000) {
    this.windowMs = windowMs;
    /** @type {[number, number][]} */
    this.events = [];
    this.inWindow = 0;
    /** @type {number | null} */
    this.start = null;
  }

  /** @param {number} now ms @param {number} amount */
  add(now, amount = 1) {
    if (this.start === null) this.start = now;
    this.events.push([now, amount]);
    this.inWindow += amount;
    this.expire(now);
  }

  /** @param {number} now */
  expire(now) {
    while (this.events.length && this.events[0][0] <= now - this.windowMs) {
      this.inWindow -= /** @type {[number, number]} */ (this.events.shift())[1];
    }
  }

  /**
   * Return the amount per second over the last window (0 before the first event).
   * @param {number} now ms
   */
  rate(now) {
    if (this.start === null) return 0;
    this.expire(now);
    const span = Math.min(this.windowMs, now - this.start);
    return span > 0 ? (this.inWindow * 1000) / span : 0;
  }
}

/**
 * Return the q-th percentile (0–100, linear interpolation) of `values`, null when there are none.
 * @param {number[]} values
 * @param {number} q
 */
export function percentile(values, q) {
  if (!values.length) return null;
  const sorted = values.slice().sort((a, b) => a - b);
  const position = ((sorted.length - 1) * q) / 100;
  const low = Math.floor(position);
  const high = Math.min(low + 1, sorted.length - 1);
  return sorted[low] + (sorted[high] - sorted[low]) * (position - low);
}

/**
 * Return the gateway's JSON answer to an offer; throws GatewayRefusal or ConnectionFailure.
 * @param {string} url
 * @param {string} token
 * @param {object} body
 * @param {number} timeoutMs
 */
async function postOffer(url, token, body, timeoutMs) {
  let response;
  try {
    response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
      cache: "no-store",
    });
  } catch (error) {
    throw new ConnectionFailure(`cannot reach the gateway (${error instanceof Error ? error.message : error})`);
  }
  const answer = await response.json().catch(() => null);
  if (!response.ok) {
    const message = answer && typeof answer.error === "string" ? answer.error : `HTTP ${response.status}`;
    const code = answer && typeof answer.code === "string" ? answer.code : "";
    throw new GatewayRefusal(response.status, code, message);
  }
  if (!answer || answer.type !== "answer" || typeof answer.sdp !== "string") {
    throw new ConnectionFailure("the gateway answered without an SDP answer: is this a headcast gateway?");
  }
  return answer;
}

/**
 * Resolve once ICE gathering is complete (the gateway takes one complete offer, no trickle), or after `ms`.
 * @param {RTCPeerConnection} pc
 * @param {number} ms
 */
function gatheringComplete(pc, ms) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== "complete") return;
      pc.removeEventListener("icegatheringstatechange", done);
      resolve(undefined);
    };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, ms);
  });
}

/** @param {number} ms */
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * What a session tells its page.
 * @typedef {{
 *   onState?: (state: "connecting" | "connected" | "lost" | "reconnecting" | "reconnected" | "failed" | "ended" | "closed", detail: object) => void,
 *   onTrack?: (stream: MediaStream) => void,
 *   onMessage?: (message: any) => void,
 * }} SessionEvents
 */

/**
 * One live session with the gateway: `send` (with the "coeffs" channel) or `view`; reconnects after drops.
 */
export class LiveSession {
  /**
   * @param {{role: "send" | "view", room: string, token: string, target?: string, fps?: number,
   *          config?: Partial<ClientConfig>}} options
   * @param {SessionEvents} events
   */
  constructor({ role, room, token, target, fps, config = {} }, events = {}) {
    this.role = role;
    this.room = room;
    this.token = token;
    this.target = target;
    this.fps = fps;
    this.config = { ...CLIENT_CONFIG, ...config };
    this.events = events;
    /** @type {RTCPeerConnection | null} */
    this.pc = null;
    /** @type {RTCDataChannel | null} */
    this.channel = null;
    this.sessionId = "";
    this.connected = false;
    this.stopped = false;
    this.lastHeard = 0;
    this.connections = 0;
    // Statistics (edge/stats.py SenderMetrics): uplink, round trips, the gateway's counts.
    this.framesSent = 0;
    this.bytesSent = 0;
    this.keyFrames = 0;
    this.droppedOffline = 0;
    this.droppedCongested = 0;
    this.uplink = new RateMeter();
    this.sentFrames = new RateMeter();
    /** @type {Map<number, number>} */
    this.sentAt = new Map();
    /** @type {number[]} */
    this.roundTrips = [];
    /** @type {number | null} */
    this.rttMs = null;
    /** @type {Record<string, any> | null} */
    this.gatewayStats = null;
    /** @type {string | null} */
    this.lastError = null;
    this.lastRendered = { seq: -1, replica: "", renderMs: 0, queueMs: 0 };
    this.timer = 0;
    /** @type {Promise<void> | null} */
    this.reconnecting = null;
  }

  /** Return the offer URL of this session's role. */
  get url() {
    return `/api/rooms/${encodeURIComponent(this.room)}/${this.role}`;
  }

  /**
   * Open the session; throws GatewayRefusal (shown as is: nothing to retry) or ConnectionFailure.
   * @returns {Promise<void>}
   */
  async start() {
    this.emit("connecting", { attempt: 0 });
    await this.connect();
    this.emit("connected", { session: this.sessionId });
    this.timer = window.setInterval(() => this.tick(), this.config.pingIntervalMs);
  }

  /** @param {Parameters<NonNullable<SessionEvents["onState"]>>[0]} state @param {object} detail */
  emit(state, detail = {}) {
    this.events.onState?.(state, detail);
  }

  /** Make one peer connection and wait until it carries media (a sender: until "coeffs" is open). */
  async connect() {
    const pc = new RTCPeerConnection({ iceServers: [] });
    this.pc = pc;
    let channelOpen = Promise.resolve();
    if (this.role === "send") {
      const channel = pc.createDataChannel("coeffs", { ordered: false, maxRetransmits: 0 });
      channel.binaryType = "arraybuffer";
      this.channel = channel;
      channelOpen = new Promise((resolve, reject) => {
        channel.addEventListener("open", () => resolve(undefined));
        channel.addEventListener("close", () => reject(new ConnectionFailure("the data channel closed")));
      });
      channel.addEventListener("message", (event) => this.receive(event.data));
      channel.addEventListener("close", () => this.lost(pc, "the data channel closed"));
    } else {
      // The gateway's notices to a viewer: why the room ended for good (docs/live-protocol.md).
      const events = pc.createDataChannel("events");
      events.addEventListener("message", (event) => this.receive(event.data));
    }
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addEventListener("track", (event) => {
      this.events.onTrack?.(event.streams[0] ?? new MediaStream([event.track]));
    });
    const connectedState = new Promise((resolve, reject) => {
      pc.addEventListener("connectionstatechange", () => {
        if (pc.connectionState === "connected") resolve(undefined);
        if (pc.connectionState === "failed" || pc.connectionState === "closed") {
          reject(new ConnectionFailure(`the peer connection ${pc.connectionState}`));
          this.lost(pc, `the peer connection ${pc.connectionState}`);
        }
      });
    });
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await gatheringComplete(pc, 2000);
      const body = { sdp: pc.localDescription?.sdp, type: "offer" };
      if (this.role === "send") Object.assign(body, { target: this.target, fps: this.fps });
      const answer = await postOffer(this.url, this.token, body, this.config.connectTimeoutMs);
      this.sessionId = String(answer.session || "");
      await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
      let timeout = 0;
      const late = new Promise((_, reject) => {
        timeout = window.setTimeout(() => {
          reject(
            new ConnectionFailure(
              "the gateway accepted the offer but no WebRTC connection followed: a firewall may block UDP",
            ),
          );
        }, this.config.connectTimeoutMs);
      });
      await Promise.race([Promise.all([connectedState, channelOpen]), late]).finally(() => clearTimeout(timeout));
    } catch (error) {
      connectedState.catch(() => {});
      channelOpen.catch(() => {});
      this.pc = null;
      this.channel = null;
      pc.close();
      throw error;
    }
    this.connected = true;
    this.connections += 1;
    this.lastHeard = performance.now();
    this.sentAt.clear(); // a new session cannot answer for the old one's packets
    if (this.gatewayStats) this.gatewayStats = null;
  }

  /**
   * Return whether a coefficient frame can be sent now; a frame that cannot is counted as dropped.
   * Ask before encoding: a frame never sent must never be encoded, or the next delta would reference a
   * frame the gateway does not hold (edge/client.py CoefficientUplink does the same).
   */
  admit() {
    const channel = this.channel;
    if (!this.connected || !channel || channel.readyState !== "open") {
      this.droppedOffline += 1;
      return false;
    }
    if (channel.bufferedAmount > this.config.maxBufferedBytes) {
      this.droppedCongested += 1; // the gateway only wants the newest frame: never queue behind a slow link
      return false;
    }
    return true;
  }

  /**
   * Send one coefficient packet admitted by `admit()`.
   * @param {Uint8Array} packet
   * @param {number} seq
   * @param {boolean} key
   */
  send(packet, seq, key) {
    /** @type {RTCDataChannel} */ (this.channel).send(packet);
    const now = performance.now();
    this.framesSent += 1;
    this.bytesSent += packet.length;
    this.keyFrames += key ? 1 : 0;
    this.uplink.add(now, packet.length);
    this.sentFrames.add(now);
    this.sentAt.set(seq, now);
    if (this.sentAt.size > 512) this.sentAt.delete(/** @type {number} */ (this.sentAt.keys().next().value));
  }

  /** @param {string | ArrayBuffer} data */
  receive(data) {
    this.lastHeard = performance.now();
    if (typeof data !== "string") return;
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return; // a newer gateway may send more: what cannot be read is skipped
    }
    if (!message || typeof message !== "object") return;
    const now = performance.now();
    if (message.type === "rendered" && Number.isInteger(message.seq)) {
      const sent = this.sentAt.get(message.seq);
      if (sent !== undefined) {
        this.sentAt.delete(message.seq);
        this.roundTrips.push(now - sent);
        if (this.roundTrips.length > this.config.latencyWindow) this.roundTrips.shift();
      }
      this.lastRendered = {
        seq: message.seq,
        replica: String(message.replica ?? ""),
        renderMs: Number(message.ms?.render ?? 0),
        queueMs: Number(message.ms?.queue ?? 0),
      };
    } else if (message.type === "pong" && typeof message.t === "number") {
      this.rttMs = now - message.t;
    } else if (message.type === "stats") {
      this.gatewayStats = message;
    } else if (message.type === "error") {
      this.lastError = `${message.code}: ${message.message}`;
    } else if (message.type === "ended") {
      // For good (the target was revoked): no reconnection; the page says why.
      this.events.onMessage?.(message);
      this.emit("ended", { code: String(message.code ?? "ended"), message: String(message.message ?? "") });
      this.close();
      return;
    }
    this.events.onMessage?.(message);
  }

  /**
   * Once a second: ping (a sender), and call the connection lost when the gateway has been silent too long
   * (a sender hears stats every second; a viewer's page reports each video frame through `heard()`).
   */
  tick() {
    const pc = this.pc;
    if (!this.connected || !pc) return;
    const now = performance.now();
    if (now - this.lastHeard > this.config.silenceTimeoutMs) {
      this.lost(pc, `nothing heard from the gateway for ${((now - this.lastHeard) / 1000).toFixed(1)} s`);
    } else if (this.role === "send" && this.channel?.readyState === "open") {
      this.channel.send(JSON.stringify({ type: "ping", t: now }));
    }
  }

  /** Note that the gateway was heard from (a viewer's page calls it for every video frame). */
  heard() {
    this.lastHeard = performance.now();
  }

  /**
   * The connection `pc` dropped: start reconnecting (once per drop).
   * @param {RTCPeerConnection} pc
   * @param {string} reason
   */
  lost(pc, reason) {
    if (this.stopped || pc !== this.pc || !this.connected || this.reconnecting) return;
    this.connected = false;
    this.emit("lost", { reason });
    this.reconnecting = this.reconnect(pc, reason).finally(() => {
      this.reconnecting = null;
    });
  }

  /**
   * Replace a lost connection (backoff, bounded attempts), as edge/client.py SenderClient._reconnect.
   * @param {RTCPeerConnection} old
   * @param {string} reason
   */
  async reconnect(old, reason) {
    old.close();
    this.pc = null;
    this.channel = null;
    const started = performance.now();
    let attempts = 0;
    let busy = 0;
    let delay = this.config.reconnectFirstDelayMs;
    for (;;) {
      this.emit("reconnecting", { reason, attempt: attempts + 1, of: this.config.reconnectAttempts, delayMs: delay });
      await sleep(delay);
      if (this.stopped) return;
      delay = Math.min(this.config.reconnectMaxDelayMs, Math.max(delay * 2, 100));
      try {
        await this.connect();
      } catch (error) {
        if (this.stopped) return;
        if (error instanceof GatewayRefusal && OUR_OLD_SESSION.has(error.code) && busy < this.config.busyRetries) {
          busy += 1;
          continue;
        }
        // The network, the gateway's "unavailable", or (a viewer) a room whose sender is reconnecting too.
        const retry =
          !(error instanceof GatewayRefusal) ||
          error.status === 503 ||
          (this.role === "view" && error.code === "unknown_room");
        attempts += 1;
        if (retry && attempts < this.config.reconnectAttempts) continue;
        this.emit("failed", { reason, error });
        this.close();
        return;
      }
      this.emit("reconnected", { afterMs: performance.now() - started, session: this.sessionId });
      return;
    }
  }

  /**
   * Return a snapshot of the session's statistics (units in the names).
   * @returns {Record<string, any>}
   */
  stats() {
    const now = performance.now();
    return {
      connected: this.connected,
      connections: this.connections,
      framesSent: this.framesSent,
      bytesSent: this.bytesSent,
      keyFrames: this.keyFrames,
      uplinkKbitS: (this.uplink.rate(now) * 8) / 1000,
      sentFps: this.sentFrames.rate(now),
      bytesPerFrame: this.framesSent ? this.bytesSent / this.framesSent : 0,
      roundTripMsP50: percentile(this.roundTrips, 50),
      roundTripMsP95: percentile(this.roundTrips, 95),
      roundTrips: this.roundTrips.length,
      rttMs: this.rttMs,
      droppedOffline: this.droppedOffline,
      droppedCongested: this.droppedCongested,
      gateway: this.gatewayStats,
      lastRendered: this.lastRendered,
      lastError: this.lastError,
    };
  }

  /** End the session for good: no more reconnections. */
  close() {
    this.stopped = true;
    this.connected = false;
    clearInterval(this.timer);
    this.pc?.close();
    this.pc = null;
    this.channel = null;
    this.emit("closed", {});
  }
}
