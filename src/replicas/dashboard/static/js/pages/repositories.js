// Repositories (connect by clone URL) and repository sets.
import { useState } from "preact/hooks";
import { html } from "../html.js";
import { repositories } from "../api.js";
import { ConfirmButton, ErrorBox, Field, Loaded, useLoad } from "../components/ui.js";

export function RepositoriesPage() {
  const [repos, state] = useLoad(() => repositories.list(), []);
  const [sets, setsState] = useLoad(() => repositories.sets(), []);
  const [draft, setDraft] = useState({ name: "", url: "" });
  const [setDraftValue, setSetDraft] = useState({ name: "", description: "", repository_ids: [] });
  const [error, setError] = useState(null);
  async function add(event) {
    event.preventDefault();
    try { await repositories.create(draft); setDraft({ name: "", url: "" }); setError(null); state.reload(); } catch (failure) { setError(failure); }
  }
  async function addSet(event) {
    event.preventDefault();
    try { await repositories.createSet(setDraftValue); setSetDraft({ name: "", description: "", repository_ids: [] }); setError(null); setsState.reload(); }
    catch (failure) { setError(failure); }
  }
  return html`<section class="page">
    <div class="page-head"><h1>Repositories</h1></div>
    <${Loaded} state=${state} data=${repos} empty="No repositories connected yet.">${(list) => html`<table class="list" aria-label="Repositories">
      <thead><tr><th scope="col">Name</th><th scope="col">URL</th><th scope="col">Default branch</th><th scope="col"><span class="hint">Actions</span></th></tr></thead>
      <tbody>${list.map((r) => html`<tr><td>${r.name}</td><td class="mono">${r.url}</td><td>${r.default_branch}</td>
        <td><${ConfirmButton} label="Remove" danger question=${`Remove ${r.name}?`} onConfirm=${async () => { await repositories.remove(r.id); state.reload(); }} /></td></tr>`)}</tbody></table>`}<//>
    <h2>Add a repository</h2>
    <form class="row" onSubmit=${add}>
      <${Field} label="Name" hint="owner/repo"><input name="name" required value=${draft.name} onInput=${(e) => setDraft({ ...draft, name: e.target.value })} /><//>
      <${Field} label="Clone URL"><input name="url" required value=${draft.url} onInput=${(e) => setDraft({ ...draft, url: e.target.value })} /><//>
      <button type="submit" class="primary">Add</button></form>
    <${ErrorBox} error=${error} />
    <h2>Repository sets</h2>
    <${Loaded} state=${setsState} data=${sets} empty="No repository sets.">${(list) => html`<ul>${list.map((s) => html`<li><strong>${s.name}</strong>
      <span class="hint"> ${s.repositories.map((r) => r.name).join(", ")}</span>
      <${ConfirmButton} label="Remove" danger question=${`Remove the set ${s.name}?`} onConfirm=${async () => { await repositories.removeSet(s.id); setsState.reload(); }} /></li>`)}</ul>`}<//>
    <form class="row" onSubmit=${addSet} aria-label="New repository set">
      <${Field} label="Set name"><input name="set_name" required value=${setDraftValue.name} onInput=${(e) => setSetDraft({ ...setDraftValue, name: e.target.value })} /><//>
      <${Field} label="Repositories"><select multiple name="repository_ids" onChange=${(e) => setSetDraft({ ...setDraftValue,
        repository_ids: [...e.target.selectedOptions].map((o) => o.value) })}>${(repos || []).map((r) => html`<option value=${r.id}>${r.name}</option>`)}</select><//>
      <button type="submit">Create set</button></form>
  </section>`;
}
