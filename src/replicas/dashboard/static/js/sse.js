// Server-sent events over fetch (not EventSource): it can POST a body (the hook test streams), it sees the
// HTTP status of a refusal, and on a dropped connection it reconnects with Last-Event-ID, so a stream
// resumes after the last event it delivered instead of starting over.
//
//   const stop = openStream("/v1/replica/ID/events", { onEvent(e) { ... }, lastEventId: "0" });
//   stop();   // closes it for good
//
// With `shared: true` (a GET stream that reconnects), every tab of this browser profile that opens the same
// stream shares one connection, held by a SharedWorker (stream-worker.js): browsers give a host six
// HTTP/1.1 connections per profile, so ten tabs each holding their own stream would starve each other and every
// other request. The worker replays to a tab what the stream delivered before the tab joined, then the live
// events; a tab skips any event whose id it has passed, so each arrives once and in order. Without
// SharedWorker, or if the worker fails, the tab holds its own connection, resuming from the last event it got.

export function parseFrames(buffer, onFrame) {
  // Split complete frames off `buffer`; return the unfinished tail. A frame with an id and no data is handed
  // on too (it moves the stream's last event id, as in EventSource); one with neither is not.
  let start = 0;
  for (;;) {
    const end = buffer.indexOf("\n\n", start);
    if (end < 0) return buffer.slice(start);
    const frame = { id: null, event: "message", data: [] };
    for (const line of buffer.slice(start, end).split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "id") frame.id = value;
      else if (field === "event") frame.event = value;
      else if (field === "data") frame.data.push(value);
    }
    if (frame.data.length || frame.id !== null) onFrame(frame);
    start = end + 2;
  }
}

export function openStream(url, options = {}) {
  const { method = "GET", reconnect = true, shared = false } = options;
  if (shared && method === "GET" && reconnect && typeof SharedWorker === "function") return sharedStream(url, options);
  return ownStream(url, options);
}

function ownStream(url, { method = "GET", body, headers = {}, onEvent, onId, onOpen, onError, onEnd,
                          reconnect = true, lastEventId = null } = {}) {
  const controller = new AbortController();
  let stopped = false;
  let lastId = lastEventId;
  let delay = 250;

  async function connect() {
    const sendHeaders = { Accept: "text/event-stream", ...headers };
    if (lastId !== null) sendHeaders["Last-Event-ID"] = lastId;
    if (body !== undefined) sendHeaders["Content-Type"] = "application/json";
    const response = await fetch(url, { method, headers: sendHeaders, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body), signal: controller.signal });
    if (!response.ok) {
      let error = null;
      try { error = await response.json(); } catch { /* not JSON */ }
      const failure = new Error(error?.error || `HTTP ${response.status}`);
      failure.status = response.status;
      failure.body = error;
      throw failure;
    }
    onOpen?.();
    delay = 250;
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer = parseFrames((buffer + value).replace(/\r\n?/g, "\n"), (frame) => {
        if (frame.id !== null && /^\d+$/.test(frame.id)) lastId = frame.id;
        if (!frame.data.length) { onId?.(frame.id); return; }
        let data = frame.data.join("\n");
        try { data = JSON.parse(data); } catch { /* plain text data */ }
        onEvent?.(data, frame);
      });
    }
  }

  (async () => {
    while (!stopped) {
      try {
        await connect();
        if (!reconnect) break;
      } catch (error) {
        if (stopped) return;
        onError?.(error);
        // A refusal (401, 404) will not get better by retrying; a network drop will.
        if (!reconnect || (error.status && error.status < 500)) break;
      }
      if (stopped) return;
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 5000);
    }
    if (!stopped) onEnd?.();
  })();

  return () => { stopped = true; controller.abort(); };
}

// -- one connection per profile ---------------------------------------------------------------------------

let worker = null;
let workerFailed = false;
const subscriptions = new Map(); // subscription id -> its handlers
// The worker notices a closed tab by this lock: held for the tab's life, granted to the worker once it is gone.
// (Web Locks need a secure context: over plain http to another host a closed tab's streams stay until the last
// tab of the profile closes, which ends the worker.)
const newId = () => `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
const tabLock = `replicas-tab-${newId()}`;

function sharedWorker() {
  if (worker || workerFailed) return worker;
  try {
    worker = new SharedWorker(new URL("./stream-worker.js", import.meta.url), { type: "module", name: "replicas-streams" });
  } catch {
    workerFailed = true;
    return null;
  }
  worker.port.onmessage = ({ data }) => subscriptions.get(data.subscription)?.receive(data);
  worker.onerror = () => {
    // The worker could not start (or died): every shared stream of this tab goes on with its own connection.
    workerFailed = true;
    worker = null;
    for (const subscription of [...subscriptions.values()]) subscription.fallBack();
  };
  worker.port.start();
  const port = worker.port;
  // Told to the worker only once held, so that the worker's own request for it waits for this tab to go.
  navigator.locks?.request(tabLock, () => { port.postMessage({ op: "hello", lock: tabLock }); return new Promise(() => {}); });
  return worker;
}

function sessionOf() {
  // A stream belongs to the session that opened it: a tab of another session (signed out and in again) must
  // not be handed what the worker's connection, made with the old cookie, received.
  const found = document.cookie.match(/(?:^|;\s*)replicas_csrf=([^;]+)/);
  return found ? found[1] : "";
}

function sharedStream(url, options) {
  // latestBy: the stream is a state (each frame the whole item `data[latestBy]`), so the worker keeps the latest
  // frame of each item, and frames may share an id (a cursor): only an older id is skipped.
  const { onEvent, onId, onOpen, onError, onEnd, lastEventId = null, latestBy = null } = options;
  const port = sharedWorker()?.port;
  if (!port) return ownStream(url, options);
  const id = newId();
  let lastId = lastEventId;
  let stopOwn = null;
  const subscription = {
    receive(message) {
      if (message.kind === "event") {
        const { frame } = message;
        if (frame.id !== null && /^\d+$/.test(frame.id)) {
          if (lastId !== null && /^\d+$/.test(lastId) && (latestBy ? Number(frame.id) < Number(lastId)
            : Number(frame.id) <= Number(lastId))) return;
          lastId = frame.id;
        }
        onEvent?.(message.data, frame);
      } else if (message.kind === "id") {
        if (lastId === null || !/^\d+$/.test(lastId) || Number(message.id) > Number(lastId)) lastId = message.id;
        onId?.(message.id);
      } else if (message.kind === "open") onOpen?.();
      else if (message.kind === "error") {
        const failure = new Error(message.message);
        failure.status = message.status;
        failure.body = message.body;
        onError?.(failure);
      } else if (message.kind === "end") {
        subscriptions.delete(id);
        onEnd?.();
      }
    },
    fallBack() {
      subscriptions.delete(id);
      stopOwn = ownStream(url, { ...options, lastEventId: lastId });
    },
  };
  subscriptions.set(id, subscription);
  port.postMessage({ op: "subscribe", subscription: id, key: `${sessionOf()} ${lastEventId} ${latestBy} ${url}`, url,
    lastEventId, latestBy });
  return () => {
    if (stopOwn) return stopOwn();
    if (subscriptions.delete(id)) port.postMessage({ op: "unsubscribe", subscription: id });
  };
}
