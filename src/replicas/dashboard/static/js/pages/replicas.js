// The replicas list: filters (status, source, environment), search and pages answered by the server, and
// live status from the status-events stream (no polling); the create dialog.
import { useEffect, useRef, useState } from "preact/hooks";
import { html } from "../html.js";
import { replicas, environments } from "../api.js";
import { ErrorBox, Field, Loading, Modal, StatusBadge, ago, Empty } from "../components/ui.js";

const STATUSES = ["active", "preparing", "sleeping", "archived", "error"];
const SOURCES = ["api", "dashboard", "slack", "linear", "github", "gitlab", "automation"];
export const AGENTS = ["claude", "codex", "cursor", "opencode", "pi"];
const PAGE_SIZE = 50;

export function ReplicasPage() {
  const [filters, setFilters] = useState({ status: "", source: "", environment_id: "", q: "" });
  const [page, setPage] = useState(1);
  const [result, setResult] = useState(null);
  const [error, setError] = useState(null);
  const [envs, setEnvs] = useState([]);
  const [creating, setCreating] = useState(false);
  const [live, setLive] = useState(false);
  const request = useRef(0);
  // The latest status frame of each replica this tab was told of (a tab joining late is handed them by the
  // shared stream before its own read of the list may be back): laid over every page read, so a read older than
  // the stream cannot undo a change, and a deleted replica stays gone.
  const latest = useRef(new Map());
  const shown = useRef(null);
  const overlay = (answer) => answer && ({ ...answer, replicas: answer.replicas
    .filter((row) => latest.current.get(row.id)?.type !== "replica.deleted")
    .map((row) => (latest.current.has(row.id) ? { ...row, ...latest.current.get(row.id).replica } : row)) });
  const show = (answer) => { shown.current = answer; setResult(answer); };

  async function load() {
    const mine = ++request.current;
    try {
      const answer = await replicas.search({ ...filters, page, limit: PAGE_SIZE });
      if (mine === request.current) { show(overlay(answer)); setError(null); }
    } catch (failure) {
      if (mine === request.current) setError(failure);
    }
  }
  const loadLatest = useRef(load);
  loadLatest.current = load;
  useEffect(() => { load(); }, [filters, page]);
  useEffect(() => { environments.list("all").then(setEnvs).catch(() => setEnvs([])); }, []);

  // Live status, one stream for all of this profile's tabs: rows in view change in place and a deleted one
  // leaves at once; a replica that appears or goes away reloads the page (debounced) for the totals and pages.
  const reloadSoon = useRef(null);
  useEffect(() => replicas.statusEvents((event) => {
    if (!event.replica?.id) return;
    latest.current.set(event.replica.id, event);
    const inView = shown.current?.replicas.some((row) => row.id === event.replica.id);
    if (shown.current) show(overlay(shown.current));
    if ((event.type === "replica.created" && shown.current && !inView) || (event.type === "replica.deleted" && inView)) {
      clearTimeout(reloadSoon.current);
      reloadSoon.current = setTimeout(() => loadLatest.current(), 300);
    }
  }, { onOpen: () => setLive(true), onError: () => setLive(false) }), []);

  const set = (key) => (e) => { setPage(1); setFilters({ ...filters, [key]: e.target.value }); };
  const envName = Object.fromEntries(envs.map((e) => [e.id, e.name]));
  return html`<section class="page">
    <div class="page-head"><h1>Replicas</h1>
      <span class=${live ? "live on" : "live"} title="Status updates">${live ? "● live" : "○ connecting"}</span>
      <button type="button" class="primary" onClick=${() => setCreating(true)}>New replica</button></div>
    <form class="filters" role="search" onSubmit=${(e) => e.preventDefault()}>
      <${Field} label="Search"><input type="search" name="q" placeholder="Name" value=${filters.q} onInput=${set("q")} /><//>
      <${Field} label="Status"><select name="status" value=${filters.status} onChange=${set("status")}>
        <option value="">Any</option>${STATUSES.map((s) => html`<option value=${s}>${s}</option>`)}</select><//>
      <${Field} label="Source"><select name="source" value=${filters.source} onChange=${set("source")}>
        <option value="">Any</option>${SOURCES.map((s) => html`<option value=${s}>${s}</option>`)}</select><//>
      <${Field} label="Environment"><select name="environment_id" value=${filters.environment_id} onChange=${set("environment_id")}>
        <option value="">Any</option>${envs.map((e) => html`<option value=${e.id}>${e.name}</option>`)}</select><//>
    </form>
    <${ErrorBox} error=${error} retry=${load} />
    ${!result && !error ? html`<${Loading} what="Loading replicas" />` : null}
    ${result && result.replicas.length === 0 ? html`<${Empty}>No replicas${filters.q || filters.status || filters.source || filters.environment_id ? " match these filters" : " yet: create one"}.<//>` : null}
    ${result && result.replicas.length ? html`<table class="list" aria-label="Replicas">
      <thead><tr><th scope="col">Name</th><th scope="col">Status</th><th scope="col">Source</th>
        <th scope="col">Environment</th><th scope="col">Repositories</th><th scope="col">Last activity</th></tr></thead>
      <tbody>${result.replicas.map((r) => html`<tr key=${r.id} data-replica=${r.id}>
        <td><a href=${`#/replicas/${r.id}`}>${r.name}</a></td>
        <td><${StatusBadge} status=${r.status} /></td><td>${r.source}</td>
        <td>${envName[r.environment_id] || "—"}</td>
        <td>${r.repositories.map((repo) => repo.name).join(", ") || "—"}</td>
        <td>${ago(r.last_activity_at || r.created_at)}</td></tr>`)}</tbody></table>
      <nav class="pager" aria-label="Pages">
        <button type="button" disabled=${page <= 1} onClick=${() => setPage(page - 1)}>Previous</button>
        <span>Page ${result.page} of ${Math.max(result.total_pages, 1)} · ${result.total} replicas</span>
        <button type="button" disabled=${page >= result.total_pages} onClick=${() => setPage(page + 1)}>Next</button>
      </nav>` : null}
    <${CreateReplica} open=${creating} envs=${envs} onClose=${() => setCreating(false)} />
  </section>`;
}

function CreateReplica({ open, envs, onClose }) {
  const [form, setForm] = useState({ name: "", environment_id: "", coding_agent: "claude", model: "", plan_mode: false, message: "" });
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    if (open) setForm((f) => ({ ...f, name: f.name || `replica-${Math.random().toString(36).slice(2, 8)}`,
      environment_id: f.environment_id || (envs.find((e) => !e.is_global) || envs[0] || {}).id || "" }));
  }, [open, envs]);
  const set = (key) => (e) => setForm({ ...form, [key]: e.target.type === "checkbox" ? e.target.checked : e.target.value });
  async function submit(event) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const body = { name: form.name.trim(), message: form.message, coding_agent: form.coding_agent, plan_mode: form.plan_mode };
      if (form.environment_id) body.environment_id = form.environment_id;
      if (form.model.trim()) body.model = form.model.trim();
      const created = await replicas.create(body);
      onClose();
      location.hash = `#/replicas/${created.replica.id}`;
    } catch (failure) {
      setError(failure);
    } finally {
      setBusy(false);
    }
  }
  return html`<${Modal} title="New replica" open=${open} onClose=${onClose}>
    <form class="stack" onSubmit=${submit}>
      <${Field} label="Name" hint="No spaces"><input name="name" required pattern="\\S+" value=${form.name} onInput=${set("name")} /><//>
      <${Field} label="Environment"><select name="environment_id" value=${form.environment_id} onChange=${set("environment_id")}>
        ${envs.map((e) => html`<option value=${e.id}>${e.name}</option>`)}</select><//>
      <div class="row">
        <${Field} label="Agent"><select name="coding_agent" value=${form.coding_agent} onChange=${set("coding_agent")}>
          ${AGENTS.map((a) => html`<option value=${a}>${a}</option>`)}</select><//>
        <${Field} label="Model" hint="Optional, e.g. sonnet"><input name="model" value=${form.model} onInput=${set("model")} /><//>
      </div>
      <label class="check"><input type="checkbox" name="plan_mode" checked=${form.plan_mode} onChange=${set("plan_mode")} /> Plan mode</label>
      <${Field} label="First message"><textarea name="message" required rows="5" value=${form.message} onInput=${set("message")}></textarea><//>
      <${ErrorBox} error=${error} />
      <div class="actions"><button type="button" onClick=${onClose}>Cancel</button>
        <button type="submit" class="primary" disabled=${busy}>${busy ? "Creating…" : "Create"}</button></div>
    </form>
  <//>`;
}
