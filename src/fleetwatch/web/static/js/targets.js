// The live query target picker: all hosts, chosen hosts, labels and teams, with the count of
// hosts the selection reaches (re-counted every few seconds, since hosts come and go).
import { get, hasApi, qs } from "./api.js";
import { $, badge, clear, debounce, fmtNumber, h } from "./dom.js";

const RECOUNT_MS = 5000;

export class TargetPicker {
  constructor() {
    this.all = $("#target-all");
    this.search = $("#target-search");
    this.matches = $("#target-matches");
    this.chips = $("#target-chips");
    this.count = $("#target-count");
    this.hosts = new Map();
    this.labels = new Map();
    this.teams = new Map();
    this.all.addEventListener("change", () => this.changed());
    this.search.addEventListener("input", debounce(() => this.find(), 200));
    this.search.addEventListener("keydown", (event) => {
      if (event.key === "ArrowDown") {
        event.preventDefault();
        this.matches.querySelector("button")?.focus();
      }
      if (event.key === "Escape") this.matches.hidden = true;
    });
    this.matches.addEventListener("keydown", (event) => {
      const buttons = [...this.matches.querySelectorAll("button")];
      const i = buttons.indexOf(document.activeElement);
      if (event.key === "ArrowDown") { event.preventDefault(); buttons[i + 1]?.focus(); }
      if (event.key === "ArrowUp") {
        event.preventDefault();
        (i > 0 ? buttons[i - 1] : this.search).focus();
      }
    });
    this.setupOptional("labels", $("#target-label"), this.labels);
    this.setupOptional("teams", $("#target-team"), this.teams);
    setInterval(() => { if (!document.hidden) this.recount(); }, RECOUNT_MS);
  }

  async setupOptional(name, select, chosen) {
    if (!select || !(await hasApi(name))) return;
    const data = await get(`/api/v1/fleet/${name}`);
    for (const item of data[name] || []) {
      select.append(h("option", { value: item.id }, item.name ?? `#${item.id}`));
      select.options[select.options.length - 1].item = item;
    }
    select.addEventListener("change", () => {
      const option = select.selectedOptions[0];
      if (option?.item) chosen.set(option.item.id, option.item);
      select.value = "";
      this.changed();
    });
  }

  async find() {
    const text = this.search.value.trim();
    if (!text) {
      this.matches.hidden = true;
      return;
    }
    const data = await get(`/api/v1/fleet/hosts${qs({ query: text, per_page: 8 })}`);
    clear(this.matches);
    for (const host of data.hosts) {
      const pick = h("button", { type: "button", role: "option" },
        h("span", {}, host.display_name || host.hostname), badge(host.status));
      pick.addEventListener("click", () => {
        this.addHost(host);
        this.search.value = "";
        this.matches.hidden = true;
        this.search.focus();
      });
      this.matches.append(pick);
    }
    if (!data.hosts.length) this.matches.append(h("div", { class: "empty" }, "No host matches"));
    this.matches.hidden = false;
  }

  addHost(host) {
    this.hosts.set(host.id, host);
    this.changed();
  }

  /** The `targets` of POST /api/v1/fleet/queries/run. */
  targets() {
    if (this.all.checked) return [{ type: "all" }];
    return [
      ...[...this.hosts.keys()].map((id) => ({ type: "host", id })),
      ...[...this.labels.keys()].map((id) => ({ type: "label", id })),
      ...[...this.teams.keys()].map((id) => ({ type: "team", id })),
    ];
  }

  changed() {
    this.renderChips();
    this.recount();
  }

  renderChips() {
    clear(this.chips);
    const chip = (text, remove) => h("span", { class: "chip" }, text,
      h("button", { type: "button", "aria-label": `Remove ${text}`, onclick: remove }, "×"));
    for (const [id, host] of this.hosts) {
      this.chips.append(chip(host.display_name || host.hostname, () => { this.hosts.delete(id); this.changed(); }));
    }
    for (const [id, label] of this.labels) {
      this.chips.append(chip(`label: ${label.name}`, () => { this.labels.delete(id); this.changed(); }));
    }
    for (const [id, team] of this.teams) {
      this.chips.append(chip(`team: ${team.name}`, () => { this.teams.delete(id); this.changed(); }));
    }
    const disabled = this.all.checked;
    this.search.disabled = disabled;
    this.chips.hidden = disabled;
  }

  async recount() {
    const total = async (params) => (await get(`/api/v1/fleet/hosts${qs({ ...params, per_page: 1 })}`)).count;
    let text;
    if (this.all.checked) {
      const [hosts, online] = await Promise.all([total({}), total({ status: "online" })]);
      text = [h("b", {}, fmtNumber(hosts)), ` hosts targeted · `, h("b", {}, fmtNumber(online)), " online"];
      this.selected = hosts;
    } else if (this.hosts.size || this.labels.size || this.teams.size) {
      // Each chosen host's current status; labels and teams add their members.
      let hosts = this.hosts.size;
      let online = 0;
      await Promise.all([...this.hosts.keys()].map(async (id) => {
        const host = (await get(`/api/v1/fleet/hosts/${id}`)).host;
        this.hosts.set(id, host);
        if (host.status === "online") online += 1;
      }));
      for (const team of this.teams.keys()) {
        hosts += await total({ team_id: team });
        online += await total({ team_id: team, status: "online" });
      }
      for (const label of this.labels.values()) hosts += label.count ?? label.host_count ?? 0;
      const approx = this.labels.size || this.teams.size ? "up to " : "";
      text = [approx, h("b", {}, fmtNumber(hosts)), ` hosts targeted · `, h("b", {}, fmtNumber(online)), " online"];
      this.selected = hosts;
    } else {
      text = ["No targets selected"];
      this.selected = 0;
    }
    this.count.replaceChildren(...text);
  }
}
