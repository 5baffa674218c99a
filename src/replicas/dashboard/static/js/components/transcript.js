// Agent events (spec §4.2: Claude Code, Codex, and the open shapes of the others) turned into transcript
// items: {kind: "user" | "assistant" | "thinking" | "tool" | "result" | "other", ...}. A tool call and its
// result share one item (matched by the call id), so the page shows each call as one foldable line. Items are
// only ever appended, except a tool call whose result arrives: that bumps its `revision`, so a view may
// skip re-rendering an item whose object and revision it has already drawn. A view subscribes to a transcript
// (`subscribe(redraw)`); whoever feeds it calls `notify()` once per batch of events (once per animation frame).

function textOf(content) {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) return content.map((b) => (typeof b === "string" ? b : b?.text || "")).join("");
  return content == null ? "" : JSON.stringify(content, null, 2);
}

export function toolSummary(name, input) {
  if (!input || typeof input !== "object") return name;
  const first = input.command || input.cmd || input.file_path || input.path || input.pattern || input.query
    || input.url || input.description;
  const line = Array.isArray(first) ? first.join(" ") : first;
  return line ? `${name}: ${String(line).split("\n")[0]}` : name;
}

export class Transcript {
  constructor() {
    this.items = [];
    this.tools = new Map();
    this.version = 0;
    this.listeners = new Set();
  }

  subscribe(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  notify() {
    for (const listener of this.listeners) listener();
  }

  push(item) { this.items.push(item); return item; }

  toolCall(callId, name, input) {
    const item = this.push({ kind: "tool", id: callId, name, input, summary: toolSummary(name, input), output: null, isError: false });
    if (callId) this.tools.set(callId, item);
  }

  toolResult(callId, output, isError = false) {
    const item = this.tools.get(callId);
    if (item) { item.output = textOf(output); item.isError = !!isError; item.revision = (item.revision || 0) + 1; }
    else this.push({ kind: "tool", id: callId, name: "result", summary: "tool result", output: textOf(output), isError });
  }

  add(event) {
    this.version++;
    const type = event?.type || "";
    const payload = event?.payload || {};
    if (type === "claude-assistant") {
      for (const block of payload.message?.content || []) {
        if (block.type === "text" && block.text) this.push({ kind: "assistant", text: block.text });
        else if (block.type === "thinking") this.push({ kind: "thinking", text: block.thinking || block.text || "" });
        else if (block.type === "tool_use") this.toolCall(block.id, block.name, block.input);
      }
    } else if (type === "claude-user") {
      const content = payload.message?.content;
      if (typeof content === "string") this.push({ kind: "user", text: content });
      else for (const block of content || []) {
        if (block.type === "tool_result") this.toolResult(block.tool_use_id, block.content, block.is_error);
        else if (block.type === "text" && block.text) this.push({ kind: "user", text: block.text });
      }
    } else if (type === "claude-result") {
      const ok = payload.subtype === "success" && !payload.is_error;
      this.push({ kind: "result", ok, text: ok ? "Turn complete" : (payload.errors || []).join("; ") || "Turn failed" });
    } else if (type === "event_msg") {
      if (payload.type === "user_message") this.push({ kind: "user", text: payload.message || "" });
      else if (payload.type === "agent_reasoning") this.push({ kind: "thinking", text: payload.text || "" });
    } else if (type === "response_item") {
      if (payload.type === "message" && payload.role === "assistant") this.push({ kind: "assistant", text: textOf(payload.content) });
      else if (payload.type === "message" && payload.role === "user") this.push({ kind: "user", text: textOf(payload.content) });
      else if (payload.type === "function_call" || payload.type === "custom_tool_call") {
        let input = payload.arguments ?? payload.input;
        try { if (typeof input === "string") input = JSON.parse(input); } catch { /* keep text */ }
        this.toolCall(payload.call_id, payload.name, typeof input === "string" ? { command: input } : input);
      } else if (payload.type === "function_call_output" || payload.type === "custom_tool_call_output") {
        this.toolResult(payload.call_id, payload.output);
      }
    } else if (type === "context-usage" || type === "claude-system") {
      this.version--; // bookkeeping, not shown
    } else if (type) {
      const text = payload.text || payload.message?.content || payload.message;
      this.push(typeof text === "string" && text
        ? { kind: "assistant", text } : { kind: "other", summary: type, output: JSON.stringify(payload, null, 2) });
    }
  }
}
