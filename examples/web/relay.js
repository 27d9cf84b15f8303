// One WebSocket to a tacit relay (docs/relay.md): binary frames, requests
// answered by id, pushes handed to `onPush`. Frames are encoded and decoded
// by the wasm module (tacit-relay-proto), strictly.
import { decodeServerFrame } from "./pkg/tacit_wasm.js";

export class RelayError extends Error {
  constructor(error) {
    super(`${error.code}: ${error.message}`);
    this.name = "RelayError";
    this.code = error.code;
    this.retryAfterMs = error.retryAfterMs;
  }
}

export class RelayConnection {
  /** Opens a connection to `url`; `onPush(message)` gets every frame that
   * is not a response (pushes, queue-empty, prekeys-low, ...), in order. */
  static open(url, { onPush = () => {}, onClose = () => {} } = {}) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      ws.binaryType = "arraybuffer";
      const conn = new RelayConnection(ws, onPush, onClose);
      ws.onopen = () => resolve(conn);
      ws.onerror = () => reject(new Error(`cannot reach the relay at ${url}`));
    });
  }

  constructor(ws, onPush, onClose) {
    this.ws = ws;
    this.nextId = 1;
    this.waiting = new Map();
    this.onPush = onPush;
    // Pushes are handled one at a time, in arrival order.
    this.queue = Promise.resolve();
    ws.onmessage = (event) => this.frame(new Uint8Array(event.data));
    ws.onclose = () => {
      for (const { reject } of this.waiting.values()) reject(new Error("connection closed"));
      this.waiting.clear();
      onClose();
    };
  }

  frame(bytes) {
    let message;
    try {
      message = decodeServerFrame(bytes);
    } catch (e) {
      console.warn("a frame from the relay did not decode", e);
      return;
    }
    if (message.type === "response") {
      const waiter = this.waiting.get(message.requestId);
      if (!waiter) return;
      this.waiting.delete(message.requestId);
      if (message.ok) waiter.resolve(message.reply);
      else waiter.reject(new RelayError(message.error));
      return;
    }
    this.queue = this.queue.then(() => this.onPush(message)).catch((e) => console.error(e));
  }

  /** Sends the frame `encode(requestId)` makes (or resolves to);
   * resolves to the reply. Rejects on a connection that is not open,
   * before encoding if it is not open then (a frame sent on a closed
   * WebSocket is dropped without an error, and nothing would answer). */
  async request(encode) {
    const closed = () => new Error("connection closed");
    if (this.ws.readyState !== WebSocket.OPEN) throw closed();
    const id = this.nextId++;
    const bytes = await encode(id);
    return new Promise((resolve, reject) => {
      if (this.ws.readyState !== WebSocket.OPEN) return reject(closed());
      this.waiting.set(id, { resolve, reject });
      this.ws.send(bytes);
    });
  }

  close() {
    this.ws.close();
  }
}
