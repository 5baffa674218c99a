// Automations: the list, create (a prompt, an environment and cron or custom webhook triggers), and one
// automation with its triggers, a run-now button and its executions.
import { useState } from "preact/hooks";
import { html } from "../html.js";
import { automations, environments } from "../api.js";
import { ConfirmButton, ErrorBox, Field, Loaded, Modal, StatusBadge, useLoad, when } from "../components/ui.js";

function triggerText(trigger) {
  if (trigger.type === "cron") return `cron ${trigger.config?.schedule || ""}`;
  return `${trigger.type}${trigger.event ? ` ${trigger.event}` : ""}`;
}

export function AutomationsPage() {
  const [page, setPage] = useState(1);
  const [data, state] = useLoad(() => automations.list({ page, limit: 20, scope: "all" }), [page]);
  const [creating, setCreating] = useState(false);
  return html`<section class="page">
    <div class="page-head"><h1>Automations</h1><button type="button" class="primary" onClick=${() => setCreating(true)}>New automation</button></div>
    <${Loaded} state=${state} data=${data?.automations} empty="No automations yet.">${(list) => html`<table class="list" aria-label="Automations">
      <thead><tr><th scope="col">Name</th><th scope="col">Triggers</th><th scope="col">Enabled</th><th scope="col">Next run</th></tr></thead>
      <tbody>${list.map((a) => html`<tr><td><a href=${`#/automations/${a.id}`}>${a.name}</a></td>
        <td>${a.triggers.map(triggerText).join(", ")}</td><td>${a.enabled ? "yes" : "no"}</td><td>${when(a.cron_next_fire_at)}</td></tr>`)}</tbody></table>
      <nav class="pager" aria-label="Pages"><button type="button" disabled=${page <= 1} onClick=${() => setPage(page - 1)}>Previous</button>
        <span>Page ${data.page} of ${Math.max(data.totalPages, 1)}</span>
        <button type="button" disabled=${page >= data.totalPages} onClick=${() => setPage(page + 1)}>Next</button></nav>`}<//>
    <${CreateAutomation} open=${creating} onClose=${() => setCreating(false)} />
  </section>`;
}

function CreateAutomation({ open, onClose }) {
  const [envs] = useLoad(() => (open ? environments.list("all") : Promise.resolve([])), [open]);
  const [form, setForm] = useState({ name: "", prompt: "", environment_id: "", trigger: "cron", expression: "0 9 * * 1-5" });
  const [error, setError] = useState(null);
  const set = (key) => (e) => setForm({ ...form, [key]: e.target.value });
  async function submit(event) {
    event.preventDefault();
    const trigger = form.trigger === "cron" ? { type: "cron", config: { schedule: form.expression, timezone: "UTC" } } : { type: "custom", config: {} };
    try {
      const created = await automations.create({ name: form.name, prompt: form.prompt, triggers: [trigger],
        environment_id: form.environment_id || envs?.[0]?.id });
      onClose();
      location.hash = `#/automations/${created.id}`;
    } catch (failure) {
      setError(failure);
    }
  }
  return html`<${Modal} title="New automation" open=${open} onClose=${onClose}>
    <form class="stack" onSubmit=${submit}>
      <${Field} label="Name"><input name="name" required value=${form.name} onInput=${set("name")} /><//>
      <${Field} label="Environment"><select name="environment_id" value=${form.environment_id} onChange=${set("environment_id")}>
        ${(envs || []).map((e) => html`<option value=${e.id}>${e.name}</option>`)}</select><//>
      <div class="row"><${Field} label="Trigger"><select name="trigger" value=${form.trigger} onChange=${set("trigger")}>
          <option value="cron">Schedule (cron)</option><option value="custom">Webhook (custom)</option></select><//>
        ${form.trigger === "cron" ? html`<${Field} label="Cron expression" hint="UTC"><input name="expression" value=${form.expression} onInput=${set("expression")} /><//>` : null}</div>
      <${Field} label="Prompt"><textarea name="prompt" required rows="5" value=${form.prompt} onInput=${set("prompt")}></textarea><//>
      <${ErrorBox} error=${error} />
      <div class="actions"><button type="button" onClick=${onClose}>Cancel</button><button type="submit" class="primary">Create</button></div>
    </form><//>`;
}

export function AutomationPage({ automationId }) {
  const [automation, state] = useLoad(() => automations.get(automationId), [automationId]);
  const [runs, runsState] = useLoad(() => automations.executions(automationId, { limit: 20 }), [automationId]);
  const [error, setError] = useState(null);
  async function act(action) {
    try { await action(); setError(null); state.reload(); runsState.reload(); } catch (failure) { setError(failure); }
  }
  return html`<${Loaded} state=${state} data=${automation}>${(a) => html`<section class="page">
    <div class="page-head"><h1>${a.name}</h1><span class="badge">${a.enabled ? "enabled" : "disabled"}</span>
      <div class="actions">
        <button type="button" onClick=${() => act(() => automations.update(a.id, { enabled: !a.enabled }))}>${a.enabled ? "Disable" : "Enable"}</button>
        <button type="button" onClick=${() => act(() => automations.trigger(a.id))}>Run now</button>
        <${ConfirmButton} label="Delete" danger question=${`Delete the automation ${a.name} and its executions?`}
          onConfirm=${async () => { await automations.remove(a.id); location.hash = "#/automations"; }} /></div></div>
    <${ErrorBox} error=${error} />
    <h2>Triggers</h2><ul>${a.triggers.map((t) => html`<li>${triggerText(t)}</li>`)}</ul>
    ${a.webhook_token ? html`<p class="hint">Webhook: <code>POST /v1/automations/webhook/${a.webhook_token}</code></p>` : null}
    <h2>Prompt</h2><pre class="hook-output">${a.prompt}</pre>
    <h2>Executions</h2>
    <${Loaded} state=${runsState} data=${runs?.executions} empty="No executions yet.">${(list) => html`<table class="list" aria-label="Executions">
      <thead><tr><th scope="col">Triggered</th><th scope="col">Status</th><th scope="col">Replica</th><th scope="col">Error</th></tr></thead>
      <tbody>${list.map((x) => html`<tr><td>${when(x.triggered_at)}</td><td><${StatusBadge} status=${x.status} /></td>
        <td>${x.workspace_id ? html`<a href=${`#/replicas/${x.workspace_id}`}>open</a>` : "—"}</td><td>${x.error || ""}</td></tr>`)}</tbody></table>`}<//>
  </section>`}<//>`;
}
