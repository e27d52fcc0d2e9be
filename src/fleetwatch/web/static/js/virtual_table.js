// A virtualised table: only the rows in view (plus a few) exist in the DOM, so 100,000
// result rows scroll as smoothly as 10. Sorting by a column and filtering are done on an
// index array; the rows themselves are never copied.
import { h } from "./dom.js";

const OVERSCAN = 8;

function cellText(value) {
  if (value === undefined || value === null) return "";
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

function compare(a, b) {
  const x = Number(a);
  const y = Number(b);
  if (a !== "" && b !== "" && !Number.isNaN(x) && !Number.isNaN(y)) return x - y;
  return cellText(a).localeCompare(cellText(b));
}

export class VirtualTable {
  /** columns: [{key, title, render?(row) -> Node|string, width?}] */
  constructor(container, { rowHeight = 28, maxHeight = 420, columns = [], emptyText = "No rows yet", label = "Rows" } = {}) {
    this.rowHeight = rowHeight;
    this.maxHeight = maxHeight;
    this.emptyText = emptyText;
    this.rows = [];
    this.view = null; // indices into rows after filter and sort; null = all, in order
    this.sort = null; // {key, dir}
    this.filter = null; // row => bool
    this.head = h("div", { class: "vt-head", role: "row" });
    this.body = h("div", { class: "vt-body", role: "rowgroup" });
    this.empty = h("div", { class: "vt-empty" }, emptyText);
    this.scroller = h("div", { class: "vt", role: "table", "aria-label": label, tabindex: "0" },
      this.head, this.body, this.empty);
    container.append(this.scroller);
    this.scroller.addEventListener("scroll", () => this.refresh());
    this.pending = false;
    this.setColumns(columns);
  }

  setColumns(columns) {
    this.columns = columns;
    this.head.replaceChildren(...columns.map((column) => {
      const button = h("button", { type: "button", role: "columnheader", title: column.title },
        column.title);
      button.addEventListener("click", () => this.sortBy(column.key));
      if (this.sort?.key === column.key) {
        button.setAttribute("aria-sort", this.sort.dir > 0 ? "ascending" : "descending");
      }
      return button;
    }));
    this.widths = null;
    this.invalidate();
  }

  /** Replace the rows (the array is kept: push to it and call `changed()`). */
  setRows(rows) {
    this.rows = rows;
    this.widths = null;
    this.invalidate();
  }

  /** Rows were appended or changed: recompute the view on the next frame. */
  changed() { this.invalidate(); }

  setFilter(filter) {
    this.filter = filter;
    this.invalidate();
  }

  sortBy(key) {
    if (this.sort?.key === key) this.sort = this.sort.dir > 0 ? { key, dir: -1 } : null;
    else this.sort = { key, dir: 1 };
    this.setColumns(this.columns);
  }

  /** How many rows pass the filter. */
  get visibleCount() {
    this.recompute();
    return this.view ? this.view.length : this.rows.length;
  }

  invalidate() {
    this.dirty = true;
    this.refresh();
  }

  recompute() {
    if (!this.dirty) return;
    this.dirty = false;
    if (!this.filter && !this.sort) {
      this.view = null;
      return;
    }
    let view = [];
    for (let i = 0; i < this.rows.length; i += 1) {
      if (!this.filter || this.filter(this.rows[i])) view.push(i);
    }
    if (this.sort) {
      const { key, dir } = this.sort;
      const column = this.columns.find((c) => c.key === key);
      const value = column?.value || ((row) => row[key]);
      view = view.sort((a, b) => dir * compare(value(this.rows[a]), value(this.rows[b])));
    }
    this.view = view;
  }

  refresh() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.render();
    });
  }

  columnWidths() {
    if (this.widths && this.rows.length >= 50) return this.widths;
    const sample = this.rows.slice(0, 200);
    this.widths = this.columns.map((column) => {
      if (column.width) return `${column.width}px`;
      let longest = column.title.length + 2;
      for (const row of sample) {
        longest = Math.max(longest, cellText(column.value ? column.value(row) : row[column.key]).length);
      }
      return `${Math.min(360, Math.max(72, longest * 7.6 + 22))}px`;
    });
    return this.widths;
  }

  render() {
    this.recompute();
    const count = this.view ? this.view.length : this.rows.length;
    this.scroller.style.setProperty("--vt-cols", this.columnWidths().join(" "));
    this.scroller.setAttribute("aria-rowcount", String(count));
    this.body.style.height = `${count * this.rowHeight}px`;
    this.empty.hidden = count > 0;
    const headHeight = this.head.offsetHeight;
    // As tall as its rows, up to maxHeight; then it scrolls.
    const content = headHeight + (count ? count * this.rowHeight : this.empty.offsetHeight) + 2;
    this.scroller.style.height = `${Math.min(this.maxHeight, content)}px`;
    const top = Math.max(0, this.scroller.scrollTop - headHeight);
    const first = Math.max(0, Math.floor(top / this.rowHeight) - OVERSCAN);
    const visible = Math.ceil(this.scroller.clientHeight / this.rowHeight) + 2 * OVERSCAN;
    const last = Math.min(count, first + visible);
    const rows = [];
    for (let i = first; i < last; i += 1) {
      const row = this.rows[this.view ? this.view[i] : i];
      const cells = this.columns.map((column) => {
        const content = column.render ? column.render(row) : cellText(row[column.key]);
        const cell = h("div", { role: "cell" }, content);
        if (typeof content === "string") cell.title = content;
        return cell;
      });
      const el = h("div", { class: "vt-row", role: "row", "aria-rowindex": String(i + 1) }, cells);
      el.style.top = `${i * this.rowHeight}px`;
      rows.push(el);
    }
    this.body.replaceChildren(...rows);
  }
}
