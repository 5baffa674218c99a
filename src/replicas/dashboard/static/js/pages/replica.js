// One replica: its chats as tabs with the transcript streaming live (the replica's event stream from its
// first event, resumed with Last-Event-ID after a drop), the composer, queue and interrupt; the diff per
// repository, the terminal, hook logs, canvas files, pull requests and previews; sleep, wake, archive, delete.
import { Component } from "preact";
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import { html } from "../html.js";
import { replicas } from "../api.js";
import { ConfirmButton, ErrorBox, Loading, Loaded, StatusBadge, useLoad, Field, when } from "../components/ui.js";
import { Markdown } from "../components/markdown.js";
import { Transcript } from "../components/transcript.js";
import { DiffView } from "../components/diff.js";
import { TerminalPanel } from "../components/terminal.js";
import { AGENTS } from "./replicas.js";

const THINKING = ["", "low", "medium", "high", "xhigh", "max"];
// The events after which a chat's queue may differ (not the deltas: a turn streams many, and each tab would
// fetch the queue for every one).
const QUEUE_CHANGES = new Set(["chat.turn.accepted", "chat.turn.started", "chat.turn.completed", "chat.interrupted"]);
const VIEWS = [["chat", "Chat"], ["diff", "Diff"], ["terminal", "Terminal"], ["hooks", "Hook logs"], ["canvas", "Canvas"]];

function useReplicaStream(replicaId, onChange) {
  // All chats' transcripts, fed by one event stream that starts at the replica's first event. Redraws wait for
  // the next animation frame, so a burst of events costs one; a text delta redraws only its transcript's log
  // (its subscribers), the other events (chats, repositories, the connection) the page.
  const state = useRef({ transcripts: new Map(), chats: new Map(), repos: null, connected: false });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    const current = state.current;
    let frame = 0;
    let pageChanged = false;
    const changedTranscripts = new Set();
    const flush = () => {
      frame = 0;
      for (const transcript of changedTranscripts) transcript.notify();
      changedTranscripts.clear();
      if (pageChanged) { pageChanged = false; setTick((t) => t + 1); }
    };
    const changed = (transcript) => {
      if (transcript) changedTranscripts.add(transcript); else pageChanged = true;
      if (!frame) frame = requestAnimationFrame(flush);
    };
    const stop = replicas.events(replicaId, (event) => {
      const payload = event.payload || {};
      if (event.type === "chat.turn.delta") {
        let transcript = current.transcripts.get(payload.chatId);
        if (!transcript) {
          transcript = new Transcript();
          current.transcripts.set(payload.chatId, transcript);
          changed(null); // the chat view has no transcript to subscribe to yet
        }
        transcript.add(payload.event);
        changed(transcript);
      } else {
        if (event.type === "chat.created" || event.type === "chat.updated") {
          current.chats.set(payload.chat.id, payload.chat);
        } else if (event.type === "chat.deleted") {
          current.chats.delete(payload.chatId);
        } else if (event.type === "repo.status.changed" || event.type === "repo.discovered") {
          current.repos = payload.repos;
        }
        changed(null);
      }
      onChange?.(event);
    }, { lastEventId: "0", shared: true, onOpen: () => { current.connected = true; changed(null); },
      onError: () => { current.connected = false; changed(null); } });
    return () => { stop(); cancelAnimationFrame(frame); };
  }, [replicaId]);
  return [state.current, tick];
}

export function ReplicaPage({ replicaId }) {
  const [replica, replicaState] = useLoad(async () => (await replicas.get(replicaId)).replica, [replicaId]);
  const [view, setView] = useState("chat");
  const [activeChat, setActiveChat] = useState(null);
  const queueReload = useRef(() => {});
  const [live] = useReplicaStream(replicaId, (event) => {
    if (QUEUE_CHANGES.has(event.type)) queueReload.current(event.payload?.chatId);
    if (event.type === "chat.created" || event.type === "engine.ready") replicaState.reload();
  });

  if (replicaState.error && !replica) return html`<${ErrorBox} error=${replicaState.error} retry=${replicaState.reload} />`;
  if (!replica) return html`<${Loading} what="Loading replica" />`;

  const chats = mergeChats(replica.chats || [], live.chats);
  const chat = chats.find((c) => c.id === activeChat) || chats[0];
  return html`<section class="page">
    <div class="page-head">
      <h1>${replica.name}</h1><${StatusBadge} status=${replica.status} />
      <span class=${live.connected ? "live on" : "live"}>${live.connected ? "● live" : "○ reconnecting"}</span>
      <div class="actions"><${Lifecycle} replica=${replica} reload=${replicaState.reload} /></div>
    </div>
    ${replica.status === "error" ? html`<${ErrorBox} error=${{ message: "This replica is in error", details: replica.config?.provisioning_error?.message }} />` : null}
    <div class="tabs" role="tablist" aria-label="Replica views">
      ${VIEWS.map(([key, label]) => html`<button type="button" role="tab" id=${`view-${key}`} aria-selected=${view === key}
        onClick=${() => setView(key)}>${label}</button>`)}
    </div>
    <div class="replica-layout">
      <div role="tabpanel" aria-labelledby=${`view-${view}`}>
        ${view === "chat" ? html`<${ChatView} replica=${replica} chats=${chats} chat=${chat} live=${live}
            onSelect=${setActiveChat} queueReload=${queueReload} />` : null}
        ${view === "diff" ? html`<${DiffPanel} replicaId=${replicaId} />` : null}
        ${view === "terminal" ? html`<${TerminalPanel} workspaceId=${replicaId} />` : null}
        ${view === "hooks" ? html`<${HooksPanel} replicaId=${replicaId} />` : null}
        ${view === "canvas" ? html`<${CanvasPanel} replicaId=${replicaId} />` : null}
      </div>
      <aside class="side" aria-label="Replica details">
        <${Repositories} replica=${replica} repos=${live.repos} />
        <${Previews} replicaId=${replicaId} />
        <section><h2>Details</h2><dl>
          <dt>Source</dt><dd>${replica.source}</dd><dt>Created</dt><dd>${when(replica.created_at)}</dd>
          <dt>Last activity</dt><dd>${when(replica.last_activity_at)}</dd></dl></section>
      </aside>
    </div>
  </section>`;
}

function mergeChats(fromGet, live) {
  const byId = new Map(fromGet.map((c) => [c.id, { id: c.id, provider: c.provider, title: c.title, processing: c.processing }]));
  for (const [id, c] of live) byId.set(id, { id, provider: c.provider, title: c.title, processing: c.processing });
  return [...byId.values()];
}

function Lifecycle({ replica, reload }) {
  const act = (action) => async () => { await action(replica.id); await reload(); };
  const asleep = replica.status === "sleeping" || replica.status === "archived";
  return html`
    ${asleep ? html`<${ConfirmButton} label="Wake" question=${`Wake ${replica.name}?`} onConfirm=${act(replicas.wake)} />`
      : html`<${ConfirmButton} label="Sleep" question=${`Put ${replica.name} to sleep? Its processes stop; files are kept.`}
          disabled=${replica.status !== "active"} onConfirm=${act(replicas.sleep)} />`}
    <${ConfirmButton} label="Archive" question=${`Archive ${replica.name}? It can be woken later.`}
      disabled=${replica.status === "archived" || replica.status === "preparing"} onConfirm=${act(replicas.archive)} />
    <${ConfirmButton} label="Delete" danger question=${`Delete ${replica.name} and its workspace for good?`}
      onConfirm=${async () => { await replicas.remove(replica.id); location.hash = "#/replicas"; }} />`;
}

function ChatView({ replica, chats, chat, live, onSelect, queueReload }) {
  const transcript = chat ? live.transcripts.get(chat.id) : null;
  return html`<div>
    <div class="tabs" role="tablist" aria-label="Chats">
      ${chats.map((c) => html`<button type="button" role="tab" aria-selected=${chat && c.id === chat.id}
        onClick=${() => onSelect(c.id)}>${c.title || c.provider}${c.processing ? " ⋯" : ""}</button>`)}
    </div>
    ${chat ? html`<${TranscriptLog} key=${chat.id} transcript=${transcript} chat=${chat} replica=${replica} />
      ${replica.status === "active" ? html`<${Queue} replicaId=${replica.id} chat=${chat} queueReload=${queueReload} />` : null}
      <${Composer} replica=${replica} chat=${chat} />`
      : html`<p class="state">${replica.status === "preparing" ? "The workspace is starting…" : "No chats."}</p>`}
  </div>`;
}

// The log of one chat. It redraws on its transcript's notifications alone (new items are drawn, the others
// skipped), and stays scrolled to the end while the reader is there.
function TranscriptLog({ transcript, chat, replica }) {
  const [, redraw] = useState(0);
  const log = useRef(null);
  const atEnd = useRef(true);
  useLayoutEffect(() => transcript?.subscribe(() => {
    // Read before the new items are drawn, while the layout is still clean (no forced reflow).
    const element = log.current;
    atEnd.current = !element || element.scrollTop + element.clientHeight >= element.scrollHeight - 40;
    redraw((n) => n + 1);
  }), [transcript]);
  useLayoutEffect(() => {
    if (atEnd.current && log.current) log.current.scrollTop = log.current.scrollHeight;
  });
  const items = transcript ? transcript.items : [];
  return html`<div class="transcript" role="log" aria-live="polite" aria-label=${`Transcript of ${chat.title}`} ref=${log}>
    ${items.length === 0 ? html`<p class="state">${replica.status === "preparing" ? "The workspace is starting…" : "No messages yet."}</p>` : null}
    ${items.map((item, index) => html`<${TranscriptItem} key=${index} item=${item} revision=${item.revision || 0} />`)}
    ${chat.processing ? html`<p class="state" role="status">Working…</p>` : null}
  </div>`;
}

// Drawn once per item and revision: a new event re-renders only what it added or changed, not the whole log.
class TranscriptItem extends Component {
  shouldComponentUpdate(next) {
    return next.item !== this.props.item || next.revision !== this.props.revision;
  }

  render({ item }) {
    return html`<${Item} item=${item} />`;
  }
}

function Item({ item }) {
  if (item.kind === "user") return html`<div class="msg user">${item.text}</div>`;
  if (item.kind === "assistant") return html`<div class="msg assistant"><${Markdown} text=${item.text} /></div>`;
  if (item.kind === "thinking") return html`<details class="tool"><summary>Thinking</summary><pre>${item.text}</pre></details>`;
  if (item.kind === "result") return html`<p class=${`msg result ${item.ok ? "" : "failed"}`}>${item.text}</p>`;
  const input = item.input ? JSON.stringify(item.input, null, 2) : null;
  return html`<details class=${`tool ${item.isError ? "failed" : ""}`}>
    <summary>${item.summary}</summary>
    ${input ? html`<pre>${input}</pre>` : null}
    ${item.output != null ? html`<pre>${item.output}</pre>` : html`<p class="hint">Running…</p>`}
  </details>`;
}

function Queue({ replicaId, chat, queueReload }) {
  const [queue, state] = useLoad(() => replicas.queue(replicaId, chat.id).then((q) => q.queue), [replicaId, chat.id]);
  useEffect(() => { queueReload.current = (chatId) => { if (!chatId || chatId === chat.id) state.reload(); }; }, [chat.id, state.reload]);
  const change = (call) => async () => { try { state.set((await call()).queue); } catch { state.reload(); } };
  if (!queue || queue.length === 0) return null;
  return html`<section class="card" aria-label="Queued messages"><h2>Queue (${queue.length})</h2>
    <ol class="queue">${queue.map((entry, index) => html`<li key=${entry.id}><span title=${entry.message}>${entry.message}</span>
      <span>
        <button type="button" aria-label="Move up" disabled=${index === 0}
          onClick=${change(() => replicas.reorderQueued(replicaId, chat.id, entry.id, index - 1))}>↑</button>
        <button type="button" aria-label="Move down" disabled=${index === queue.length - 1}
          onClick=${change(() => replicas.reorderQueued(replicaId, chat.id, entry.id, index + 1))}>↓</button>
        <button type="button" aria-label="Remove from queue" onClick=${change(() => replicas.removeQueued(replicaId, chat.id, entry.id))}>✕</button>
      </span></li>`)}</ol></section>`;
}

function Composer({ replica, chat }) {
  const [form, setForm] = useState({ message: "", agent: chat.provider, model: "", plan_mode: false, thinking_level: "" });
  const [sent, setSent] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  useEffect(() => setForm((f) => ({ ...f, agent: chat.provider })), [chat.id]);
  const set = (key) => (e) => setForm({ ...form, [key]: e.target.type === "checkbox" ? e.target.checked : e.target.value });
  async function send(event) {
    event.preventDefault();
    if (!form.message.trim()) return;
    setBusy(true);
    setError(null);
    try {
      const body = { message: form.message, plan_mode: form.plan_mode };
      if (form.agent === chat.provider) body.chat_id = chat.id; else body.coding_agent = form.agent;
      if (form.model.trim()) body.model = form.model.trim();
      if (form.thinking_level) body.thinking_level = form.thinking_level;
      const answer = await replicas.send(replica.id, body);
      setSent(answer);
      setForm({ ...form, message: "" });
    } catch (failure) {
      setError(failure);
    } finally {
      setBusy(false);
    }
  }
  async function interrupt() {
    try { await replicas.interrupt(replica.id, chat.id); } catch (failure) { setError(failure); }
  }
  return html`<form class="composer" onSubmit=${send} aria-label="Send a message">
    <${Field} label="Message"><textarea name="message" rows="3" value=${form.message} onInput=${set("message")}
      onKeyDown=${(e) => { if (e.key === "Enter" && (e.metaKey || e.ctrlKey)) send(e); }}
      placeholder="Ask the agent… (Ctrl+Enter sends)"></textarea><//>
    <div class="row">
      <${Field} label="Agent"><select name="agent" value=${form.agent} onChange=${set("agent")}>
        ${AGENTS.map((a) => html`<option value=${a}>${a}</option>`)}</select><//>
      <${Field} label="Model"><input name="model" value=${form.model} onInput=${set("model")} placeholder="default" /><//>
      <${Field} label="Thinking"><select name="thinking_level" value=${form.thinking_level} onChange=${set("thinking_level")}>
        ${THINKING.map((t) => html`<option value=${t}>${t || "default"}</option>`)}</select><//>
      <label class="check"><input type="checkbox" name="plan_mode" checked=${form.plan_mode} onChange=${set("plan_mode")} /> Plan mode</label>
      <div class="actions" style="margin-left:auto">
        ${chat.processing ? html`<button type="button" class="danger" onClick=${interrupt}>Interrupt</button>` : null}
        <button type="submit" class="primary" disabled=${busy}>${busy ? "Sending…" : "Send"}</button></div>
    </div>
    ${sent ? html`<p class="hint" role="status">${sent.status === "queued" ? `Queued at position ${sent.position}` : sent.status === "waking" ? "Waking the replica; the message will follow" : "Sent"}</p>` : null}
    <${ErrorBox} error=${error} />
  </form>`;
}

function DiffPanel({ replicaId }) {
  const [statuses, state] = useLoad(async () => (await replicas.get(replicaId, "diffs")).replica.repository_statuses, [replicaId]);
  return html`<div><div class="row"><h2>Changes</h2><button type="button" onClick=${state.reload}>Refresh</button></div>
    <${Loaded} state=${state} data=${statuses} empty="No repositories in this replica.">${(list) => list.map((repo) => html`
      <section><h3>${repo.repository} <small class="hint">${repo.branch} vs ${repo.default_branch}
        ${repo.git_diff ? ` · +${repo.git_diff.added} −${repo.git_diff.removed}` : ""}</small></h3>
        <${DiffView} repository=${repo.repository} diff=${repo.git_diff?.full_diff || ""} /></section>`)}<//>
  </div>`;
}

function HooksPanel({ replicaId }) {
  const [hooks, state] = useLoad(() => replicas.hooks(replicaId), [replicaId]);
  return html`<${Loaded} state=${state} data=${hooks}>${(data) => {
    const logs = [...data.warm_hooks.logs.map((l) => ({ ...l, phase: "Warm hook" })), ...data.start_hooks.logs.map((l) => ({ ...l, phase: "Start hook" }))];
    if (!logs.length) return html`<p class="state empty">No hooks have run in this replica.</p>`;
    return logs.map((log) => html`<section class="card"><h3>${log.phase}: ${log.hookName}
      <span class=${`badge ${log.exitCode === 0 ? "status-active" : "status-error"}`}>exit ${log.exitCode}${log.timedOut ? ", timed out" : ""}</span></h3>
      <p class="hint">${when(log.executedAt)}</p><pre class="hook-output">${log.output}</pre></section>`);
  }}<//>`;
}

function CanvasPanel({ replicaId }) {
  const [items, state] = useLoad(async () => (await replicas.canvas(replicaId)).items, [replicaId]);
  const [open, setOpen] = useState(null);
  const [file, setFile] = useState(null);
  useEffect(() => { if (open) { setFile(null); replicas.canvasFile(replicaId, open).then(setFile).catch((e) => setFile({ error: e })); } }, [open]);
  return html`<${Loaded} state=${state} data=${items} empty="No canvas files: the agent writes them to ~/.replicas/canvas/.">${(list) => html`
    <ul>${list.map((item) => html`<li><button type="button" class="link" onClick=${() => setOpen(item.filename)}>${item.filename}</button>
      <small class="hint"> ${item.kind}, ${item.sizeBytes} bytes</small></li>`)}</ul>
    ${open && !file ? html`<${Loading} />` : null}
    ${file?.error ? html`<${ErrorBox} error=${file.error} />` : null}
    ${file && !file.error ? html`<${CanvasFile} file=${file} />` : null}`}<//>`;
}

function CanvasFile({ file }) {
  if (file.tooLarge) return html`<p class="state">Too large to show.</p>`;
  if (file.kind === "markdown") return html`<${Markdown} text=${file.content} />`;
  if (file.kind === "html") return html`<iframe class="canvas" sandbox="" title=${file.filename} srcdoc=${file.content}></iframe>`;
  if (file.kind === "image") return html`<img src=${`data:${file.mimeType};base64,${file.base64}`} alt=${file.filename} style="max-width:100%" />`;
  return html`<pre class="hook-output">${file.content ?? "(binary)"}</pre>`;
}

function Repositories({ replica, repos }) {
  const statuses = repos ? repos.map((r) => ({ repository: r.name, branch: r.currentBranch, pr_urls: r.prUrls || [] }))
    : (replica.repository_statuses || []);
  return html`<section><h2>Repositories</h2>
    ${statuses.length === 0 ? html`<p class="hint">None.</p>` : html`<ul>${statuses.map((r) => html`<li>${r.repository}
      <small class="hint"> on ${r.branch}</small>
      ${(r.pr_urls || []).map((url) => html`<div><a href=${url} target="_blank" rel="noopener noreferrer">Pull request ↗</a></div>`)}</li>`)}</ul>`}
  </section>`;
}

function Previews({ replicaId }) {
  const [previews, state] = useLoad(async () => (await replicas.previews(replicaId)).previews, [replicaId]);
  return html`<section><h2>Previews</h2>
    ${state.error ? html`<p class="hint">Not available.</p>` : !previews ? html`<p class="hint">Loading…</p>`
      : previews.length === 0 ? html`<p class="hint">None.</p>`
      : html`<ul>${previews.map((p) => html`<li><a href=${p.publicUrl} target="_blank" rel="noopener noreferrer">Port ${p.port} ↗</a></li>`)}</ul>`}
  </section>`;
}
