// Labels and teams (list, create, edit, delete with errors on the form): one generic page,
// shown once this server has the API (GET /api/v1/fleet/<name> not 404).
import { ApiError, del, get, hasApi, patch, post } from "./api.js";
import { $, clear, h, show } from "./dom.js";

const RESOURCES = {
  labels: {
    item: "label",
    columns: [["name", "Name"], ["description", "Description"], ["label_type", "Type"], ["host_count", "Hosts"]],
    fields: [
      ["name", "Name", "text"], ["description", "Description", "text"],
      ["query", "Query (dynamic label: hosts where this SQL returns rows)", "textarea"],
      ["platform", "Platform", "text"],
    ],
  },
  teams: {
    item: "team",
    columns: [["name", "Name"], ["description", "Description"], ["host_count", "Hosts"], ["user_count", "Users"]],
    fields: [["name", "Name", "text"], ["description", "Description", "text"]],
  },
};

const name = $("#resource-page").dataset.resource;
const spec = RESOURCES[name];
const base = `/api/v1/fleet/${name}`;
const formError = $("#form-error");
let editing = null;

function buildForm() {
  const fields = $("#form-fields");
  for (const [key, label, type] of spec.fields) {
    const id = `f-${key}`;
    const input = type === "textarea"
      ? h("textarea", { id, name: key, class: "json", rows: 4 })
      : h("input", { id, name: key, type: "text" });
    fields.append(h("div", { class: "field" }, h("label", { for: id }, label), input,
      h("div", { class: "field-error", id: `${id}-error`, hidden: true })));
  }
}

function edit(item) {
  editing = item ? item.id : null;
  show(formError, "");
  for (const [key] of spec.fields) {
    $(`#f-${key}`).value = item?.[key] ?? "";
    $(`#f-${key}`).removeAttribute("aria-invalid");
    show($(`#f-${key}-error`), "");
  }
  $("#form-title").textContent = item ? `Edit ${item.name}` : `New ${spec.item}`;
}

async function load() {
  const items = (await get(base))[name] || [];
  $("#items-table thead").replaceChildren(h("tr", {}, spec.columns.map(([, title]) => h("th", {}, title)), h("th", {})));
  const body = $("#items-table tbody");
  clear(body);
  for (const item of items) {
    body.append(h("tr", {},
      spec.columns.map(([key], i) => h("td", {}, i === 0
        ? h("button", { type: "button", class: "link", onclick: () => edit(item) }, String(item[key] ?? ""))
        : String(item[key] ?? ""))),
      h("td", {}, h("button", { type: "button", class: "danger", onclick: () => remove(item) }, "Delete"))));
  }
  if (!items.length) body.append(h("tr", {}, h("td", { colspan: spec.columns.length + 1, class: "empty" }, `No ${name} yet.`)));
}

async function remove(item) {
  if (!confirm(`Delete ${item.name}?`)) return;
  try { await del(`${base}/${item.id}`); } catch (err) { show(formError, err.message); }
  await load();
}

$("#item-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  show(formError, "");
  for (const [key] of spec.fields) show($(`#f-${key}-error`), "");
  const body = {};
  for (const [key] of spec.fields) {
    const value = $(`#f-${key}`).value;
    if (value !== "") body[key] = value;
  }
  try {
    if (editing === null) await post(base, body);
    else await patch(`${base}/${editing}`, body);
    edit(null);
    await load();
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    const field = spec.fields.find(([key]) => new RegExp(`\\b${key}\\b`, "i").test(err.message));
    if (field) {
      $(`#f-${field[0]}`).setAttribute("aria-invalid", "true");
      show($(`#f-${field[0]}-error`), err.message);
    } else {
      show(formError, err.message);
    }
  }
});

if (await hasApi(name)) {
  buildForm();
  edit(null);
  $("#resource-body").hidden = false;
  $("#new-item").hidden = false;
  $("#new-item").addEventListener("click", () => edit(null));
  $("#item-clear").addEventListener("click", () => edit(null));
  await load();
} else {
  $("#unavailable").hidden = false;
}
