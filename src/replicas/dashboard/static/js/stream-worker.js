// The SharedWorker behind `openStream(url, { shared: true })` (sse.js): one connection per stream for every
// tab of this browser profile. A feed is one stream (its session, its starting id and its URL); it keeps what
// the stream delivered, so that a tab joining later gets it all, in order, then the live events. The snapshot
// frames a stream begins with (no numeric id) are kept by type, the latest of each. A feed opened with `latestBy`
// (a state stream, such as the replicas' status events) keeps instead only the latest frame of each item (keyed
// by `data[latestBy].id`) and the last event id: a tab joining late gets the current state, not every past
// frame. A feed nobody listens to closes after a short grace (a tab reloading finds it still open).
import { openStream } from "./sse.js";

const GRACE_MS = 3000;
const feeds = new Map(); // key -> Feed
const subscribers = new Map(); // subscription id -> { port, feed }

class Feed {
  constructor(key, url, lastEventId, latestBy) {
    this.key = key;
    this.ports = new Map(); // subscription id -> port
    this.events = []; // [data, frame] of every event with a numeric id, in order
    this.snapshot = new Map(); // frame.event -> [data, frame]; with latestBy: item id -> [data, frame]
    this.latestBy = latestBy || null;
    this.lastId = lastEventId;
    this.connected = false;
    this.idle = null;
    this.stop = openStream(url, {
      lastEventId,
      onEvent: (data, frame) => {
        if (this.latestBy) this.keepLatest(data, frame);
        else if (frame.id !== null && /^\d+$/.test(frame.id)) this.events.push([data, frame]);
        else this.snapshot.set(frame.event, [data, frame]);
        this.send({ kind: "event", data, frame });
      },
      onId: (id) => { this.lastId = id; this.send({ kind: "id", id }); },
      onOpen: () => { this.connected = true; this.send({ kind: "open" }); },
      onError: (error) => {
        this.connected = false;
        this.send({ kind: "error", message: error.message, status: error.status, body: error.body });
      },
      onEnd: () => {
        this.send({ kind: "end" });
        this.close();
      },
    });
  }

  keepLatest(data, frame) {
    if (frame.id !== null) this.lastId = frame.id;
    const item = data?.[this.latestBy]?.id;
    if (item === undefined) return;
    this.snapshot.delete(item); // re-inserted last: the map stays in the order the items last changed
    this.snapshot.set(item, [data, frame]);
  }

  send(message) {
    for (const [subscription, port] of this.ports) port.postMessage({ subscription, ...message });
  }

  join(subscription, port) {
    clearTimeout(this.idle);
    this.ports.set(subscription, port);
    const replay = (data, frame) => port.postMessage({ subscription, kind: "event", data, frame });
    for (const [data, frame] of this.snapshot.values()) replay(data, frame);
    for (const [data, frame] of this.events) replay(data, frame);
    if (this.latestBy && this.lastId !== null) port.postMessage({ subscription, kind: "id", id: this.lastId });
    if (this.connected) port.postMessage({ subscription, kind: "open" });
  }

  leave(subscription) {
    this.ports.delete(subscription);
    if (this.ports.size === 0) this.idle = setTimeout(() => this.close(), GRACE_MS);
  }

  close() {
    clearTimeout(this.idle);
    this.stop();
    if (feeds.get(this.key) === this) feeds.delete(this.key);
  }
}

function unsubscribe(subscription) {
  const entry = subscribers.get(subscription);
  if (!entry) return;
  subscribers.delete(subscription);
  entry.feed.leave(subscription);
}

self.onconnect = ({ ports: [port] }) => {
  const mine = new Set();
  port.onmessage = ({ data: message }) => {
    if (message.op === "hello" && message.lock && self.navigator.locks) {
      // Granted once the tab that holds it is gone: its streams are let go then.
      self.navigator.locks.request(message.lock, () => { for (const id of mine) unsubscribe(id); mine.clear(); });
    } else if (message.op === "subscribe") {
      let feed = feeds.get(message.key);
      if (!feed) {
        feed = new Feed(message.key, message.url, message.lastEventId, message.latestBy);
        feeds.set(message.key, feed);
      }
      mine.add(message.subscription);
      subscribers.set(message.subscription, { port, feed });
      feed.join(message.subscription, port);
    } else if (message.op === "unsubscribe") {
      mine.delete(message.subscription);
      unsubscribe(message.subscription);
    }
  };
  port.start();
};
