// The watch page: build a continuous QueryTask (kind and conditions) or paste one, then see
// its current results and every change as it arrives (Server-Sent Events), and manage the
// standing tasks.
import { ApiError, api, get, post } from "./api.js";
import { $, badge, clear, fmtNumber, h, show } from "./dom.js";
import { VirtualTable } from "./virtual_table.js";

const TASKS = "/core/local-query-tasks";
const OCCURRENCES = [["MUST_OCCUR", "must"], ["SHOULD_OCCUR", "should"], ["MUST_NOT_OCCUR", "must not"]];
const MATCHES = [["TERM", "equals"], ["PREFIX", "starts with"], ["WILDCARD", "matches * ?"], ["PHRASE", "has words"]];
const MAX_FEED = 500;

const form = $("#watch-form");
const errorBox = $("#watch-error");
const jsonBox = $("#watch-json");
let mode = "build";
let source = null;
let watching = null; // task link
let current = new Map();
let changes = 0;

const currentTable = new VirtualTable($("#current-table"), {
  label: "Current results",
  emptyText: "No document matches (yet)",
  columns: [
    { key: "link", title: "document", width: 260 },
    { key: "summary", title: "contents", width: 560 },
  ],
});

// --- building ---------------------------------------------------------------------------

function select(options, value) {
  const el = h("select", {}, options.map(([v, text]) => h("option", { value: v }, text)));
  el.value = value;
  return el;
}

function addCondition(property = "", value = "", match = "TERM", occurance = "MUST_OCCUR") {
  const row = h("div", { class: "condition" },
    select(OCCURRENCES, occurance),
    h("input", { type: "text", placeholder: "property, e.g. platform", value: property, "aria-label": "Property" }),
    select(MATCHES, match),
    h("input", { type: "text", placeholder: "value", value, "aria-label": "Value" }),
    h("button", { type: "button", class: "link", "aria-label": "Remove condition", onclick: () => row.remove() }, "×"));
  row.querySelector("select").setAttribute("aria-label", "Occurrence");
  row.querySelectorAll("select")[1].setAttribute("aria-label", "Match");
  $("#conditions").append(row);
  return row;
}

/** The QueryTask the builder describes. */
function builtTask() {
  const kind = $("#watch-kind").value.trim();
  const clauses = [];
  if (kind) clauses.push({ occurance: "MUST_OCCUR", term: { propertyName: "documentKind", matchValue: kind } });
  for (const row of $("#conditions").children) {
    const [occurance, match] = row.querySelectorAll("select");
    const [property, value] = row.querySelectorAll("input");
    if (!property.value.trim()) continue;
    clauses.push({
      occurance: occurance.value,
      term: { propertyName: property.value.trim(), matchValue: value.value, matchType: match.value },
    });
  }
  const count = $("#watch-count").checked;
  // With STOP_MATCH a document that stops matching is reported too, so the current results
  // shown stay true.
  const options = ["CONTINUOUS", "CONTINUOUS_STOP_MATCH", count ? "COUNT" : $("#watch-expand").checked ? "EXPAND_CONTENT" : null].filter(Boolean);
  return {
    taskInfo: { isDirect: false },
    querySpec: { query: { occurance: "MUST_OCCUR", booleanClauses: clauses }, options },
    documentExpirationTimeMicros: (Date.now() + Number($("#watch-ttl").value) * 1000) * 1000,
  };
}

function pastedTask() {
  let task;
  try {
    task = JSON.parse(jsonBox.value);
  } catch (err) {
    throw new Error(`QueryTask JSON: ${err.message}`);
  }
  if (task && typeof task === "object" && task.querySpec && typeof task.querySpec === "object") {
    const options = Array.isArray(task.querySpec.options) ? task.querySpec.options : [];
    if (!options.some((o) => o.startsWith("CONTINUOUS"))) task.querySpec.options = [...options, "CONTINUOUS"];
  }
  return task;
}

function setMode(next) {
  if (next === "json" && mode === "build") jsonBox.value = JSON.stringify(builtTask(), null, 2);
  mode = next;
  $("#tab-build").setAttribute("aria-selected", String(next === "build"));
  $("#tab-json").setAttribute("aria-selected", String(next === "json"));
  $("#pane-build").hidden = next !== "build";
  $("#pane-json").hidden = next !== "json";
}

$("#tab-build").addEventListener("click", () => setMode("build"));
$("#tab-json").addEventListener("click", () => setMode("json"));
$("#add-condition").addEventListener("click", () => addCondition().querySelector("input").focus());
jsonBox.addEventListener("input", () => { jsonBox.removeAttribute("aria-invalid"); show(errorBox, ""); });

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  show(errorBox, "");
  jsonBox.removeAttribute("aria-invalid");
  let task;
  try {
    task = mode === "json" ? pastedTask() : builtTask();
  } catch (err) {
    jsonBox.setAttribute("aria-invalid", "true");
    show(errorBox, err.message);
    return;
  }
  $("#watch-start").disabled = true;
  try {
    const created = await post(TASKS, task);
    await loadTasks();
    openTask(created.documentSelfLink);
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    if (mode === "json") jsonBox.setAttribute("aria-invalid", "true");
    show(errorBox, err.message);
  } finally {
    $("#watch-start").disabled = false;
  }
});

// --- standing tasks -------------------------------------------------------------------

function describe(task) {
  const clauses = task.querySpec?.query?.booleanClauses || (task.querySpec?.query?.term ? [task.querySpec.query] : []);
  return clauses.map((c) => c.term ? `${c.occurance === "MUST_NOT_OCCUR" ? "NOT " : ""}${c.term.propertyName}=${c.term.matchValue ?? "…"}` : "(group)").join(" AND ");
}

async function loadTasks() {
  const links = (await get(TASKS)).documentLinks || [];
  const body = $("#tasks-table tbody");
  const tasks = await Promise.all(links.map((link) => get(link).catch(() => null)));
  clear(body);
  for (const task of tasks.filter(Boolean)) {
    const link = task.documentSelfLink;
    const stage = task.taskInfo?.stage || "";
    const count = task.results?.documentCount ?? task.results?.documentLinks?.length ?? "";
    body.append(h("tr", {},
      h("td", {}, h("code", {}, link.split("/").pop()), h("div", { class: "subtle" }, describe(task))),
      h("td", {}, badge(stage === "STARTED" ? "running" : stage === "CANCELLED" ? "stopped" : "pending", stage.toLowerCase())),
      h("td", {}, String(count)),
      h("td", {}, h("div", { class: "row-actions" },
        h("button", { type: "button", class: "link", onclick: () => openTask(link) }, "Open"),
        stage === "STARTED" ? h("button", { type: "button", class: "link", onclick: () => cancel(link) }, "Cancel") : null,
        h("button", { type: "button", class: "link danger", onclick: () => remove(link) }, "Delete"))),
    ));
  }
  if (!tasks.length) body.append(h("tr", {}, h("td", { colspan: 4, class: "empty" }, "No standing tasks.")));
}

async function cancel(link) {
  await api("PATCH", link, { taskInfo: { stage: "CANCELLED" } });
  await loadTasks();
}

async function remove(link) {
  if (!confirm(`Delete ${link}?`)) return;
  await api("DELETE", link);
  if (watching === link) stopWatching("deleted");
  await loadTasks();
}

$("#tasks-refresh").addEventListener("click", loadTasks);
$("#watching-cancel").addEventListener("click", () => watching && cancel(watching));

// --- watching one task ------------------------------------------------------------------

function summary(doc) {
  if (!doc) return "";
  const fields = Object.entries(doc).filter(([key]) => !key.startsWith("document"));
  return fields.map(([key, value]) => `${key}=${typeof value === "object" ? JSON.stringify(value) : value}`).join("  ").slice(0, 400);
}

function stopWatching(reason) {
  source?.close();
  source = null;
  $("#watching-state").replaceChildren(badge("stopped", reason));
}

function openTask(link) {
  source?.close();
  watching = link;
  current = new Map();
  changes = 0;
  currentTable.setRows([]);
  clear($("#changes"));
  $("#watching").hidden = false;
  $("#watching-link").textContent = link;
  $("#change-count").textContent = "";
  $("#current-count").textContent = "";
  $("#watching-state").replaceChildren(badge("pending", "connecting"));
  history.replaceState(null, "", `/ui/watch?task=${encodeURIComponent(link)}`);
  subscribe(link, null);
}

function subscribe(link, since) {
  const events = new EventSource(`${link}/events${since != null ? `?since=${since}` : ""}`);
  source = events;
  $("#watching-state").replaceChildren(badge("pending", "loading"));
  events.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "initial") {
      const results = message.results || {};
      for (const docLink of results.documentLinks || []) {
        current.set(docLink, { link: docLink, summary: summary(results.documents?.[docLink]) });
      }
      if (message.last) {
        if (results.documentCount !== undefined && !results.documentLinks?.length) {
          $("#current-count").textContent = `(${fmtNumber(results.documentCount)} counted)`;
        }
      }
      refreshCurrent();
    } else if (message.type === "current") {
      // caught up (after the initial results or a resume's replay): only now is it live
      $("#watching-state").replaceChildren(badge("running", "live"));
    } else if (message.type === "change") {
      applyChange(message);
    } else if (message.type === "resync") {
      events.close();
      subscribe(link, message.seq);
    } else if (message.type === "closed") {
      stopWatching(message.reason || "closed");
      loadTasks();
    }
  };
  events.onerror = () => {
    if (events.readyState === EventSource.CLOSED && source === events) stopWatching("disconnected");
  };
}

function applyChange(message) {
  const results = message.results || {};
  const docLink = (results.documentLinks || [])[0];
  const doc = results.documents?.[docLink];
  const gone = message.event === "deleted" || message.stopMatch;
  if (docLink) {
    if (gone) current.delete(docLink);
    else current.set(docLink, { link: docLink, summary: summary(doc) });
  }
  changes += 1;
  $("#change-count").textContent = `(${fmtNumber(changes)})`;
  const feed = $("#changes");
  feed.prepend(h("li", {},
    h("span", { class: "seq" }, `#${message.seq}`),
    h("div", {}, h("code", {}, docLink || ""), h("div", { class: "subtle" }, message.reason || summary(doc))),
    badge(message.event || "change", message.event)));
  while (feed.children.length > MAX_FEED) feed.lastChild.remove();
  if (results.documentCount !== undefined) $("#current-count").textContent = `(${fmtNumber(results.documentCount)} counted)`;
  refreshCurrent();
}

function refreshCurrent() {
  currentTable.setRows([...current.values()]);
  if (current.size) $("#current-count").textContent = `(${fmtNumber(current.size)})`;
}

// --- start ----------------------------------------------------------------------------

addCondition("", "");
await loadTasks();
const initial = new URLSearchParams(location.search).get("task");
// Only a task link of this server (the parameter comes from the address bar).
if (initial && /^\/core\/(local-)?query-tasks\/[\w.~-]+$/.test(initial)) openTask(initial);
