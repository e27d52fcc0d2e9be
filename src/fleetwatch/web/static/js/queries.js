// Saved queries: list, create, edit, delete; the server's validation errors are shown on the
// field they concern (the SQL one at its line and column in the editor).
import { ApiError, del, get, patch, post } from "./api.js";
import { $, ago, clear, h, show } from "./dom.js";
import { createSqlEditor } from "./sql_editor.js";

const form = $("#query-form");
const formError = $("#form-error");
const nameError = $("#q-name-error");
const editor = createSqlEditor($("#q-editor"), { id: "q-sql", label: "SQL", onRun: () => form.requestSubmit() });
let queries = [];
let editing = null; // id being edited, or null for a new query

function clearErrors() {
  show(formError, "");
  show(nameError, "");
  $("#q-name").removeAttribute("aria-invalid");
  editor.clearError();
}

function edit(query) {
  clearErrors();
  editing = query ? query.id : null;
  $("#form-title").textContent = query ? `Edit “${query.name}”` : "New query";
  $("#q-name").value = query?.name ?? "";
  $("#q-description").value = query?.description ?? "";
  editor.value = query?.query ?? "";
  $("#q-platform").value = query?.platform ?? "";
  $("#q-observer").checked = Boolean(query?.observer_can_run);
  const run = $("#q-run");
  run.hidden = !query;
  if (query) run.href = `/ui/live?query_id=${query.id}`;
  $("#q-name").focus();
}

function render() {
  const text = $("#query-search").value.trim().toLowerCase();
  const body = $("#queries-table tbody");
  clear(body);
  const shown = queries.filter((q) => !text || [q.name, q.description, q.query].some((v) => (v || "").toLowerCase().includes(text)));
  for (const query of shown) {
    body.append(h("tr", {},
      h("td", {},
        h("button", { type: "button", class: "link", onclick: () => edit(query) }, query.name),
        h("div", { class: "subtle" }, query.description || ""),
        h("code", { class: "subtle" }, (query.query || "").slice(0, 90))),
      h("td", {}, query.platform || "any"),
      h("td", {}, query.observer_can_run ? "can run" : "—"),
      h("td", { title: query.updated_at || "" }, ago(query.updated_at || query.created_at)),
      h("td", {}, h("div", { class: "row-actions" },
        h("a", { class: "button", href: `/ui/live?query_id=${query.id}` }, "Run"),
        h("button", { type: "button", class: "danger", "aria-label": `Delete ${query.name}`, onclick: () => remove(query) }, "Delete"))),
    ));
  }
  if (!shown.length) {
    body.append(h("tr", {}, h("td", { colspan: 5, class: "empty" }, queries.length ? "No saved query matches." : "No saved queries yet.")));
  }
  $("#query-summary").textContent = `${queries.length} saved`;
}

async function load() {
  queries = (await get("/api/v1/fleet/queries")).queries || [];
  render();
}

async function remove(query) {
  if (!confirm(`Delete the saved query “${query.name}”?`)) return;
  try {
    await del(`/api/v1/fleet/queries/${query.id}`);
  } catch (err) {
    show(formError, err.message);
  }
  if (editing === query.id) edit(null);
  await load();
}

/** Put an API error next to the field it names. */
function showError(err) {
  const message = err.message;
  const place = /\(line (\d+), column (\d+)\)/.exec(message);
  if (/^query\b/i.test(message) || place) {
    editor.showError(message.replace(/^query:\s*/, ""), place && Number(place[1]), place && Number(place[2]));
  } else if (err.status === 409 || /\bname\b/i.test(message)) {
    $("#q-name").setAttribute("aria-invalid", "true");
    show(nameError, message);
    $("#q-name").focus();
  } else {
    show(formError, message);
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors();
  const body = {
    name: $("#q-name").value.trim(),
    description: $("#q-description").value,
    query: editor.value,
    platform: $("#q-platform").value,
    observer_can_run: $("#q-observer").checked,
  };
  if (!body.name) {
    showError(new Error("name: give the query a name"));
    return;
  }
  try {
    const saved = editing === null
      ? await post("/api/v1/fleet/queries", body)
      : await patch(`/api/v1/fleet/queries/${editing}`, body);
    await load();
    edit(saved.query);
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    showError(err);
  }
});

$("#new-query").addEventListener("click", () => edit(null));
$("#q-cancel").addEventListener("click", () => edit(null));
$("#query-search").addEventListener("input", render);
await load();
edit(null);
// Lets tests (and scripts) know the form is handled here, not submitted natively.
form.dataset.ready = "true";
