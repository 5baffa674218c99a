// The one API client: every request the dashboard makes is here (pages never call fetch). It speaks the
// public /v1 API with the session cookie; writes carry the session's CSRF token in X-CSRF-Token.
import { openStream } from "./sse.js";

// Every request pins the API version: with it, a create answers at once with `preparing` (spec §2.3).
export const API_VERSION = "2026-05-17";
let csrfToken = null;
const unauthorizedListeners = new Set();

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error || `HTTP ${status}`);
    this.status = status;
    this.details = body?.details || null;
  }
}

export function onUnauthorized(listener) {
  unauthorizedListeners.add(listener);
  return () => unauthorizedListeners.delete(listener);
}

function csrf() {
  if (csrfToken) return csrfToken;
  const found = document.cookie.match(/(?:^|;\s*)replicas_csrf=([^;]+)/);
  return found ? decodeURIComponent(found[1]) : "";
}

function withQuery(path, query) {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

async function call(method, path, { query, body, signal } = {}) {
  const headers = { Accept: "application/json", "X-Replicas-Api-Version": API_VERSION };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["X-CSRF-Token"] = csrf();
  const response = await fetch(withQuery(path, query), { method, headers, signal, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { error: text }; }
  if (!response.ok) {
    if (response.status === 401 && !path.startsWith("/auth/")) unauthorizedListeners.forEach((f) => f());
    throw new ApiError(response.status, data);
  }
  return data;
}

const get = (path, query) => call("GET", path, { query });
const post = (path, body, query) => call("POST", path, { body: body ?? {}, query });
const patch = (path, body) => call("PATCH", path, { body });
const put = (path, body) => call("PUT", path, { body });
const del = (path, body) => call("DELETE", path, { body });
const id = encodeURIComponent;

function stream(path, options) {
  const headers = options.method && options.method !== "GET" ? { "X-CSRF-Token": csrf() } : {};
  return openStream(path, { ...options, headers });
}

export const session = {
  current: () => get("/auth/session"),
  async signIn(apiKey) {
    const answer = await post("/auth/session", { api_key: apiKey });
    csrfToken = answer.session.csrf_token;
    return answer;
  },
  async signOut() {
    await del("/auth/session");
    csrfToken = null;
  },
};

const R = (replicaId) => `/v1/replica/${id(replicaId)}`;
const W = (workspaceId) => `/v1/workspaces/${id(workspaceId)}`;
const E = (environmentId) => `/v1/environments/${id(environmentId)}`;

export const replicas = {
  list: (query) => get("/v1/replica", query),
  search: (query) => get("/v1/replicas/search", query),
  // Shared by this profile's tabs; the worker hands a joining tab the latest frame of each replica.
  statusEvents: (onEvent, options = {}) =>
    stream("/v1/replicas/status-events", { onEvent, shared: true, latestBy: "replica", ...options }),
  // Showing a replica leaves it asleep (`wake=false`); `wake` reads it as the API's default does, waking it.
  get: (replicaId, include) => get(R(replicaId), { include, wake: "false" }),
  wake: (replicaId) => get(R(replicaId)),
  create: (body) => post("/v1/replica", body),
  remove: (replicaId) => del(R(replicaId)),
  send: (replicaId, body) => post(`${R(replicaId)}/messages`, body),
  chats: (replicaId) => get(`${R(replicaId)}/chats`),
  createChat: (replicaId, body) => post(`${R(replicaId)}/chats`, body),
  deleteChat: (replicaId, chatId) => del(`${R(replicaId)}/chats/${id(chatId)}`),
  history: (replicaId, query) => get(`${R(replicaId)}/history`, query),
  hooks: (replicaId) => get(`${R(replicaId)}/hooks`),
  queue: (replicaId, chatId) => get(`${R(replicaId)}/chats/${id(chatId)}/queue`),
  clearQueue: (replicaId, chatId) => del(`${R(replicaId)}/chats/${id(chatId)}/queue`),
  removeQueued: (replicaId, chatId, messageId) => del(`${R(replicaId)}/chats/${id(chatId)}/queue/${id(messageId)}`),
  reorderQueued: (replicaId, chatId, messageId, position) =>
    patch(`${R(replicaId)}/chats/${id(chatId)}/queue/reorder`, { messageId, position }),
  interrupt: (replicaId, chatId) => post(`${R(replicaId)}/chats/${id(chatId)}/interrupt`),
  canvas: (replicaId) => get(`${R(replicaId)}/canvas`),
  canvasFile: (replicaId, filename) => get(`${R(replicaId)}/canvas/${filename.split("/").map(id).join("/")}`),
  events: (replicaId, onEvent, options = {}) => stream(`${R(replicaId)}/events`, { onEvent, ...options }),
  sleep: (replicaId) => post(`${W(replicaId)}/sleep`),
  archive: (replicaId) => post(`${W(replicaId)}/archive`),
  previews: (replicaId) => get(`${W(replicaId)}/previews`),
};

export const terminal = {
  list: (workspaceId) => get(`${W(workspaceId)}/terminal/sessions`),
  create: (workspaceId, cols, rows) => post(`${W(workspaceId)}/terminal/sessions`, { cols, rows }),
  input: (workspaceId, sessionId, body) => post(`${W(workspaceId)}/terminal/sessions/${id(sessionId)}/input`, body),
  resize: (workspaceId, sessionId, cols, rows) =>
    post(`${W(workspaceId)}/terminal/sessions/${id(sessionId)}/resize`, { cols, rows }),
  remove: (workspaceId, sessionId) => del(`${W(workspaceId)}/terminal/sessions/${id(sessionId)}`),
  stream: (workspaceId, sessionId, onEvent, options = {}) =>
    stream(`${W(workspaceId)}/terminal/sessions/${id(sessionId)}/stream`, { onEvent, ...options }),
};

function nested(name, listKey, itemKey) {
  return {
    list: async (environmentId) => (await get(`${E(environmentId)}/${name}`))[listKey],
    create: async (environmentId, body) => (await post(`${E(environmentId)}/${name}`, body))[itemKey],
    update: async (environmentId, itemId, body) => (await patch(`${E(environmentId)}/${name}/${id(itemId)}`, body))[itemKey],
    remove: (environmentId, itemId) => del(`${E(environmentId)}/${name}/${id(itemId)}`),
  };
}

export const environments = {
  list: async (scope) => (await get("/v1/environments", { scope })).environments,
  get: async (environmentId) => (await get(E(environmentId))).environment,
  create: async (body) => (await post("/v1/environments", body)).environment,
  update: async (environmentId, body) => (await patch(E(environmentId), body)).environment,
  remove: (environmentId) => del(E(environmentId)),
  variables: nested("variables", "environment_variables", "environment_variable"),
  files: nested("files", "environment_files", "environment_file"),
  mcps: nested("mcps", "environment_mcps", "environment_mcp"),
  skills: nested("skills", "environment_skills", "environment_skill"),
  testMcp: (environmentId, mcpId, onEvent, options = {}) =>
    stream(`${E(environmentId)}/mcps/${id(mcpId)}/test/stream`, { method: "POST", body: {}, reconnect: false, onEvent, ...options }),
  // A server not saved yet ({name, transport, config}, as the add/edit form holds it).
  testMcpDraft: (environmentId, draft, onEvent, options = {}) =>
    stream(`${E(environmentId)}/mcps/test/stream`, { method: "POST", body: draft, reconnect: false, onEvent, ...options }),
  searchSkills: async (q) => (await get("/v1/environment-skills/search", { q })).skills,
  warmHooks: (environmentId) => get(`${E(environmentId)}/warm-hooks`),
  saveWarmHook: (environmentId, content) => post(`${E(environmentId)}/warm-hooks/save`, { content }),
  testWarmHook: (environmentId, content, onEvent, options = {}) =>
    stream(`${E(environmentId)}/warm-hooks/save-test/stream`,
      { method: "POST", body: { content, mode: "test_only" }, reconnect: false, onEvent, ...options }),
  startHooks: (environmentId) => get(`${E(environmentId)}/start-hooks`),
  saveStartHook: (environmentId, content) => post(`${E(environmentId)}/start-hooks/save`, { content }),
  testStartHook: (environmentId, content, onEvent, options = {}) =>
    stream(`${E(environmentId)}/start-hooks/test/stream`,
      { method: "POST", body: { content }, reconnect: false, onEvent, ...options }),
  setWarmPool: (environmentId, enabled) => put(`${E(environmentId)}/warm-pools`, { enabled }),
  warmPoolWorkspaces: async (configId) => (await get(`/v1/warm-pools/${id(configId)}/workspaces`)).workspaces,
};

export const repositories = {
  list: async () => (await get("/v1/replica/repositories")).repositories,
  create: async (body) => (await post("/v1/replica/repositories", body)).repository,
  remove: (repositoryId) => del(`/v1/replica/repositories/${id(repositoryId)}`),
  sets: async () => (await get("/v1/replica/repository-sets")).repository_sets,
  createSet: async (body) => (await post("/v1/replica/repository-sets", body)).repository_set,
  removeSet: (setId) => del(`/v1/replica/repository-sets/${id(setId)}`),
};

export const automations = {
  list: (query) => get("/v1/automations", query),
  get: async (automationId) => (await get(`/v1/automations/${id(automationId)}`)).automation,
  create: async (body) => (await post("/v1/automations", body)).automation,
  update: async (automationId, body) => (await patch(`/v1/automations/${id(automationId)}`, body)).automation,
  remove: (automationId) => del(`/v1/automations/${id(automationId)}`),
  trigger: (automationId) => post(`/v1/automations/${id(automationId)}/trigger`),
  executions: (automationId, query) => get(`/v1/automations/${id(automationId)}/executions`, query),
};

export const apiKeys = {
  list: (query) => get("/v1/user/api-keys", query),
  create: (name) => post("/v1/user/api-keys", { name }),
  remove: (keyId) => del(`/v1/user/api-keys/${id(keyId)}`),
};

// Org keys (our /v1/api-keys, org admins only): the same shapes as personal keys.
export const orgApiKeys = {
  list: (query) => get("/v1/api-keys", query),
  create: (name) => post("/v1/api-keys", { name }),
  remove: (keyId) => del(`/v1/api-keys/${id(keyId)}`),
};

export const usage = { report: (query) => get("/v1/usage", query), daily: (query) => get("/v1/usage/daily", query) };
export const audit = { list: (query) => get("/v1/audit-log", query) };
