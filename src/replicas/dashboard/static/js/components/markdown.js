// Markdown for agent messages and canvas files. Raw HTML in the source is shown as text, never run (an
// agent's output is untrusted), links keep to http(s) and mailto, and code blocks are highlighted.
import { Marked } from "marked";
import hljs from "highlight.js";
import { html } from "../html.js";

const escape = (text) => text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));

export function highlight(code, language) {
  try {
    if (language && hljs.getLanguage(language)) return hljs.highlight(code, { language, ignoreIllegals: true }).value;
  } catch { /* fall through to plain */ }
  return escape(code);
}

const marked = new Marked({
  gfm: true,
  breaks: false,
  renderer: {
    html({ text }) { return escape(text); },
    code({ text, lang }) {
      const language = (lang || "").split(/\s/)[0];
      return `<pre class="code"><code class="hljs">${highlight(text, language)}</code></pre>`;
    },
    link({ href, title, tokens }) {
      const safe = /^(https?:|mailto:|#|\/)/i.test(href || "") ? href : "#";
      const label = this.parser.parseInline(tokens);
      return `<a href="${escape(safe)}" rel="noopener noreferrer" target="_blank"${title ? ` title="${escape(title)}"` : ""}>${label}</a>`;
    },
    image({ href, text }) {
      const safe = /^(https?:|data:image\/)/i.test(href || "") ? href : "";
      return safe ? `<img src="${escape(safe)}" alt="${escape(text || "")}">` : escape(text || "");
    },
  },
});

// A transcript re-renders on every event; each message's HTML is computed once (the cache forgets the
// oldest entries past its size, so a long session does not grow it without end).
const rendered = new Map();
const CACHE_SIZE = 2000;

export function renderMarkdown(text) {
  const source = text || "";
  let out = rendered.get(source);
  if (out === undefined) {
    out = marked.parse(source);
    rendered.set(source, out);
    if (rendered.size > CACHE_SIZE) rendered.delete(rendered.keys().next().value);
  }
  return out;
}

export function Markdown({ text }) {
  return html`<div class="markdown" dangerouslySetInnerHTML=${{ __html: renderMarkdown(text) }} />`;
}
