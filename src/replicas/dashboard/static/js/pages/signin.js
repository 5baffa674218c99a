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
      <p id="signin-help" class="hint">An org key (from <code>replicas serve</code>'s bootstrap key or an admin) or a
        personal key. The key is exchanged for a session; it is not stored in the browser.</p>
      <${ErrorBox} error=${error} />
      <button type="submit" class="primary" disabled=${busy}>${busy ? "Signing in…" : "Sign in"}</button>
    </form>
  </main>`;
}
