// A repository's diff as a file tree and a highlighted view, unified (one column, old and new numbers) or split
// (old and new side by side), as the person last chose (kept in localStorage). Parsing and pairing are pure:
// `parseDiff(text)` -> [{path, status, lines}], `splitRows(lines)` -> [{kind: "hunk"} | {left, right}].
import { useEffect, useState } from "preact/hooks";
import { html } from "../html.js";
import { highlight } from "./markdown.js";

const LANGUAGES = { py: "python", js: "javascript", mjs: "javascript", ts: "typescript", tsx: "typescript",
  jsx: "javascript", json: "json", md: "markdown", sh: "bash", yml: "yaml", yaml: "yaml", css: "css",
  html: "xml", go: "go", rs: "rust", java: "java", rb: "ruby", c: "c", h: "c", cpp: "cpp", toml: "ini", sql: "sql" };

export function parseDiff(text) {
  const files = [];
  let file = null;
  let oldLine = 0;
  let newLine = 0;
  for (const line of (text || "").split("\n")) {
    if (line.startsWith("diff --git ")) {
      const match = line.match(/^diff --git a\/(.*) b\/(.*)$/);
      file = { path: match ? match[2] : line.slice(11), status: "modified", lines: [] };
      files.push(file);
    } else if (!file) {
      continue;
    } else if (line.startsWith("new file mode")) file.status = "added";
    else if (line.startsWith("deleted file mode")) file.status = "deleted";
    else if (line.startsWith("rename to ")) { file.path = line.slice(10); file.status = "renamed"; }
    else if (line.startsWith("@@")) {
      const match = line.match(/^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@/);
      oldLine = match ? Number(match[1]) : 0;
      newLine = match ? Number(match[2]) : 0;
      file.lines.push({ kind: "hunk", text: line });
    } else if (line.startsWith("+++") || line.startsWith("---") || line.startsWith("index ") || line.startsWith("similarity")
               || line.startsWith("rename from") || line.startsWith("old mode") || line.startsWith("new mode")) {
      continue;
    } else if (line.startsWith("+")) file.lines.push({ kind: "add", text: line.slice(1), newNo: newLine++ });
    else if (line.startsWith("-")) file.lines.push({ kind: "del", text: line.slice(1), oldNo: oldLine++ });
    else if (line.startsWith(" ")) file.lines.push({ kind: "ctx", text: line.slice(1), oldNo: oldLine++, newNo: newLine++ });
    else if (line.startsWith("Binary files")) file.lines.push({ kind: "hunk", text: line });
  }
  return files;
}

const MARKERS = { add: "+", del: "-", ctx: " " };
const SPOKEN = { add: "added", del: "removed", ctx: "" };

function Code({ line, language }) {
  return html`<span aria-hidden="true">${MARKERS[line.kind]}</span>${SPOKEN[line.kind]
    ? html`<span class="visually-hidden">${SPOKEN[line.kind]}: </span>` : null}<span
    dangerouslySetInnerHTML=${{ __html: highlight(line.text, language) }} />`;
}

function UnifiedView({ file, language }) {
  return html`<table class="unified" aria-label=${`Changes in ${file.path}`}>
    <thead class="visually-hidden"><tr><th scope="col">Old line</th><th scope="col">New line</th><th scope="col">Code</th></tr></thead>
    <tbody>${file.lines.map((line) => line.kind === "hunk"
      ? html`<tr class="hunk"><td class="n"></td><td class="n"></td><td>${line.text}</td></tr>`
      : html`<tr class=${line.kind}><td class="n">${line.oldNo ?? ""}</td><td class="n">${line.newNo ?? ""}</td>
          <td><${Code} line=${line} language=${language} /></td></tr>`)}
  </tbody></table>`;
}

// Side by side: context lines face themselves; within a change, the n-th removed line faces the n-th added one,
// and the longer side's rest faces blanks (as GitHub and GitLab pair them).
export function splitRows(lines) {
  const rows = [];
  let removed = [];
  let added = [];
  const flush = () => {
    for (let i = 0; i < Math.max(removed.length, added.length); i++) rows.push({ left: removed[i] || null, right: added[i] || null });
    removed = [];
    added = [];
  };
  for (const line of lines) {
    if (line.kind === "del") {
      if (added.length) flush();
      removed.push(line);
    } else if (line.kind === "add") added.push(line);
    else {
      flush();
      rows.push(line.kind === "hunk" ? line : { left: line, right: line });
    }
  }
  flush();
  return rows;
}

function Side({ line, number, language }) {
  if (!line) return html`<td class="n empty"></td><td class="empty"></td>`;
  return html`<td class=${`n ${line.kind}`}>${line[number]}</td><td class=${line.kind}><${Code} line=${line} language=${language} /></td>`;
}

function SplitView({ file, language }) {
  return html`<table class="split" aria-label=${`Changes in ${file.path}, side by side`}>
    <colgroup><col class="n" /><col /><col class="n" /><col /></colgroup>
    <thead><tr><th scope="colgroup" colspan="2">Old</th><th scope="colgroup" colspan="2">New</th></tr></thead>
    <tbody>${splitRows(file.lines).map((row) => row.kind === "hunk"
      ? html`<tr class="hunk"><td colspan="4">${row.text}</td></tr>`
      : html`<tr><${Side} line=${row.left} number="oldNo" language=${language} /><${Side} line=${row.right} number="newNo"
          language=${language} /></tr>`)}
  </tbody></table>`;
}

// The view mode, shared by every diff on the page and remembered across visits.
const MODE_KEY = "replicas.diff.mode";
const modeListeners = new Set();

function storedMode() {
  try { return localStorage.getItem(MODE_KEY) === "split" ? "split" : "unified"; } catch { return "unified"; }
}

function useDiffMode() {
  const [mode, setMode] = useState(storedMode);
  useEffect(() => { modeListeners.add(setMode); return () => modeListeners.delete(setMode); }, []);
  const choose = (next) => {
    try { localStorage.setItem(MODE_KEY, next); } catch { /* private mode: this page only */ }
    modeListeners.forEach((listener) => listener(next));
  };
  return [mode, choose];
}

function ModeToggle({ repository, mode, onChange }) {
  return html`<fieldset class="diff-mode"><legend class="visually-hidden">Diff view for ${repository}</legend>
    ${[["unified", "Unified"], ["split", "Split"]].map(([value, label]) => html`<label>
      <input type="radio" name=${`diff-mode-${repository}`} value=${value} checked=${mode === value}
        onChange=${() => onChange(value)} />${label}</label>`)}
  </fieldset>`;
}

export function DiffView({ repository, diff }) {
  const files = parseDiff(diff);
  const [selected, setSelected] = useState(0);
  const [mode, setMode] = useDiffMode();
  if (!files.length) return html`<p class="state empty">No changes in ${repository}.</p>`;
  const file = files[Math.min(selected, files.length - 1)];
  const language = LANGUAGES[file.path.split(".").pop()];
  const View = mode === "split" ? SplitView : UnifiedView;
  return html`<div class="diff">
    <nav aria-label=${`Changed files in ${repository}`}><ul class="tree">
      ${files.map((f, index) => html`<li><button type="button" aria-current=${index === selected ? "true" : "false"}
        title=${f.path} onClick=${() => setSelected(index)}>${f.status === "added" ? "＋ " : f.status === "deleted" ? "− " : "• "}${f.path}</button></li>`)}
    </ul></nav>
    <div><div class="diff-head"><h3 class="mono">${file.path} <small>(${file.status})</small></h3>
      <${ModeToggle} repository=${repository} mode=${mode} onChange=${setMode} /></div>
      <${View} file=${file} language=${language} /></div>
  </div>`;
}
