// Shared pieces: the loading, empty and error states every list shows, a modal dialog (native <dialog>,
// which traps focus and closes on Escape), a confirmation, and a hook that loads data with its state.
import { useEffect, useRef, useState, useCallback } from "preact/hooks";
import { html } from "../html.js";

export function Loading({ what = "Loading" }) {
  return html`<p class="state" role="status" aria-live="polite">${what}…</p>`;
}

export function Empty({ children }) {
  return html`<p class="state empty">${children}</p>`;
}

export function ErrorBox({ error, retry }) {
  if (!error) return null;
  return html`<div class="error" role="alert">
    <strong>${error.message}</strong>${error.details ? html`<span> ${error.details}</span>` : null}
    ${retry ? html` <button type="button" onClick=${retry}>Retry</button>` : null}
  </div>`;
}

// `const [data, state] = useLoad(() => api.x(), [deps])`; state = {loading, error, reload, set}.
export function useLoad(load, deps) {
  const [data, setData] = useState(undefined);
  const [error, setError] = useState(null);
  const [loading, setLoading] = useState(true);
  const generation = useRef(0);
  const reload = useCallback(async () => {
    const mine = ++generation.current;
    setLoading(true);
    try {
      const value = await load();
      if (mine === generation.current) { setData(value); setError(null); }
    } catch (failure) {
      if (mine === generation.current) setError(failure);
    } finally {
      if (mine === generation.current) setLoading(false);
    }
  }, deps);
  useEffect(() => { reload(); }, [reload]);
  return [data, { loading, error, reload, set: setData }];
}

export function Loaded({ state, data, empty, children }) {
  if (state.error) return html`<${ErrorBox} error=${state.error} retry=${state.reload} />`;
  if (data === undefined) return html`<${Loading} />`;
  if (empty && (Array.isArray(data) ? data.length === 0 : !data)) return html`<${Empty}>${empty}<//>`;
  return children(data);
}

export function Modal({ title, open, onClose, children }) {
  const ref = useRef(null);
  useEffect(() => {
    const dialog = ref.current;
    if (!dialog) return;
    if (open && !dialog.open) dialog.showModal();
    if (!open && dialog.open) dialog.close();
  }, [open]);
  return html`<dialog ref=${ref} aria-label=${title} onClose=${onClose} onCancel=${onClose}>
    <header class="dialog-head"><h2>${title}</h2>
      <button type="button" class="icon" aria-label="Close" onClick=${onClose}>×</button></header>
    ${open ? children : null}
  </dialog>`;
}

// A button that asks first: `<${ConfirmButton} label="Delete" question="Delete x?" onConfirm=${...} />`.
export function ConfirmButton({ label, question, onConfirm, danger = false, disabled = false }) {
  const [open, setOpen] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  async function confirm() {
    setBusy(true);
    try { await onConfirm(); setOpen(false); } catch (failure) { setError(failure); } finally { setBusy(false); }
  }
  return html`<button type="button" class=${danger ? "danger" : ""} disabled=${disabled}
      onClick=${() => { setError(null); setOpen(true); }}>${label}</button>
    <${Modal} title=${label} open=${open} onClose=${() => setOpen(false)}>
      <p>${question}</p><${ErrorBox} error=${error} />
      <div class="actions">
        <button type="button" onClick=${() => setOpen(false)}>Cancel</button>
        <button type="button" class=${danger ? "danger" : "primary"} disabled=${busy} onClick=${confirm}>
          ${busy ? "Working…" : `Yes, ${label.toLowerCase()}`}</button>
      </div>
    <//>`;
}

export function Field({ label, children, hint }) {
  return html`<label class="field"><span>${label}</span>${children}${hint ? html`<small>${hint}</small>` : null}</label>`;
}

export function StatusBadge({ status }) {
  return html`<span class=${`badge status-${status}`}>${status}</span>`;
}

export function when(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function ago(iso) {
  if (!iso) return "—";
  const seconds = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
  if (seconds < 60) return "just now";
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}
