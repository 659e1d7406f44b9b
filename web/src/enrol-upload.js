// The enrolment page's side of signaling/enrolment.py's protocol: a recording goes up in chunks that
// survive dropped connections, then an explicit consent starts the enrolment job, which is polled
// until it ends.
//
// Resuming: every PUT says where its bytes start (Upload-Offset). The gateway keeps whatever arrived,
// even half a chunk, so after a network error the page asks it for the offset (GET) and goes on from
// there; a 409 carries that offset too. Every request that failed for the network's sake, or with a
// 5xx, is retried with exponential backoff; refusals (4xx) are not, they need the person.

/** A refusal by the gateway: HTTP status, short code, message and, for upload conflicts, the stored offset. */
export class EnrolRefusal extends Error {
  /** @param {number} status @param {string} code @param {string} message @param {number | null} offset */
  constructor(status, code, message, offset = null) {
    super(message);
    this.name = "EnrolRefusal";
    this.status = status;
    this.code = code;
    this.offset = offset;
  }
}

/** The gateway could not be reached, or the connection dropped before its answer was read. */
export class Unreachable extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "Unreachable";
  }
}

/**
 * One enrolment job's progress, as GET /api/enrolments/{job} answers it (signaling EnrolmentProgress).
 * @typedef {{
 *   job: string, state: "queued" | "running" | "succeeded" | "failed", target: string, owner: string,
 *   stage: string, step: number, total: number, eta_s: number | null, message: string,
 * }} EnrolmentProgress
 */

/**
 * Retries and timing. attempts: tries after the first failure of one step before giving up;
 * firstDelayMs, maxDelayMs: the backoff's first wait and its cap (doubling in between); pollMs: how
 * often a running job is asked about.
 * @typedef {{attempts: number, firstDelayMs: number, maxDelayMs: number, pollMs: number}} RetryPolicy
 */

/** @type {RetryPolicy} */
export const RETRY_POLICY = Object.freeze({ attempts: 8, firstDelayMs: 500, maxDelayMs: 8000, pollMs: 1000 });

/**
 * Return the SHA-256 of a blob as 64 hex digits (what the gateway checks, and the consent record names).
 * @param {Blob} blob
 * @returns {Promise<string>}
 */
export async function sha256Hex(blob) {
  const digest = await crypto.subtle.digest("SHA-256", await blob.arrayBuffer());
  return Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/**
 * Return whether a failed request is worth repeating as it was: the network, or the gateway's own trouble.
 * @param {unknown} error
 */
export function isTransient(error) {
  return error instanceof Unreachable || (error instanceof EnrolRefusal && error.status >= 500);
}

/** @param {number} ms */
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Talks to the gateway's enrolment API with one enrol token. */
export class EnrolmentClient {
  /**
   * @param {string} token an enrol token (`headcast token --role enrol`)
   * @param {{policy?: RetryPolicy, fetch?: typeof fetch, base?: string}} [options]
   */
  constructor(token, { policy = RETRY_POLICY, fetch = window.fetch.bind(window), base = "" } = {}) {
    this.token = token;
    this.policy = policy;
    this.fetch = fetch;
    this.base = base;
    /** Called before each wait of a retry: (what failed, ms until the retry, attempt number). */
    this.onRetry = (/** @type {Error} */ _error, /** @type {number} */ _delayMs, /** @type {number} */ _attempt) => {};
  }

  /**
   * Return the JSON answer of one request; Unreachable when there is no answer, EnrolRefusal for a non-2xx one.
   * @param {string} method
   * @param {string} path
   * @param {{json?: unknown, body?: Blob, headers?: Record<string, string>}} [what]
   * @returns {Promise<any>}
   */
  async request(method, path, { json, body, headers = {} } = {}) {
    /** @type {Record<string, string>} */
    const sent = { Authorization: `Bearer ${this.token}`, ...headers };
    if (json !== undefined) sent["Content-Type"] = "application/json";
    let response;
    let answer = null;
    try {
      response = await this.fetch(this.base + path, {
        method,
        headers: sent,
        body: json !== undefined ? JSON.stringify(json) : body,
        cache: "no-store",
      });
      answer = await response.json().catch(() => null);
    } catch (error) {
      throw new Unreachable(
        `the gateway did not answer ${method} ${path} (${error instanceof Error ? error.message : error})`,
      );
    }
    if (!response.ok) {
      const code = answer?.code ?? "error";
      const message = answer?.error ?? `HTTP ${response.status}`;
      throw new EnrolRefusal(response.status, code, message, typeof answer?.offset === "number" ? answer.offset : null);
    }
    return answer;
  }

  /**
   * Return what `step` returns, repeating it after transient failures with backoff.
   * @template T
   * @param {() => Promise<T>} step
   * @returns {Promise<T>}
   */
  async retrying(step) {
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await step();
      } catch (error) {
        if (!isTransient(error) || attempt > this.policy.attempts) throw error;
        const delay = Math.min(this.policy.maxDelayMs, this.policy.firstDelayMs * 2 ** (attempt - 1));
        this.onRetry(/** @type {Error} */ (error), delay, attempt);
        await sleep(delay);
      }
    }
  }

  /**
   * Return the id of a complete upload of `blob` as the recording of target `name`.
   * @param {Blob} blob
   * @param {string} name the target id
   * @param {string} sha256 the blob's SHA-256 (sha256Hex)
   * @param {{
   *   resume?: string | null, onCreated?: (id: string) => void, onProgress?: (sent: number, size: number) => void,
   * }} [how] resume: an earlier upload of the same blob to go on with (a new one when the gateway no longer
   *   has it); onCreated: the id, as soon as there is one; onProgress: after every stored chunk
   * @returns {Promise<string>}
   */
  async upload(blob, name, sha256, { resume = null, onCreated = () => {}, onProgress = () => {} } = {}) {
    let id = resume;
    let state = null;
    if (id) {
      try {
        state = await this.retrying(() => this.request("GET", `/api/uploads/${id}`));
      } catch (error) {
        if (!(error instanceof EnrolRefusal && error.status === 404)) throw error;
        id = null; // expired or removed: start over
      }
    }
    if (!id || !state) {
      // Not idempotent: a creation whose answer was lost leaves an unused upload, which expires on its own.
      state = await this.retrying(() =>
        this.request("POST", "/api/uploads", { json: { size: blob.size, sha256, name } }),
      );
      id = /** @type {string} */ (state.upload);
      onCreated(id);
    }
    const chunkBytes = /** @type {number} */ (state.chunk_bytes);
    let offset = /** @type {number} */ (state.offset);
    onProgress(offset, blob.size);
    let failures = 0;
    while (offset < blob.size) {
      try {
        const stored = await this.request("PUT", `/api/uploads/${id}`, {
          body: blob.slice(offset, offset + chunkBytes),
          headers: { "Upload-Offset": String(offset), "Content-Type": "application/offset+octet-stream" },
        });
        offset = stored.offset;
        failures = 0;
        onProgress(offset, blob.size);
      } catch (error) {
        failures += 1;
        const conflict = error instanceof EnrolRefusal && error.status === 409 && error.offset !== null;
        if ((!conflict && !isTransient(error)) || failures > this.policy.attempts) throw error;
        if (conflict && error.code === "offset_mismatch") {
          offset = /** @type {number} */ (error.offset); // the gateway's word on where we stand
          continue;
        }
        const delay = Math.min(this.policy.maxDelayMs, this.policy.firstDelayMs * 2 ** (failures - 1));
        this.onRetry(/** @type {Error} */ (error), delay, failures);
        await sleep(delay);
        // Part of the lost chunk may have arrived: ask instead of guessing.
        const status = await this.retrying(() => this.request("GET", `/api/uploads/${id}`));
        offset = status.offset;
        onProgress(offset, blob.size);
      }
    }
    return id;
  }

  /**
   * Return the id of the job enrolling a complete upload; sent again it answers the same job.
   * @param {string} uploadId
   * @param {string} subject who is recorded and consented
   * @returns {Promise<string>}
   */
  async enrol(uploadId, subject) {
    const answer = await this.retrying(() =>
      this.request("POST", `/api/uploads/${uploadId}/enrol`, { json: { consent: true, subject } }),
    );
    return answer.job;
  }

  /**
   * Return the job's final progress (succeeded or failed), calling `onUpdate` with every answer on the way.
   * @param {string} jobId
   * @param {(progress: EnrolmentProgress) => void} onUpdate
   * @returns {Promise<EnrolmentProgress>}
   */
  async follow(jobId, onUpdate) {
    for (;;) {
      /** @type {EnrolmentProgress} */
      const progress = await this.retrying(() => this.request("GET", `/api/enrolments/${encodeURIComponent(jobId)}`));
      onUpdate(progress);
      if (progress.state === "succeeded" || progress.state === "failed") return progress;
      await sleep(this.policy.pollMs);
    }
  }
}
