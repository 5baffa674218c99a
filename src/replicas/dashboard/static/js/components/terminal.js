// A shell in the workspace over the terminal-session endpoints: xterm.js draws it, keystrokes go in numbered
// batches (generation, sequence; the engine applies each once), output comes from the session's stream
// (a replay, then output events, then exit), which resumes with a fresh replay after a drop.
import { useEffect, useRef, useState } from "preact/hooks";
import { html } from "../html.js";
import { terminal as api } from "../api.js";
import { ErrorBox } from "./ui.js";

const COLS = 100;
const ROWS = 22;

export function TerminalPanel({ workspaceId }) {
  const box = useRef(null);
  const [error, setError] = useState(null);
  const [state, setState] = useState("starting");
  useEffect(() => {
    let closed = false;
    let stop = () => {};
    let term = null;
    (async () => {
      try {
        const link = document.createElement("link");
        link.rel = "stylesheet";
        link.href = "/assets/vendor/xterm.css";
        document.head.append(link);
        const { Terminal } = await import("@xterm/xterm");
        const created = await api.create(workspaceId, COLS, ROWS);
        if (closed) return;
        const sessionId = created.session.id;
        term = new Terminal({ cols: COLS, rows: ROWS, convertEol: false, cursorBlink: true, fontSize: 13 });
        term.open(box.current);
        term.focus();
        const generation = Date.now() % 1_000_000_000;
        let sequence = 0;
        let sending = Promise.resolve();
        term.onData((data) => {
          const batch = { data, generation, sequence: sequence++ };
          sending = sending.then(() => api.input(workspaceId, sessionId, batch)).catch(setError);
        });
        stop = api.stream(workspaceId, sessionId, (data, frame) => {
          if (frame.event === "replay") { term.reset(); term.write(data.data || ""); setState("connected"); }
          else if (frame.event === "output") term.write(data.data || "");
          else if (frame.event === "exit") { setState(`exited (${data.exitCode})`); setTimeout(() => stop(), 0); }
        }, { onError: setError });
      } catch (failure) {
        setError(failure);
      }
    })();
    return () => { closed = true; stop(); term?.dispose(); };
  }, [workspaceId]);
  return html`<div>
    <p class="hint" role="status">Terminal: ${state}</p>
    <${ErrorBox} error=${error} />
    <div class="terminal-box" ref=${box} role="application" aria-label="Terminal"></div>
  </div>`;
}
