// The API client: JSON calls, SSE over fetch (EventSource cannot POST), uploads with progress, file opening.
// The token lives in sessionStorage: it goes with the tab, never into a cookie or localStorage.

const BASE = "/api/v1";
const TOKEN_KEY = "ragline.token";
const KIND_KEY = "ragline.token-kind"; // "login" (revoked on sign-out) or "pasted" (only forgotten)

export class ApiError extends Error {
  constructor(status, body) {
    const text = (body && (body.message || body.error)) || `request failed (HTTP ${status})`;
    super(text);
    this.status = status;
    this.code = (body && body.code) || (status ? "http_" + status : "network_error");
  }
}

let onUnauthorized = () => {};

export const auth = {
  get token() { return sessionStorage.getItem(TOKEN_KEY); },
  get kind() { return sessionStorage.getItem(KIND_KEY) || "pasted"; },
  set(token, kind) { sessionStorage.setItem(TOKEN_KEY, token); sessionStorage.setItem(KIND_KEY, kind); },
  clear() { sessionStorage.removeItem(TOKEN_KEY); sessionStorage.removeItem(KIND_KEY); },
  onUnauthorized(fn) { onUnauthorized = fn; },
};

function headers(extra = {}) {
  const token = auth.token;
  return token ? { Authorization: `Bearer ${token}`, ...extra } : { ...extra };
}

export function url(path, query) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") params.set(key, value);
  }
  const qs = params.toString();
  return BASE + path + (qs ? "?" + qs : "");
}

export const enc = encodeURIComponent;

async function failure(response) {
  let body = null;
  try { body = await response.json(); } catch { /* not JSON */ }
  const error = new ApiError(response.status, body);
  if (response.status === 401) onUnauthorized(error);
  return error;
}

/** A JSON call; resolves to the whole envelope ({data, message, pagination?}). */
export async function call(method, path, { json, query, signal } = {}) {
  const init = { method, headers: headers(json !== undefined ? { "Content-Type": "application/json" } : {}), signal };
  if (json !== undefined) init.body = JSON.stringify(json);
  let response;
  try {
    response = await fetch(url(path, query), init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, { message: "cannot reach the server" });
  }
  if (!response.ok) throw await failure(response);
  return response.json();
}

export const get = (path, query) => call("GET", path, { query });
export const post = (path, json) => call("POST", path, { json: json ?? {} });
export const del = (path) => call("DELETE", path);

/** Parse one SSE frame (the lines between blank lines); null for comments (": ping") and empty frames. */
export function parseFrame(text) {
  let event = "message";
  let id = null;
  const data = [];
  for (const line of text.split(/\r\n|\r|\n/)) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
    else if (field === "id") id = value;
  }
  if (!data.length) return null;
  const raw = data.join("\n");
  let parsed = raw;
  try { parsed = JSON.parse(raw); } catch { /* plain text data */ }
  return { event, id, data: parsed };
}

/**
 * Stream a run's events: POST (or GET) with the token, read the body as it arrives and call onEvent({event, id,
 * data}) per frame. Resolves when the server ends the stream or after a terminal `done`/`error` frame.
 */
export async function stream(method, path, { json, query, signal, onEvent }) {
  const init = { method, signal, headers: headers({ Accept: "text/event-stream" }) };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(url(path, query), init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, { message: "cannot reach the server" });
  }
  if (!response.ok) throw await failure(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let boundary;
    while ((boundary = buffer.search(/\r\n\r\n|\n\n|\r\r/)) >= 0) {
      const frame = parseFrame(buffer.slice(0, boundary));
      buffer = buffer.slice(boundary).replace(/^(\r\n\r\n|\n\n|\r\r)/, "");
      if (!frame) continue;
      onEvent(frame);
      if (frame.event === "done" || frame.event === "error") {
        reader.cancel().catch(() => {});
        return;
      }
    }
  }
}

/** Upload one file with XMLHttpRequest (fetch reports no upload progress); onProgress(0..1). */
export function upload(kbId, file, { tags, onProgress }) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url(`/knowledge-bases/${enc(kbId)}/files`));
    for (const [name, value] of Object.entries(headers())) xhr.setRequestHeader(name, value);
    xhr.responseType = "json";
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) return resolve(xhr.response);
      const error = new ApiError(xhr.status, xhr.response);
      if (xhr.status === 401) onUnauthorized(error);
      reject(error);
    };
    xhr.onerror = () => reject(new ApiError(0, { message: "upload failed: cannot reach the server" }));
    const form = new FormData();
    form.append("file", file, file.name);
    if (tags) form.append("tags", tags);
    xhr.send(form);
  });
}

// Only PDFs open with their own type (the browser's viewer, #page=N). Anything else opens as plain text or
// downloads: an uploaded HTML file must never run as a page of this origin.
const TEXT_TYPES = /\.(txt|md|markdown|csv|json|html?|xml|log)$/i;

function viewType(name) {
  if (/\.pdf$/i.test(name)) return "application/pdf";
  if (TEXT_TYPES.test(name)) return "text/plain;charset=utf-8";
  return "application/octet-stream";
}

async function fetchFile(kbId, fileId) {
  const response = await fetch(url(`/knowledge-bases/${enc(kbId)}/files/${enc(fileId)}/download`), { headers: headers() });
  if (!response.ok) throw await failure(response);
  return response.blob();
}

/** Save the original file to disk (the download route needs the token, so a plain link cannot do it). */
export async function download(kbId, fileId, name) {
  const blob = await fetchFile(kbId, fileId);
  const href = URL.createObjectURL(blob);
  const link = Object.assign(document.createElement("a"), { href, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(href), 60_000);
}

/** Open the file in a new tab, at `page` for PDFs. Call from a click: the tab opens before the fetch. */
export async function openFile(kbId, fileId, name, page) {
  const tab = window.open("", "_blank");
  try {
    const blob = await fetchFile(kbId, fileId);
    const type = viewType(name);
    if (type === "application/octet-stream" || !tab) {
      if (tab) tab.close();
      return download(kbId, fileId, name);
    }
    const href = URL.createObjectURL(new Blob([blob], { type }));
    tab.location.href = href + (page && type === "application/pdf" ? `#page=${page}` : "");
    setTimeout(() => URL.revokeObjectURL(href), 300_000);
  } catch (err) {
    if (tab) tab.close();
    throw err;
  }
}
