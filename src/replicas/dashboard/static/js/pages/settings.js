// Organization pages: API keys (org keys for admins, personal keys for users; a key is shown once, at creation,
// with a copy button), usage over time, audit log.
import { useState } from "preact/hooks";
import { html } from "../html.js";
import { apiKeys, audit, orgApiKeys, session, usage } from "../api.js";
import { ConfirmButton, ErrorBox, Field, Loaded, Loading, useLoad, when } from "../components/ui.js";

function CopyButton({ text, label }) {
  const [copied, setCopied] = useState(null);
  async function copy() {
    try { await navigator.clipboard.writeText(text); setCopied("Copied."); } catch { setCopied("Copy failed: select the key and copy it."); }
  }
  return html`<button type="button" onClick=${copy}>${label}</button>${copied ? html` <span role="status" class="hint">${copied}</span>` : null}`;
}

function NewKey({ kind, apiKey, onDone }) {
  return html`<div class="card new-key" role="status"><strong>Copy this key now; it is not shown again:</strong>
    <pre class="hook-output mono" aria-label=${`New ${kind} key`}>${apiKey.key}</pre>
    <div class="actions"><${CopyButton} text=${apiKey.key} label=${`Copy ${kind} key`} />
      <button type="button" onClick=${onDone}>Done</button></div></div>`;
}

// One list of keys with its create form: `api` is apiKeys (personal) or orgApiKeys.
function KeySection({ api, kind, title, hint }) {
  const [data, state] = useLoad(() => api.list({ limit: 100 }), []);
  const [name, setName] = useState("");
  const [created, setCreated] = useState(null);
  const [error, setError] = useState(null);
  const headingId = `keys-${kind}`;
  async function create(event) {
    event.preventDefault();
    try { setCreated((await api.create(name)).api_key); setName(""); setError(null); state.reload(); } catch (failure) { setError(failure); }
  }
  return html`<section aria-labelledby=${headingId}><h2 id=${headingId}>${title}</h2><p class="hint">${hint}</p>
    ${created ? html`<${NewKey} kind=${kind} apiKey=${created} onDone=${() => setCreated(null)} />` : null}
    <${Loaded} state=${state} data=${data?.api_keys} empty=${`No ${kind} keys.`}>${(list) => html`<table class="list" aria-label=${title}>
      <thead><tr><th scope="col">Name</th><th scope="col">Prefix</th><th scope="col">Created</th><th scope="col">Last used</th><th scope="col"><span class="hint">Actions</span></th></tr></thead>
      <tbody>${list.map((k) => html`<tr key=${k.id}><td>${k.name}</td><td class="mono">${k.key_prefix}…</td><td>${when(k.created_at)}</td><td>${when(k.last_used_at)}</td>
        <td><${ConfirmButton} label="Revoke" danger question=${`Revoke the ${kind} key ${k.name}? Clients using it stop working, and dashboard sessions signed in with it end.`}
          onConfirm=${async () => { await api.remove(k.id); state.reload(); }} /></td></tr>`)}</tbody></table>`}<//>
    <form class="row" onSubmit=${create}><${Field} label=${`New ${kind} key name`}><input name=${`${kind}_key_name`} required maxlength="255"
        value=${name} onInput=${(e) => setName(e.target.value)} /><//>
      <button type="submit" class="primary">${`Create ${kind} key`}</button></form>
    <${ErrorBox} error=${error} />
  </section>`;
}

export function ApiKeysPage() {
  const [who, state] = useLoad(async () => (await session.current()).session, []);
  return html`<section class="page"><div class="page-head"><h1>API keys</h1></div>
    ${state.error ? html`<${ErrorBox} error=${state.error} retry=${state.reload} />` : !who ? html`<${Loading} />` : html`
      ${who.role === "admin"
        ? html`<${KeySection} api=${orgApiKeys} kind="organization" title="Organization keys"
            hint="Org keys act as the organization's bot, with admin rights: workspaces they create belong to no user. Only admins see and mint them." />`
        : html`<p class="hint">Organization keys are managed by the organization's admins.</p>`}
      ${who.scope === "user"
        ? html`<${KeySection} api=${apiKeys} kind="personal" title="Personal keys" hint="Personal keys act as you, with your role." />`
        : html`<p class="hint">Personal keys belong to a user: sign in with your personal key to manage yours.</p>`}`}
  </section>`;
}

export function usageByDay(rows, days = 30) {
  // Minutes per day over the last `days` days, by each replica's first start (the report's granularity).
  const buckets = new Map();
  const today = new Date();
  for (let i = days - 1; i >= 0; i--) {
    const day = new Date(today.getTime() - i * 86400000).toISOString().slice(0, 10);
    buckets.set(day, 0);
  }
  for (const row of rows) {
    const day = (row.first_started_at || "").slice(0, 10);
    if (buckets.has(day)) buckets.set(day, buckets.get(day) + row.minutes);
  }
  return [...buckets.entries()];
}

export function UsagePage() {
  const since = new Date(Date.now() - 30 * 86400000).toISOString();
  const [report, state] = useLoad(() => usage.report({ since }), []);
  return html`<section class="page"><div class="page-head"><h1>Usage</h1></div>
    <${Loaded} state=${state} data=${report}>${(r) => {
      const days = usageByDay(r.usage);
      const max = Math.max(1, ...days.map(([, m]) => m));
      const width = 100 / days.length;
      return html`<p>${r.total_minutes} active minutes in the last 30 days
          ${Object.entries(r.by_size).map(([size, m]) => ` · ${size}: ${m}`).join("")}</p>
        <svg class="chart" viewBox="0 0 100 60" preserveAspectRatio="none" role="img" aria-label="Active minutes per day, last 30 days">
          ${days.map(([day, minutes], i) => html`<rect x=${i * width + 0.15} width=${width - 0.3} y=${55 - (minutes / max) * 50}
            height=${(minutes / max) * 50}><title>${day}: ${minutes} min</title></rect>`)}
        </svg>
        <table class="list" aria-label="Usage by replica"><thead><tr><th scope="col">Replica</th><th scope="col">Size</th><th scope="col">Source</th><th scope="col">Minutes</th></tr></thead>
          <tbody>${r.usage.map((u) => html`<tr><td><a href=${`#/replicas/${u.replica_id}`}>${u.name}</a></td><td>${u.size}</td><td>${u.source}</td><td>${u.minutes}</td></tr>`)}</tbody></table>`;
    }}<//></section>`;
}

export function AuditPage() {
  const [page, setPage] = useState(1);
  const [data, state] = useLoad(() => audit.list({ page, limit: 50 }), [page]);
  return html`<section class="page"><div class="page-head"><h1>Audit log</h1></div>
    <${Loaded} state=${state} data=${data?.audit_events} empty="Nothing recorded yet.">${(list) => html`<table class="list" aria-label="Audit log">
      <thead><tr><th scope="col">When</th><th scope="col">Who</th><th scope="col">Action</th><th scope="col">Resource</th></tr></thead>
      <tbody>${list.map((e) => html`<tr><td>${when(e.created_at)}</td><td>${e.actor_name || e.actor_type}</td><td class="mono">${e.action}</td>
        <td>${e.resource_type} <span class="hint mono">${(e.resource_id || "").slice(0, 8)}</span></td></tr>`)}</tbody></table>
      <nav class="pager" aria-label="Pages"><button type="button" disabled=${page <= 1} onClick=${() => setPage(page - 1)}>Previous</button>
        <span>Page ${data.page} of ${Math.max(data.totalPages, 1)}</span>
        <button type="button" disabled=${page >= data.totalPages} onClick=${() => setPage(page + 1)}>Next</button></nav>`}<//></section>`;
}
