// Small DOM helpers: element building (text is always set as text, never parsed as HTML).

/** h("a", {href: "/x", class: "c"}, "text", child) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function badge(status, text) {
  return h("span", { class: `badge ${status}` }, text ?? status);
}

export function show(el, message) {
  if (!el) return;
  el.textContent = message || "";
  el.hidden = !message;
}

const numberFormat = new Intl.NumberFormat();
export const fmtNumber = (n) => numberFormat.format(n || 0);

/** "3 min ago" for an ISO time or epoch seconds. */
export function ago(value) {
  if (!value) return "never";
  const t = typeof value === "number" ? value * 1000 : Date.parse(value);
  if (Number.isNaN(t)) return String(value);
  const s = Math.round((Date.now() - t) / 1000);
  if (s < 5) return "just now";
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

export function fmtTime(value) {
  if (!value) return "";
  const t = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  return Number.isNaN(t.getTime()) ? String(value) : t.toLocaleString();
}

export function debounce(fn, ms) {
  let timer = 0;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

/** Save a string as a file download. */
export function download(filename, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = h("a", { href: url, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
