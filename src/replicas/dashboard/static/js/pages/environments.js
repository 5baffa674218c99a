// Environments: the list and the create dialog.
import { useState } from "preact/hooks";
import { html } from "../html.js";
import { environments, repositories } from "../api.js";
import { ErrorBox, Field, Loaded, Modal, useLoad } from "../components/ui.js";

export function EnvironmentsPage() {
  const [list, state] = useLoad(() => environments.list("all"), []);
  const [creating, setCreating] = useState(false);
  return html`<section class="page">
    <div class="page-head"><h1>Environments</h1>
      <button type="button" class="primary" onClick=${() => setCreating(true)}>New environment</button></div>
    <${Loaded} state=${state} data=${list} empty="No environments yet.">${(envs) => html`<table class="list" aria-label="Environments">
      <thead><tr><th scope="col">Name</th><th scope="col">Scope</th><th scope="col">Variables</th><th scope="col">Files</th>
        <th scope="col">Skills</th><th scope="col">MCP servers</th></tr></thead>
      <tbody>${envs.map((e) => html`<tr key=${e.id}><td><a href=${`#/environments/${e.is_global ? "global" : e.id}`}>${e.name}</a>
        ${e.is_global ? html` <span class="badge">global</span>` : null}${e.description ? html`<div class="hint">${e.description}</div>` : null}</td>
        <td>${e.user_id ? "personal" : "organization"}</td><td>${e.variable_count ?? "—"}</td><td>${e.file_count ?? "—"}</td>
        <td>${e.skill_count ?? "—"}</td><td>${e.mcp_count ?? "—"}</td></tr>`)}</tbody></table>`}<//>
    <${CreateEnvironment} open=${creating} onClose=${() => setCreating(false)} />
  </section>`;
}

function CreateEnvironment({ open, onClose }) {
  const [repos] = useLoad(() => (open ? repositories.list() : Promise.resolve([])), [open]);
  const [form, setForm] = useState({ name: "", description: "", repository_id: "", scope: "org" });
  const [error, setError] = useState(null);
  const set = (key) => (e) => setForm({ ...form, [key]: e.target.value });
  async function submit(event) {
    event.preventDefault();
    try {
      const body = { name: form.name.trim(), scope: form.scope };
      if (form.description.trim()) body.description = form.description.trim();
      if (form.repository_id) body.repository_id = form.repository_id;
      const created = await environments.create(body);
      onClose();
      location.hash = `#/environments/${created.id}`;
    } catch (failure) {
      setError(failure);
    }
  }
  return html`<${Modal} title="New environment" open=${open} onClose=${onClose}>
    <form class="stack" onSubmit=${submit}>
      <${Field} label="Name"><input name="name" required value=${form.name} onInput=${set("name")} /><//>
      <${Field} label="Description"><input name="description" value=${form.description} onInput=${set("description")} /><//>
      <${Field} label="Repository"><select name="repository_id" value=${form.repository_id} onChange=${set("repository_id")}>
        <option value="">None</option>${(repos || []).map((r) => html`<option value=${r.id}>${r.name}</option>`)}</select><//>
      <${Field} label="Scope"><select name="scope" value=${form.scope} onChange=${set("scope")}>
        <option value="org">Organization</option><option value="user">Personal</option></select><//>
      <${ErrorBox} error=${error} />
      <div class="actions"><button type="button" onClick=${onClose}>Cancel</button><button type="submit" class="primary">Create</button></div>
    </form><//>`;
}
