// Thin client of the annotation server's JSON API. Every call rejects with an ApiError carrying
// the server's stable error code (`err.code`, e.g. "prediction_expired", "image_changed") and
// its message, so the page can react to the code and show the message as it is.
// The access token travels in a cookie set when the page was opened with ?token=...

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const RETRIES = 3; // network failures of idempotent requests are retried this many times

async function once(method, url, body, headers) {
  const init = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const t0 = performance.now();
  const res = await fetch(url, init);
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    const err = data && data.error;
    if (err && typeof err === "object") throw new ApiError(res.status, err.code, err.message);
    const code = res.status === 401 ? "unauthorized" : "http_error";
    throw new ApiError(res.status, code, text || `${res.status} ${res.statusText}`);
  }
  if (data && typeof data === "object") data._roundTripMs = performance.now() - t0;
  return data;
}

// `retry`: the request is idempotent (a GET, or carries an Idempotency-Key), so a dropped
// connection (fetch throws a TypeError, no answer came) is sent again after a short pause.
async function request(method, url, body, { headers = {}, retry = method === "GET" } = {}) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await once(method, url, body, headers);
    } catch (err) {
      if (!retry || err instanceof ApiError || attempt >= RETRIES) throw err;
      await new Promise((resolve) => setTimeout(resolve, 300 * 2 ** attempt));
    }
  }
}

/** A random key for one accept: its retries carry the same key, so the server stores it once. */
export function idempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16)); // works without HTTPS, unlike randomUUID
  return "page-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export const api = {
  info: () => request("GET", "/api/info"),
  images: () => request("GET", "/api/images"),
  embeddingState: (id) => request("GET", `/api/images/${id}/embedding`),
  computeEmbedding: (id) => request("POST", `/api/images/${id}/embedding`, undefined, { retry: true }),
  predict: (id, prompt) => request("POST", `/api/images/${id}/predict`, prompt, { retry: true }),
  masks: (id) => request("GET", `/api/images/${id}/masks`),
  accept: (id, mask, key) =>
    request("POST", `/api/images/${id}/masks`, mask, { headers: { "Idempotency-Key": key }, retry: true }),
  update: (maskId, fields) => request("PATCH", `/api/masks/${maskId}`, fields, { retry: true }),
  remove: (maskId) => request("DELETE", `/api/masks/${maskId}`),
  prefill: (id) => request("POST", `/api/images/${id}/prefill`),
  acceptProposals: (id, ids) => request("POST", `/api/images/${id}/proposals/accept`, { ids }),
  rejectProposals: (id, ids) => request("POST", `/api/images/${id}/proposals/reject`, { ids }),
  imageUrl: (id, sha) => `/api/images/${id}/file?v=${encodeURIComponent(sha || "")}`,
  exportUrl: (format) => `/api/export?format=${encodeURIComponent(format)}`,
};
