// An environment's MCP servers: each with its Test (the check's progress and the server's stderr stream in, then
// the outcome: the server's name and tools, or why it did not answer), Edit and Remove; one form adds a server
// or edits the one chosen, and its own Test checks the server as entered, before it is saved.
import { useEffect, useRef, useState } from "preact/hooks";
import { html } from "../html.js";
import { environments } from "../api.js";
import { ConfirmButton, ErrorBox, Field, Loaded, useLoad } from "../components/ui.js";

const EMPTY = { name: "", transport: "http", url: "", command: "", args: "", env: {}, headers: {} };

// The form's fields -> the API's {name, transport, config} (env and headers, not edited here, are kept).
function definition(form) {
  const config = form.transport === "stdio"
    ? { command: form.command, args: form.args.split(" ").filter(Boolean), env: form.env }
    : { url: form.url, headers: form.headers };
  return { name: form.name, transport: form.transport, config };
}

function formOf(server) {
  const { config } = server;
  return { ...EMPTY, name: server.name, transport: server.transport, url: config.url || "", command: config.command || "",
    args: (config.args || []).join(" "), env: config.env || {}, headers: config.headers || {} };
}

export function Mcps({ envId }) {
  const [mcps, state] = useLoad(() => environments.mcps.list(envId), [envId]);
  const [form, setForm] = useState(EMPTY);
  const [editing, setEditing] = useState(null); // the server being edited, or null: adding
  const [error, setError] = useState(null);
  const draftTest = useMcpTest((onEvent, options) => environments.testMcpDraft(envId, definition(form), onEvent, options));
  const set = (key) => (e) => setForm({ ...form, [key]: e.target.value });
  const reset = () => { setForm(EMPTY); setEditing(null); setError(null); draftTest.clear(); };
  async function save(event) {
    event.preventDefault();
    setError(null);
    try {
      if (editing) await environments.mcps.update(envId, editing.id, definition(form));
      else await environments.mcps.create(envId, definition(form));
      reset();
      state.reload();
    } catch (failure) {
      setError(failure);
    }
  }
  const edit = (server) => { setForm(formOf(server)); setEditing(server); setError(null); draftTest.clear(); };
  return html`<div>
    <${Loaded} state=${state} data=${mcps} empty="No MCP servers.">${(list) => html`<ul class="mcps">${list.map((m) => html`<li key=${m.id}>
      <${McpServer} envId=${envId} server=${m} onEdit=${() => edit(m)} onRemoved=${state.reload} /></li>`)}</ul>`}<//>
    <h2>${editing ? `Edit ${editing.name}` : "Add an MCP server"}</h2>
    <form class="row" aria-label="MCP server" onSubmit=${save}>
      <${Field} label="Name"><input name="name" required value=${form.name} onInput=${set("name")} /><//>
      <${Field} label="Transport"><select name="transport" value=${form.transport} onChange=${set("transport")}>
        <option value="http">http</option><option value="sse">sse</option><option value="stdio">stdio</option></select><//>
      ${form.transport === "stdio"
        ? html`<${Field} label="Command"><input name="command" required value=${form.command} onInput=${set("command")} /><//>
               <${Field} label="Arguments"><input name="args" value=${form.args} onInput=${set("args")} /><//>`
        : html`<${Field} label="URL"><input name="url" type="url" required value=${form.url} onInput=${set("url")} /><//>`}
      <button type="button" onClick=${draftTest.run} disabled=${draftTest.running}
        aria-label="Test the server as entered">${draftTest.running ? "Testing…" : "Test"}</button>
      <button type="submit" class="primary">${editing ? "Save" : "Add"}</button>
      ${editing ? html`<button type="button" onClick=${reset}>Cancel</button>` : null}</form>
    <${McpTestOutcome} test=${draftTest} label="The server as entered" />
    <${ErrorBox} error=${error} /></div>`;
}

function McpServer({ envId, server, onEdit, onRemoved }) {
  const test = useMcpTest((onEvent, options) => environments.testMcp(envId, server.id, onEvent, options));
  return html`<div class="mcp-server"><div class="row">
      <strong>${server.name}</strong><span class="hint">${server.transport} · ${server.config.url || server.config.command}</span>
      <button type="button" onClick=${test.run} disabled=${test.running} aria-label=${`Test ${server.name}`}>${test.running ? "Testing…" : "Test"}</button>
      <button type="button" onClick=${onEdit} aria-label=${`Edit ${server.name}`}>Edit</button>
      <${ConfirmButton} label="Remove" danger question=${`Remove the MCP server ${server.name}?`}
        onConfirm=${async () => { await environments.mcps.remove(envId, server.id); onRemoved(); }} /></div>
    <${McpTestOutcome} test=${test} label=${server.name} /></div>`;
}

// One Test: `start(onEvent, options)` opens the check's stream; its output and outcome are kept for the view.
function useMcpTest(start) {
  const [output, setOutput] = useState("");
  const [outcome, setOutcome] = useState(null);
  const [running, setRunning] = useState(false);
  const stop = useRef(() => {});
  useEffect(() => () => stop.current(), []);
  function clear() {
    stop.current();
    setOutput("");
    setOutcome(null);
    setRunning(false);
  }
  function run() {
    clear();
    setRunning(true);
    const fail = (message) => { setOutcome({ ok: false, error: message }); setRunning(false); };
    stop.current = start((event) => {
      if (event.type === "output") setOutput((o) => o + event.output);
      else if (event.type === "progress") setOutput((o) => `${o}# ${event.message}\n`);
      else if (event.type === "complete") { setOutcome(event); setRunning(false); }
      else if (event.type === "error") fail(event.message);
    }, { onError: (failure) => fail(failure.body?.details ? `${failure.message}: ${failure.body.details}` : failure.message),
      onEnd: () => setRunning(false) });
  }
  return { output, outcome, running, run, clear };
}

function McpTestOutcome({ test: { output, outcome, running }, label }) {
  const info = outcome?.server ? `${outcome.server.name}${outcome.server.version ? ` ${outcome.server.version}` : ""}` : "The server";
  return html`${output || running ? html`<pre class="hook-output" role="log" aria-live="polite" aria-label=${`${label} test output`}>${output}</pre>` : null}
    ${outcome ? html`<p role="status" aria-label=${`${label} test result`} class=${outcome.ok ? "mcp-result ok" : "mcp-result failed"}>
      ${outcome.ok
        ? `Answered: ${info} · ${outcome.tools.length ? `tools: ${outcome.tools.join(", ")}` : "no tools"}`
        : `Failed: ${outcome.error}`}</p>` : null}`;
}
