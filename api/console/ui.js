// DOM helpers. Every text from the server goes in as a text node: nothing is ever parsed as HTML.

/** h("button", {type: "button", onclick: fn, "aria-label": "x"}, "text", childNode, [more]) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key in el && typeof value !== "string") el[key] = value; // value, checked, disabled, hidden...
    else el.setAttribute(key, value === true ? "" : value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let uid = 0;
export const newId = (prefix) => `${prefix}-${++uid}`;

/** A labelled control: <div class="field"><label for=id>label</label>control hint</div>. */
export function field(label, control, hint) {
  control.id = control.id || newId("f");
  const parts = [h("label", { for: control.id }, label), control];
  if (hint) {
    const hintId = newId("hint");
    control.setAttribute("aria-describedby", hintId);
    parts.push(h("p", { class: "hint", id: hintId }, hint));
  }
  return h("div", { class: "field" }, parts);
}

/** Say something to screen readers (and show it) in the page's status line. */
export function announce(text, kind = "info") {
  const status = document.getElementById("status");
  status.dataset.kind = kind;
  status.textContent = "";
  // a fresh text node after a tick, so the same message twice is announced twice
  setTimeout(() => { status.textContent = text; }, 30);
}

export function showError(err, where) {
  if (err && err.name === "AbortError") return;
  const text = (err && err.message) || String(err);
  if (where) replace(where, h("p", { class: "error", role: "alert" }, text));
  else announce(text, "error");
}

export function fmtDate(value) {
  if (value === null || value === undefined || value === "") return "—";
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function fmtSize(bytes) {
  if (!Number.isFinite(bytes)) return "—";
  const units = ["B", "KB", "MB", "GB"];
  let i = 0;
  while (bytes >= 1024 && i < units.length - 1) { bytes /= 1024; i++; }
  return `${bytes.toFixed(i && bytes < 10 ? 1 : 0)} ${units[i]}`;
}

export const splitList = (text) => text.split(",").map((s) => s.trim()).filter(Boolean);

const WORD = /[\p{L}\p{N}]{3,}/gu;

/** The passage with the query's words (3+ letters, prefix match) wrapped in <mark>. */
export function highlight(text, query) {
  const words = [...new Set((query.match(WORD) || []).map((w) => w.toLowerCase()))];
  if (!words.length) return [text];
  const escaped = words.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  const pattern = new RegExp(`(?<![\\p{L}\\p{N}])(?:${escaped.join("|")})[\\p{L}\\p{N}]*`, "giu");
  const parts = [];
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    parts.push(text.slice(last, match.index), h("mark", {}, match[0]));
    last = match.index + match[0].length;
  }
  parts.push(text.slice(last));
  return parts;
}

/** Ask before a destructive action (the browser's own dialog: keyboard and screen-reader friendly). */
export const confirmed = (question) => window.confirm(question);

/** A button that shows it is busy while `work` runs (and cannot be pressed twice). */
export async function busy(button, work) {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    return await work();
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

export function statusBadge(status, extra) {
  return h("span", { class: `badge badge-${status}` }, extra ? `${status} ${extra}` : status);
}

export function pager(pagination, onPage) {
  if (!pagination || pagination.total_pages <= 1) return null;
  const { page, total_pages: pages, total } = pagination;
  return h("nav", { class: "pager", "aria-label": "Pages" },
    h("button", { type: "button", disabled: page <= 1, onclick: () => onPage(page - 1) }, "Previous"),
    h("span", {}, `Page ${page} of ${pages} (${total})`),
    h("button", { type: "button", disabled: page >= pages, onclick: () => onPage(page + 1) }, "Next"));
}

export const fmtSeconds = (s) => (s < 1 ? `${Math.round((s || 0) * 1000)} ms` : `${s.toFixed(1)} s`);
