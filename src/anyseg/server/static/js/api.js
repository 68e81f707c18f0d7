// Thin client of the annotation server's JSON API. Every call rejects with an Error whose message
// is the server's {"error": ...} text, so the page can show it as it is.

async function request(method, url, body) {
  const init = { method, headers: {} };
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
    data = { error: text };
  }
  if (!res.ok) {
    const msg = (data && (data.error || data.detail)) || `${res.status} ${res.statusText}`;
    throw new Error(typeof msg === "string" ? msg : JSON.stringify(msg));
  }
  if (data && typeof data === "object") data._roundTripMs = performance.now() - t0;
  return data;
}

export const api = {
  info: () => request("GET", "/api/info"),
  images: () => request("GET", "/api/images"),
  embeddingState: (id) => request("GET", `/api/images/${id}/embedding`),
  computeEmbedding: (id) => request("POST", `/api/images/${id}/embedding`),
  predict: (id, prompt) => request("POST", `/api/images/${id}/predict`, prompt),
  masks: (id) => request("GET", `/api/images/${id}/masks`),
  accept: (id, mask) => request("POST", `/api/images/${id}/masks`, mask),
  update: (maskId, fields) => request("PATCH", `/api/masks/${maskId}`, fields),
  remove: (maskId) => request("DELETE", `/api/masks/${maskId}`),
  prefill: (id) => request("POST", `/api/images/${id}/prefill`),
  acceptProposals: (id, ids) => request("POST", `/api/images/${id}/proposals/accept`, { ids }),
  rejectProposals: (id, ids) => request("POST", `/api/images/${id}/proposals/reject`, { ids }),
  imageUrl: (id) => `/api/images/${id}/file`,
  exportUrl: (format) => `/api/export?format=${encodeURIComponent(format)}`,
};
