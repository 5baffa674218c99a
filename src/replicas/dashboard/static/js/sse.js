// Server-sent events over fetch (not EventSource): it can POST a body (the hook test streams), it sees the
// HTTP status of a refusal, and on a dropped connection it reconnects with Last-Event-ID, so a stream
// resumes after the last event it delivered instead of starting over.
//
//   const stop = openStream("/v1/replica/ID/events", { onEvent(e) { ... }, query: { after: 0 } });
//   stop();   // closes it for good

export function parseFrames(buffer, onFrame) {
  // Split complete frames off `buffer`; return the unfinished tail.
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
    if (frame.data.length) onFrame(frame);
    start = end + 2;
  }
}

export function openStream(url, { method = "GET", body, headers = {}, onEvent, onOpen, onError, onEnd,
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
