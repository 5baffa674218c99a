// One environment: settings and system prompt; variables (masked, revealed on request by admins); files;
// skills with the catalog search; MCP servers; the warm and start hooks in an editor whose Test button
// streams the sandbox's output; the warm pool toggle and its workspaces.
import { useEffect, useRef, useState } from "preact/hooks";
import { html } from "../html.js";
import { environments, repositories, session } from "../api.js";
import { ConfirmButton, ErrorBox, Field, Loaded, Loading, StatusBadge, useLoad, when } from "../components/ui.js";
import { Mcps } from "./environment-mcps.js";

const VIEWS = [["settings", "Settings"], ["variables", "Variables"], ["files", "Files"], ["skills", "Skills"],
  ["mcps", "MCP servers"], ["hooks", "Hooks"], ["pool", "Warm pool"]];

export function EnvironmentPage({ environmentId }) {
  const [env, state] = useLoad(() => environments.get(environmentId), [environmentId]);
  const [view, setView] = useState("variables");
  if (state.error) return html`<${ErrorBox} error=${state.error} retry=${state.reload} />`;
  if (!env) return html`<${Loading} what="Loading environment" />`;
  return html`<section class="page">
    <div class="page-head"><h1>${env.name}</h1>${env.is_global ? html`<span class="badge">global</span>` : null}
      <div class="actions">${env.is_global ? null : html`<${ConfirmButton} label="Delete" danger
        question=${`Delete the environment ${env.name}?`}
        onConfirm=${async () => { await environments.remove(env.id); location.hash = "#/environments"; }} />`}</div></div>
    <div class="tabs" role="tablist" aria-label="Environment sections">
      ${VIEWS.map(([key, label]) => html`<button type="button" role="tab" aria-selected=${view === key} id=${`env-${key}`}
        onClick=${() => setView(key)}>${label}</button>`)}</div>
    <div role="tabpanel" aria-labelledby=${`env-${view}`}>
      ${view === "settings" ? html`<${Settings} env=${env} onSaved=${state.set} />` : null}
      ${view === "variables" ? html`<${Variables} envId=${environmentId} />` : null}
      ${view === "files" ? html`<${Files} envId=${environmentId} />` : null}
      ${view === "skills" ? html`<${Skills} envId=${environmentId} />` : null}
      ${view === "mcps" ? html`<${Mcps} envId=${environmentId} />` : null}
      ${view === "hooks" ? html`<${Hook} envId=${environmentId} kind="warm" /><${Hook} envId=${environmentId} kind="start" />` : null}
      ${view === "pool" ? html`<${WarmPool} envId=${environmentId} />` : null}
    </div>
  </section>`;
}

function useSaving() {
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const run = async (action) => {
    setBusy(true);
    setError(null);
    try { return await action(); } catch (failure) { setError(failure); return undefined; } finally { setBusy(false); }
  };
  return { error, busy, run };
}

function Settings({ env, onSaved }) {
  const [repos] = useLoad(() => repositories.list(), []);
  const [form, setForm] = useState({ name: env.name, description: env.description || "", system_prompt: env.system_prompt || "",
    repository_id: env.repository_id || "" });
  const saving = useSaving();
  const [saved, setSaved] = useState(false);
  const set = (key) => (e) => { setSaved(false); setForm({ ...form, [key]: e.target.value }); };
  if (env.is_global) return html`<p class="hint">The global environment has no settings of its own; its variables, files,
    skills, MCP servers and hooks apply under every other environment.</p>`;
  async function submit(event) {
    event.preventDefault();
    const body = { name: form.name, description: form.description || null, system_prompt: form.system_prompt || null,
      repository_id: form.repository_id || null };
    const updated = await saving.run(() => environments.update(env.id, body));
    if (updated) { onSaved(updated); setSaved(true); }
  }
  return html`<form class="stack" onSubmit=${submit}>
    <${Field} label="Name"><input name="name" required value=${form.name} onInput=${set("name")} /><//>
    <${Field} label="Description"><input name="description" value=${form.description} onInput=${set("description")} /><//>
    <${Field} label="Repository"><select name="repository_id" value=${form.repository_id} onChange=${set("repository_id")}>
      <option value="">None</option>${(repos || []).map((r) => html`<option value=${r.id}>${r.name}</option>`)}</select><//>
    <${Field} label="System prompt" hint="Prepended to every agent's instructions"><textarea name="system_prompt" rows="6"
      value=${form.system_prompt} onInput=${set("system_prompt")}></textarea><//>
    <${ErrorBox} error=${saving.error} />
    <div class="actions">${saved ? html`<span role="status" class="hint">Saved.</span>` : null}
      <button type="submit" class="primary" disabled=${saving.busy}>Save</button></div>
  </form>`;
}

function Variables({ envId }) {
  const [vars, state] = useLoad(() => environments.variables.list(envId), [envId]);
  const [isAdmin, setAdmin] = useState(false);
  const [revealed, setRevealed] = useState(new Set());
  const [editing, setEditing] = useState(null);
  const [draft, setDraft] = useState({ key: "", value: "" });
  const saving = useSaving();
  useEffect(() => { session.current().then((s) => setAdmin(s.session.role === "admin")).catch(() => {}); }, []);
  const toggle = (id) => { const next = new Set(revealed); next.has(id) ? next.delete(id) : next.add(id); setRevealed(next); };
  async function add(event) {
    event.preventDefault();
    if (await saving.run(() => environments.variables.create(envId, draft))) { setDraft({ key: "", value: "" }); state.reload(); }
  }
  async function saveEdit(event) {
    event.preventDefault();
    if (await saving.run(() => environments.variables.update(envId, editing.id, { value: editing.value }))) {
      setEditing(null);
      setRevealed(new Set());
      state.reload();
    }
  }
  return html`<div>
    <${Loaded} state=${state} data=${vars} empty="No variables.">${(list) => html`<table class="list" aria-label="Variables">
      <thead><tr><th scope="col">Key</th><th scope="col">Value</th><th scope="col"><span class="hint">Actions</span></th></tr></thead>
      <tbody>${list.map((v) => html`<tr key=${v.id} data-variable=${v.key}><td class="mono">${v.key}</td>
        <td>${editing?.id === v.id
          ? html`<form class="row" onSubmit=${saveEdit}><label class="field"><span>New value for ${v.key}</span>
              <input name="value" type="password" value=${editing.value} onInput=${(e) => setEditing({ ...editing, value: e.target.value })} /></label>
              <button type="submit" class="primary">Save</button><button type="button" onClick=${() => setEditing(null)}>Cancel</button></form>`
          : revealed.has(v.id) ? html`<span class="mono value">${v.value}</span>` : html`<span class="masked value" aria-label="Hidden value">••••••••</span>`}</td>
        <td class="row">
          ${isAdmin ? html`<button type="button" onClick=${() => toggle(v.id)} aria-label=${`${revealed.has(v.id) ? "Hide" : "Reveal"} ${v.key}`}>
            ${revealed.has(v.id) ? "Hide" : "Reveal"}</button>` : null}
          <button type="button" onClick=${() => setEditing({ id: v.id, value: "" })} aria-label=${`Edit ${v.key}`}>Edit</button>
          <${ConfirmButton} label="Delete" danger question=${`Delete the variable ${v.key}?`}
            onConfirm=${async () => { await environments.variables.remove(envId, v.id); state.reload(); }} /></td></tr>`)}</tbody></table>`}<//>
    <h2>Add a variable</h2>
    <form class="row" onSubmit=${add}>
      <${Field} label="Key"><input name="key" required pattern="[A-Za-z_][A-Za-z0-9_]*" value=${draft.key} onInput=${(e) => setDraft({ ...draft, key: e.target.value })} /><//>
      <${Field} label="Value"><input name="value" type="password" required value=${draft.value} onInput=${(e) => setDraft({ ...draft, value: e.target.value })} /><//>
      <button type="submit" class="primary" disabled=${saving.busy}>Add</button>
    </form>
    <${ErrorBox} error=${saving.error} />
  </div>`;
}

function Files({ envId }) {
  const [files, state] = useLoad(() => environments.files.list(envId), [envId]);
  const [draft, setDraft] = useState({ name: "", path: "~/", content: "" });
  const saving = useSaving();
  const set = (key) => (e) => setDraft({ ...draft, [key]: e.target.value });
  async function add(event) {
    event.preventDefault();
    if (await saving.run(() => environments.files.create(envId, draft))) { setDraft({ name: "", path: "~/", content: "" }); state.reload(); }
  }
  return html`<div>
    <${Loaded} state=${state} data=${files} empty="No files.">${(list) => html`<div class="cards">${list.map((f) => html`<div class="card">
      <strong>${f.name}</strong> <span class="mono hint">${f.path}</span><pre class="hook-output">${f.content}</pre>
      <${ConfirmButton} label="Delete" danger question=${`Delete ${f.name}?`} onConfirm=${async () => { await environments.files.remove(envId, f.id); state.reload(); }} /></div>`)}</div>`}<//>
    <h2>Add a file</h2>
    <form class="stack" onSubmit=${add}>
      <div class="row"><${Field} label="Name"><input name="name" required value=${draft.name} onInput=${set("name")} /><//>
        <${Field} label="Path" hint="Under ~/"><input name="path" required value=${draft.path} onInput=${set("path")} /><//></div>
      <${Field} label="Content"><textarea name="content" rows="6" value=${draft.content} onInput=${set("content")}></textarea><//>
      <${ErrorBox} error=${saving.error} /><div class="actions"><button type="submit" class="primary">Add</button></div>
    </form></div>`;
}

function Skills({ envId }) {
  const [skills, state] = useLoad(() => environments.skills.list(envId), [envId]);
  const [query, setQuery] = useState("");
  const [found, setFound] = useState(null);
  const saving = useSaving();
  async function search(event) {
    event.preventDefault();
    setFound(await saving.run(() => environments.searchSkills(query)) || []);
  }
  async function add(skill) {
    if (await saving.run(() => environments.skills.create(envId, { name: skill.name, slug: skill.slug, source: skill.source }))) state.reload();
  }
  return html`<div>
    <${Loaded} state=${state} data=${skills} empty="No skills enabled.">${(list) => html`<ul>${list.map((s) => html`<li>${s.name}
      <span class="hint mono"> ${s.source}</span> <${ConfirmButton} label="Remove" danger question=${`Remove the skill ${s.name}?`}
        onConfirm=${async () => { await environments.skills.remove(envId, s.id); state.reload(); }} /></li>`)}</ul>`}<//>
    <h2>Find skills</h2>
    <form class="row" role="search" onSubmit=${search}><${Field} label="Search the skills catalog"><input type="search" name="q"
      value=${query} onInput=${(e) => setQuery(e.target.value)} /><//><button type="submit">Search</button></form>
    <${ErrorBox} error=${saving.error} />
    ${found ? found.length ? html`<ul>${found.map((s) => html`<li>${s.name} <span class="hint">${s.source} · ${s.installs} installs</span>
      <button type="button" onClick=${() => add(s)}>Enable</button></li>`)}</ul>` : html`<p class="state empty">No skills found.</p>` : null}
  </div>`;
}

function Hook({ envId, kind }) {
  const load = kind === "warm" ? environments.warmHooks : environments.startHooks;
  const [record, state] = useLoad(async () => (await load(envId))[`${kind}_hook`], [envId, kind]);
  const [content, setContent] = useState(null);
  const [output, setOutput] = useState("");
  const [outcome, setOutcome] = useState(null);
  const [running, setRunning] = useState(false);
  const saving = useSaving();
  const stop = useRef(() => {});
  useEffect(() => () => stop.current(), []);
  const text = content ?? record?.content ?? "";
  const title = kind === "warm" ? "Warm hook" : "Start hook";
  function test() {
    setOutput("");
    setOutcome(null);
    setRunning(true);
    const run = kind === "warm" ? environments.testWarmHook : environments.testStartHook;
    stop.current = run(envId, text, (event) => {
      if (event.type === "output") setOutput((o) => o + event.output);
      else if (event.type === "progress") setOutput((o) => `${o}# ${event.message}\n`);
      else if (event.type === "complete") { setOutcome(event); setRunning(false); }
      else if (event.type === "error") { setOutcome({ error: event.message }); setRunning(false); }
    }, { onError: (failure) => { setOutcome({ error: failure.message }); setRunning(false); }, onEnd: () => setRunning(false) });
  }
  async function save() {
    const saveHook = kind === "warm" ? environments.saveWarmHook : environments.saveStartHook;
    if (await saving.run(() => saveHook(envId, text))) { setContent(null); state.reload(); }
  }
  return html`<section class="card" aria-label=${title}>
    <h2>${title}${record ? html` <small class="hint">version ${record.version}</small>` : null}</h2>
    <p class="hint">${kind === "warm" ? "Runs once when a warm workspace is built (and its pool snapshot taken)." : "Runs every time a workspace boots."}</p>
    <${Loaded} state=${state} data=${state.loading ? undefined : (record || {})}>${() => html`
      <${Field} label=${`${title} script`}><textarea name=${`${kind}_hook`} rows="8" spellcheck="false" value=${text}
        onInput=${(e) => setContent(e.target.value)}></textarea><//>
      <div class="actions">
        <button type="button" onClick=${test} disabled=${running || !text.trim()}>${running ? "Testing…" : "Test"}</button>
        <button type="button" class="primary" onClick=${save} disabled=${saving.busy}>Save</button></div>
      <${ErrorBox} error=${saving.error} />
      ${output || running || outcome ? html`<pre class="hook-output" role="log" aria-live="polite" aria-label=${`${title} test output`}>${output}</pre>` : null}
      ${outcome ? html`<p role="status" class=${outcome.exit_code === 0 ? "badge status-active" : "badge status-error"}>
        ${outcome.error ? `Failed: ${outcome.error}` : `Exit code ${outcome.exit_code}${outcome.timed_out ? " (timed out)" : ""}`}</p>` : null}`}<//>
  </section>`;
}

function WarmPool({ envId }) {
  const [data, state] = useLoad(() => environments.warmHooks(envId), [envId]);
  const pool = data?.warm_pool;
  const [workspaces, wsState] = useLoad(() => (pool ? environments.warmPoolWorkspaces(pool.id) : Promise.resolve([])), [pool?.id]);
  const saving = useSaving();
  async function toggle() {
    if (await saving.run(() => environments.setWarmPool(envId, !pool?.enabled))) state.reload();
  }
  return html`<${Loaded} state=${state} data=${data}>${() => html`<div class="stack">
    <label class="check"><input type="checkbox" checked=${!!pool?.enabled} onChange=${toggle} disabled=${saving.busy} />
      Keep warm workspaces ready for this environment</label>
    <${ErrorBox} error=${saving.error} />
    ${pool ? html`<p class="hint">Target ${pool.target_size} · ready ${pool.ready_count} · warming ${pool.warming_count} · stale ${pool.stale_count}
      · generation ${pool.generation}${pool.last_failure_reason ? ` · last failure: ${pool.last_failure_reason}` : ""}</p>` : null}
    <h2>Workspaces</h2>
    <${Loaded} state=${wsState} data=${workspaces} empty="No warm workspaces.">${(list) => html`<table class="list" aria-label="Warm pool workspaces">
      <thead><tr><th scope="col">Workspace</th><th scope="col">Status</th><th scope="col">Generation</th><th scope="col">Created</th></tr></thead>
      <tbody>${list.map((w) => html`<tr><td class="mono">${w.id.slice(0, 8)}</td><td><${StatusBadge} status=${w.status} />
        ${w.error_message ? html`<div class="hint">${w.error_message}</div>` : null}</td><td>${w.generation}</td><td>${when(w.created_at)}</td></tr>`)}</tbody></table>`}<//>
  </div>`}<//>`;
}
