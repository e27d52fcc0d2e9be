// The user API over fetch: the session cookie authenticates, the page's CSRF token goes in
// X-CSRF-Token on every request, and errors become ApiError with the server's message.

const csrfMeta = document.querySelector('meta[name="csrf-token"]');
const CSRF = csrfMeta ? csrfMeta.content : "";

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

/** Call the API; resolves to the decoded JSON body, rejects with ApiError on 4xx/5xx. */
export async function api(method, path, body, { redirectOn401 = true } = {}) {
  const headers = { Accept: "application/json" };
  if (CSRF) headers["X-CSRF-Token"] = CSRF;
  const init = { method, headers, credentials: "same-origin" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = typeof body === "string" ? body : JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = { error: text }; }
  }
  if (response.status === 401 && redirectOn401) {
    location.assign("/ui/login?next=" + encodeURIComponent(location.pathname + location.search));
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body ?? {});
export const patch = (path, body) => api("PATCH", path, body);
export const del = (path) => api("DELETE", path);

/** A query string from an object, leaving out empty values. */
export function qs(params) {
  const out = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") out.set(key, String(value));
  }
  const text = out.toString();
  return text ? `?${text}` : "";
}

const probes = new Map();

/** Whether the server has an API collection (labels and teams come with a later release):
 *  false when it answers 404, true otherwise. Cached for the page's life. */
export function hasApi(name) {
  if (!probes.has(name)) {
    probes.set(name, api("GET", `/api/v1/fleet/${name}`, undefined, { redirectOn401: false })
      .then(() => true)
      .catch((err) => !(err instanceof ApiError && err.status === 404)));
  }
  return probes.get(name);
}

/** Every item of a paged list endpoint (`page` from 0), up to `limit`. */
export async function getAll(path, key, { perPage = 1000, limit = 100000 } = {}) {
  const items = [];
  for (let page = 0; items.length < limit; page += 1) {
    const sep = path.includes("?") ? "&" : "?";
    const data = await get(`${path}${sep}page=${page}&per_page=${perPage}`);
    const batch = data[key] || [];
    items.push(...batch);
    if (batch.length < perPage) break;
  }
  return items;
}
