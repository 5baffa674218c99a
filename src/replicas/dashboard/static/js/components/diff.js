// A repository's unified diff as a file tree and a highlighted view (added, removed, context lines with
// their old and new numbers). Parsing is pure: `parseDiff(text)` -> [{path, status, hunks: [lines]}].
import { useState } from "preact/hooks";
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

function FileView({ file }) {
  const language = LANGUAGES[file.path.split(".").pop()];
  return html`<table aria-label=${`Changes in ${file.path}`}><tbody>
    ${file.lines.map((line) => line.kind === "hunk"
      ? html`<tr class="hunk"><td class="n"></td><td class="n"></td><td>${line.text}</td></tr>`
      : html`<tr class=${line.kind}><td class="n">${line.oldNo ?? ""}</td><td class="n">${line.newNo ?? ""}</td>
          <td><span aria-hidden="true">${line.kind === "add" ? "+" : line.kind === "del" ? "-" : " "}</span><span
            dangerouslySetInnerHTML=${{ __html: highlight(line.text, language) }} /></td></tr>`)}
  </tbody></table>`;
}

export function DiffView({ repository, diff }) {
  const files = parseDiff(diff);
  const [selected, setSelected] = useState(0);
  if (!files.length) return html`<p class="state empty">No changes in ${repository}.</p>`;
  const file = files[Math.min(selected, files.length - 1)];
  return html`<div class="diff">
    <nav aria-label=${`Changed files in ${repository}`}><ul class="tree">
      ${files.map((f, index) => html`<li><button type="button" aria-current=${index === selected ? "true" : "false"}
        title=${f.path} onClick=${() => setSelected(index)}>${f.status === "added" ? "＋ " : f.status === "deleted" ? "− " : "• "}${f.path}</button></li>`)}
    </ul></nav>
    <div><h3 class="mono">${file.path} <small>(${file.status})</small></h3><${FileView} file=${file} /></div>
  </div>`;
}
