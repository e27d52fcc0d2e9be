// A SQL editor: a plain <textarea> (so typing, selection, undo and accessibility are the
// browser's own) over a highlighted copy of its text (highlight.js, vendored), with a line
// gutter, Ctrl/Cmd+Enter to run, and a validation error marked at its line and column.
import hljs from "../vendor/highlightjs/core.min.js";
import sql from "../vendor/highlightjs/sql.min.js";
import { h, show } from "./dom.js";

hljs.registerLanguage("sql", sql);

const LINE_HEIGHT = 20;
const MIN_LINES = 6;
const MAX_LINES = 22;

/** The character offset of a 1-based line and column in `text`. */
export function offsetOf(text, line, column) {
  let offset = 0;
  for (let i = 1; i < line; i += 1) {
    const next = text.indexOf("\n", offset);
    if (next < 0) return text.length;
    offset = next + 1;
  }
  return Math.min(text.length, offset + Math.max(0, column - 1));
}

/** The span to mark from `offset`: the word there, or one character. */
export function markSpan(text, offset) {
  const match = /^[A-Za-z0-9_$]+|^\S/.exec(text.slice(offset));
  return [offset, offset + (match ? match[0].length : 1)];
}

export function createSqlEditor(container, { id, label, value = "", onRun, onChange } = {}) {
  const code = h("code", { class: "language-sql" });
  const highlighted = h("pre", { class: "hl", "aria-hidden": "true" }, code);
  const marks = h("pre", { class: "marks", "aria-hidden": "true" });
  const gutter = h("pre", { class: "sql-gutter", "aria-hidden": "true" });
  const errorBox = h("div", { class: "sql-error", role: "alert", id: `${id}-error`, hidden: true });
  const textarea = h("textarea", {
    id,
    spellcheck: "false",
    autocapitalize: "off",
    autocomplete: "off",
    "aria-label": label || "SQL",
    "aria-describedby": `${id}-error`,
    wrap: "off",
  });
  const area = h("div", { class: "sql-area" }, highlighted, marks, textarea);
  const root = h("div", { class: "sql-editor" }, gutter, area);
  container.append(root, errorBox);
  let errorLine = 0;

  function render() {
    const text = textarea.value;
    // The trailing newline keeps the last line's height when the text ends with one.
    code.innerHTML = hljs.highlight(text, { language: "sql", ignoreIllegals: true }).value + "\n";
    const lines = text.split("\n").length;
    gutter.replaceChildren(
      ...Array.from({ length: lines }, (_, i) =>
        h("span", { class: i + 1 === errorLine ? "bad" : undefined }, String(i + 1))),
    );
    const visible = Math.min(MAX_LINES, Math.max(MIN_LINES, lines));
    area.style.height = `${visible * LINE_HEIGHT + 22}px`;
    syncScroll();
  }

  function syncScroll() {
    highlighted.scrollTop = marks.scrollTop = gutter.scrollTop = textarea.scrollTop;
    highlighted.scrollLeft = marks.scrollLeft = textarea.scrollLeft;
  }

  function clearError() {
    errorLine = 0;
    marks.replaceChildren();
    root.classList.remove("invalid");
    textarea.removeAttribute("aria-invalid");
    show(errorBox, "");
  }

  textarea.addEventListener("input", () => {
    clearError();
    render();
    onChange?.(textarea.value);
  });
  textarea.addEventListener("scroll", syncScroll);
  textarea.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      onRun?.();
    }
  });

  const editor = {
    root,
    textarea,
    get value() { return textarea.value; },
    set value(text) {
      textarea.value = text;
      clearError();
      render();
    },
    focus() { textarea.focus(); },
    clearError,
    /** Show `message`; with a line (1-based) and column, mark that place in the text. */
    showError(message, line, column) {
      clearError();
      root.classList.add("invalid");
      textarea.setAttribute("aria-invalid", "true");
      const where = line ? ` (line ${line}, column ${column ?? 1})` : "";
      show(errorBox, message.includes("(line ") ? message : message + where);
      if (line) {
        const text = textarea.value;
        const [start, end] = markSpan(text, offsetOf(text, line, column ?? 1));
        errorLine = line;
        marks.replaceChildren(
          text.slice(0, start),
          h("mark", { "data-line": line, "data-column": column ?? 1 }, text.slice(start, end) || " "),
          text.slice(end) + "\n",
        );
        render();
        textarea.focus();
        textarea.setSelectionRange(start, end);
      }
    },
  };
  editor.value = value;
  return editor;
}
