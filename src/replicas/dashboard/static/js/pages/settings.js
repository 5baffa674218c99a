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

// The chart: minutes per UTC day from /v1/usage/daily (each awake stretch split over the days it spans), with
// the same figures in a table for screen readers and keyboards; below it, the minutes per replica.
function DailyChart({ days }) {
  const max = Math.max(1, ...days.map((d) => d.minutes));
  const width = 100 / days.length;
  return html`<svg class="chart" viewBox="0 0 100 60" preserveAspectRatio="none" role="img"
      aria-label=${`Active minutes per day, ${days[0].date} to ${days[days.length - 1].date} (UTC)`}>
      ${days.map((d, i) => html`<rect x=${i * width + 0.15} width=${width - 0.3} y=${55 - (d.minutes / max) * 50}
        height=${(d.minutes / max) * 50}><title>${d.date}: ${d.minutes} min</title></rect>`)}
    </svg>
    <div class="chart-axis hint" aria-hidden="true"><span>${days[0].date}</span><span>${days[days.length - 1].date}</span></div>
    <details><summary>Minutes per day</summary><table class="list" aria-label="Active minutes per day">
      <thead><tr><th scope="col">Day (UTC)</th><th scope="col">Minutes</th><th scope="col">By source</th></tr></thead>
      <tbody>${days.filter((d) => d.minutes).map((d) => html`<tr><td>${d.date}</td><td>${d.minutes}</td>
        <td>${Object.entries(d.by_source).map(([source, m]) => `${source}: ${m}`).join(" · ")}</td></tr>`)}</tbody></table></details>`;
}

export function UsagePage() {
  const since = `${new Date(Date.now() - 29 * 86400000).toISOString().slice(0, 10)}T00:00:00Z`;
  const [daily, dailyState] = useLoad(() => usage.daily({ since }), []);
  const [report, state] = useLoad(() => usage.report({ since }), []);
  return html`<section class="page"><div class="page-head"><h1>Usage</h1></div>
    <${Loaded} state=${dailyState} data=${daily}>${(d) => html`<p>${d.total_minutes} active minutes in the last 30 days</p>
      <${DailyChart} days=${d.days} />`}<//>
    <h2>By replica</h2>
    <${Loaded} state=${state} data=${report?.usage} empty="No replica was awake in these 30 days.">${() => html`
      <p class="hint">Replicas first started in these 30 days${Object.entries(report.by_size).map(([size, m]) => ` · ${size}: ${m} min`).join("")}</p>
      <table class="list" aria-label="Usage by replica"><thead><tr><th scope="col">Replica</th><th scope="col">Size</th><th scope="col">Source</th><th scope="col">Minutes</th></tr></thead>
        <tbody>${report.usage.map((u) => html`<tr><td><a href=${`#/replicas/${u.replica_id}`}>${u.name}</a></td><td>${u.size}</td><td>${u.source}</td><td>${u.minutes}</td></tr>`)}</tbody></table>`}<//>
  </section>`;
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
