// Sign in with an API key (org or personal): it is exchanged for a session cookie and not kept by the page.
import { useState } from "preact/hooks";
import { html } from "../html.js";
import { session } from "../api.js";
import { ErrorBox } from "../components/ui.js";

export function SignIn({ onSignedIn }) {
  const [key, setKey] = useState("");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  async function submit(event) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const answer = await session.signIn(key.trim());
      setKey("");
      onSignedIn(answer.session);
    } catch (failure) {
      setError(failure);
    } finally {
      setBusy(false);
    }
  }
  return html`<main class="signin" id="main">
    <h1>Sign in to Replicas</h1>
    <form onSubmit=${submit} aria-describedby="signin-help">
      <label class="field"><span>API key</span>
        <input type="password" name="api_key" autocomplete="current-password" required autofocus
          placeholder="sk_replicas_…" value=${key} onInput=${(e) => setKey(e.target.value)} /></label>
      <p id="signin-help" class="hint">An org key or a personal key. On a new server, <code>replicas serve</code>
        prints the first key once when it starts (or it is <code>REPLICAS_BOOTSTRAP_API_KEY</code>); more with
        <code>replicas keys create --org default</code> on the server. The key is exchanged for a session; it is
        not stored in the browser.</p>
      <${ErrorBox} error=${error} />
      <button type="submit" class="primary" disabled=${busy}>${busy ? "Signing in…" : "Sign in"}</button>
    </form>
  </main>`;
}
