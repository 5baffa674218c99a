// The shell: who is signed in, the navigation, and the hash routes. Pages load on first visit (dynamic
// import), so the replicas list does not wait for the terminal or the highlighter.
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { html } from "./html.js";
import { session, onUnauthorized } from "./api.js";
import { Loading, ErrorBox } from "./components/ui.js";
import { SignIn } from "./pages/signin.js";
import { ReplicasPage } from "./pages/replicas.js";

const ROUTES = [
  [/^\/replicas\/([^/]+)$/, () => import("./pages/replica.js").then((m) => m.ReplicaPage), (m) => ({ replicaId: m[1] })],
  [/^\/environments\/([^/]+)$/, () => import("./pages/environment.js").then((m) => m.EnvironmentPage), (m) => ({ environmentId: m[1] })],
  [/^\/environments$/, () => import("./pages/environments.js").then((m) => m.EnvironmentsPage)],
  [/^\/repositories$/, () => import("./pages/repositories.js").then((m) => m.RepositoriesPage)],
  [/^\/automations\/([^/]+)$/, () => import("./pages/automations.js").then((m) => m.AutomationPage), (m) => ({ automationId: m[1] })],
  [/^\/automations$/, () => import("./pages/automations.js").then((m) => m.AutomationsPage)],
  [/^\/api-keys$/, () => import("./pages/settings.js").then((m) => m.ApiKeysPage)],
  [/^\/usage$/, () => import("./pages/settings.js").then((m) => m.UsagePage)],
  [/^\/audit$/, () => import("./pages/settings.js").then((m) => m.AuditPage)],
  [/^\/(replicas)?$/, async () => ReplicasPage],
];

const NAV = [["#/replicas", "Replicas"], ["#/environments", "Environments"], ["#/repositories", "Repositories"],
  ["#/automations", "Automations"], ["#/api-keys", "API keys"], ["#/usage", "Usage"], ["#/audit", "Audit log"]];

function currentPath() {
  return (location.hash.replace(/^#/, "") || "/").split("?")[0];
}

function useRoute() {
  const [path, setPath] = useState(currentPath());
  useEffect(() => {
    const changed = () => setPath(currentPath());
    addEventListener("hashchange", changed);
    return () => removeEventListener("hashchange", changed);
  }, []);
  return path;
}

function Routed({ path }) {
  const [page, setPage] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    let live = true;
    const route = ROUTES.find(([pattern]) => pattern.test(path));
    if (!route) { setPage({ Component: () => html`<p class="state">No such page.</p>`, props: {} }); return; }
    const [pattern, load, params] = route;
    load().then((Component) => live && setPage({ Component, props: params ? params(path.match(pattern)) : {} }))
      .catch((failure) => live && setError(failure));
    return () => { live = false; };
  }, [path]);
  if (error) return html`<${ErrorBox} error=${error} />`;
  if (!page) return html`<${Loading} />`;
  const { Component, props } = page;
  return html`<${Component} key=${path} ...${props} />`;
}

function Shell({ who, onSignOut }) {
  const path = useRoute();
  useEffect(() => {
    const heading = document.querySelector("main h1");
    if (heading) document.title = `${heading.textContent} · Replicas`;
  });
  return html`<a class="skip" href="#main" onClick=${(e) => { e.preventDefault(); document.getElementById("main")?.focus(); }}>Skip to content</a>
    <header class="top">
      <a class="brand" href="#/replicas">Replicas</a>
      <nav aria-label="Main"><ul>${NAV.map(([href, label]) => html`<li><a href=${href}
        aria-current=${(path === "/" ? "#/replicas" : `#${path}`).startsWith(href) ? "page" : undefined}>${label}</a></li>`)}</ul></nav>
      <div class="who"><span title="Signed in as">${who.display}</span>
        <button type="button" onClick=${onSignOut}>Sign out</button></div>
    </header>
    <main id="main" tabindex="-1"><${Routed} path=${path} /></main>`;
}

function App() {
  const [who, setWho] = useState(undefined);
  useEffect(() => {
    session.current().then((answer) => setWho(answer.session)).catch(() => setWho(null));
    return onUnauthorized(() => setWho(null));
  }, []);
  async function signOut() {
    try { await session.signOut(); } finally { setWho(null); location.hash = "#/"; }
  }
  if (who === undefined) return html`<${Loading} />`;
  if (who === null) return html`<${SignIn} onSignedIn=${setWho} />`;
  return html`<${Shell} who=${who} onSignOut=${signOut} />`;
}

render(html`<${App} />`, document.getElementById("app"));
