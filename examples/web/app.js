// The tacit web chat: one device of a user in the browser, talking to
// tacit-chat users through a tacit relay. State (keys, sessions, device
// lists, history) lives in IndexedDB, every record sealed under a key
// derived from the passphrase (docs/web.md).
import init, {
  Tacit,
  encodeAck,
  encodeFetchBundles,
  encodeFetchDeviceList,
  encodeGetChallenge,
} from "./pkg/tacit_wasm.js";
import { IdbStorage } from "./pkg/idb-storage.js";
import { RelayConnection, RelayError } from "./relay.js";

const TEXT = 1;
const DELIVERY_RECEIPT = 3;
const READ_RECEIPT = 4;
const SESSION_CONTROL = 6;
const STATUS_RANK = { sent: 1, delivered: 2, read: 3 };
const encoder = new TextEncoder();
const decoder = new TextDecoder();
const $ = (id) => document.getElementById(id);
const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
const unhex = (s) => new Uint8Array(s.match(/../g).map((h) => parseInt(h, 16)));

let device; // the Tacit device, once unlocked
let account; // the logged-in connection: pushes, acknowledgements, prekeys
let courier; // the anonymous connection: lists, bundles, submissions
let peer = "";
let fallbacks = 0; // submissions sent logged in for want of a delivery token
let rotations = 0; // delivery tokens rotated since the page loaded
const warned = new Set(); // users whose identity change is on screen

// ---- the store key: PBKDF2-SHA256 of the passphrase ------------------------

async function storeKey(passphrase) {
  let salt = localStorage.getItem("tacit-salt");
  if (!salt) {
    salt = hex(crypto.getRandomValues(new Uint8Array(16)));
    localStorage.setItem("tacit-salt", salt);
  }
  const base = await crypto.subtle.importKey("raw", encoder.encode(passphrase), "PBKDF2", false, [
    "deriveBits",
  ]);
  const bits = await crypto.subtle.deriveBits(
    { name: "PBKDF2", hash: "SHA-256", salt: unhex(salt), iterations: 600000 },
    base,
    256,
  );
  return new Uint8Array(bits);
}

// ---- history: one sealed record per message --------------------------------

function historyName(entry) {
  return `h/${String(entry.ts).padStart(15, "0")}/${entry.id}`;
}

async function saveEntry(entry) {
  await device.putRecord(historyName(entry), encoder.encode(JSON.stringify(entry)));
}

function entries() {
  return device.recordNames("h/").map((n) => JSON.parse(decoder.decode(device.record(n))));
}

function findEntry(id) {
  const name = device.recordNames("h/").find((n) => n.endsWith(`/${id}`));
  return name ? JSON.parse(decoder.decode(device.record(name))) : undefined;
}

// ---- the page ---------------------------------------------------------------

function status(text) {
  $("status").textContent = text;
}

/** Shows a notice; one about a peer's identity (first contact, a change)
 * is kept in the store with the history. */
function notice(text, kind = "info", keep = kind !== "error") {
  if (keep && device) {
    const ts = Date.now();
    const name = `n/${String(ts).padStart(15, "0")}/${hex(crypto.getRandomValues(new Uint8Array(4)))}`;
    device.putRecord(name, encoder.encode(JSON.stringify({ text, kind, ts }))).catch(console.error);
  }
  return showNotice(text, kind);
}

function showNotice(text, kind) {
  const li = document.createElement("li");
  li.className = `notice ${kind}`;
  li.textContent = text;
  $("notices").append(li);
  return li;
}

function render() {
  const log = $("log");
  log.replaceChildren();
  for (const e of entries()) {
    const li = document.createElement("li");
    li.className = `msg ${e.dir}`;
    li.dataset.id = e.id;
    li.dataset.dir = e.dir;
    li.dataset.status = e.status ?? "";
    li.dataset.newSession = String(!!e.newSession);
    const who = e.dir === "out" ? `you → ${e.peer}` : e.peer;
    const time = new Date(e.ts).toLocaleTimeString();
    const mark = e.dir === "out" ? ` [${e.status}]` : "";
    li.textContent = `${time}  ${who}: ${e.text}${mark}`;
    log.append(li);
  }
  log.scrollTop = log.scrollHeight;
  showSafety();
}

function showSafety() {
  const box = $("safety");
  if (!peer) {
    box.textContent = "";
    return;
  }
  try {
    const digits = device.safetyNumber(peer);
    box.dataset.peer = peer;
    box.dataset.digits = digits;
    box.textContent = `Safety number with ${peer}: ${digits.match(/.{5}/g).join(" ")}`;
  } catch {
    box.textContent = `No safety number with ${peer} yet (no message exchanged).`;
  }
}

// ---- relay ------------------------------------------------------------------

function relayUrl() {
  return $("relay").value || `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1`;
}

/** Logs `device` in (registering it again is a login), publishing its
 * prekeys when the relay lacks them, and sets its delivery token (drawn
 * and stored the first time: docs/web.md, "Delivery tokens"). */
async function connect() {
  const url = relayUrl();
  const expected = new URL(url).hostname;
  account = await RelayConnection.open(url, {
    onPush: receive,
    onClose: () => {
      $("rotate-token").disabled = true;
      status("disconnected: reload the page to reconnect");
    },
  });
  courier = await RelayConnection.open(url);
  const challenge = await account.request((id) => encodeGetChallenge(id));
  if (challenge.serverName !== expected) {
    throw new Error(`the relay calls itself ${challenge.serverName}, not ${expected}`);
  }
  const info = await account.request((id) =>
    device.registerFrame(id, challenge.serverName, challenge.challenge, Date.now()),
  );
  registered = true;
  if (!info.hasSignedPrekey || !info.hasKemPrekey || info.registered) {
    await account.request((id) => device.uploadPreKeysFrame(id));
  }
  await account.request((id) => device.deliveryTokenFrame(id));
  $("rotate-token").disabled = false;
  status(`connected as ${device.userId}.${device.deviceId}`);
}

/** The user's list from the relay, trusted when it verifies and is new;
 * resolves to the update ("first-contact", "unchanged", "updated"). */
async function refreshList(userId) {
  const reply = await courier.request((id) => encodeFetchDeviceList(id, userId));
  try {
    const update = await device.updateDeviceList(reply.deviceList);
    if (update === "first-contact") {
      notice(
        `First contact with ${userId}: compare the safety number below with theirs to verify.`,
        "first-contact",
      );
    }
    return update;
  } catch (e) {
    if (e.code === "stale-device-list") return "unchanged";
    if (e.code === "user-key-changed") identityChanged(userId, reply.deviceList);
    throw e;
  }
}

/** A user now shows another user key than the trusted one: said loudly;
 * its messages are held (sealed, in the store) and read only once the
 * user accepts the new key. */
function identityChanged(userId, list) {
  if (warned.has(userId)) return;
  warned.add(userId);
  const li = notice(
    `${userId}'s identity changed (a new user key). Messages from it are held until you accept ` +
      `the new key; compare the new safety number first.`,
    "identity-change",
    false,
  );
  const button = document.createElement("button");
  button.textContent = `Accept ${userId}'s new key`;
  button.onclick = async () => {
    const fresh = list ?? (await courier.request((id) => encodeFetchDeviceList(id, userId))).deviceList;
    await device.acceptUserKey(fresh);
    button.remove();
    warned.delete(userId);
    notice(`${userId}'s new key is trusted.`);
    for (const name of device.recordNames(`held/${userId}/`)) {
      try {
        await openAndShow(device.record(name));
      } catch (e) {
        notice(`A held message could not be read (${e.code ?? e.message}).`, "error");
      }
      await device.putRecord(name, null);
    }
    render();
  };
  li.append(" ", button);
}

/** Keeps an envelope that came under another user key than the trusted one. */
async function hold(userId, envelope) {
  const name = `held/${userId}/${String(Date.now()).padStart(15, "0")}${hex(crypto.getRandomValues(new Uint8Array(4)))}`;
  await device.putRecord(name, envelope);
  identityChanged(userId);
}

/** Trusts `userId`'s current list and starts a session with every device
 * of it that has none. */
async function prepare(userId) {
  await refreshList(userId);
  for (const missing of device.missingSessions(userId)) {
    const reply = await courier.request((id) =>
      encodeFetchBundles(id, missing.userId, missing.deviceId),
    );
    for (const b of reply.bundles.filter((b) => b.deviceId === missing.deviceId)) {
      const changed = await device.processBundle(missing.userId, missing.deviceId, b.bundle);
      if (changed) notice(`${missing.userId}.${missing.deviceId}'s device identity changed.`, "identity-change");
    }
  }
}

/** Submits on the anonymous connection, with the recipients' recorded
 * delivery tokens (the frames carry them). A submission the relay refuses
 * there for want of a token (first contact, a rotated one: docs/web.md,
 * "Delivery tokens") goes again on the logged-in connection, where the
 * relay takes it within the account's tokenless quota. */
async function submitFrame(encode) {
  try {
    return await courier.request(encode);
  } catch (e) {
    if (!(e instanceof RelayError) || e.code !== "DeliveryTokenRefused") throw e;
    fallbacks += 1;
    document.body.dataset.fallbacks = String(fallbacks);
    return await account.request(encode);
  }
}

/** Submits pairwise envelopes, each once the relay stored the one before. */
async function submitAll(out) {
  for (const o of out) {
    await submitFrame((id) => device.submitFrame(id, o.userId, o.deviceId, o.envelope));
  }
}

async function seal(userId, kind, body) {
  await prepare(userId);
  const out = await device.seal(userId, kind, body, Date.now());
  await submitAll(out);
  return out;
}

// ---- groups -----------------------------------------------------------------

function renderGroups() {
  const select = $("group");
  const chosen = select.value;
  select.replaceChildren();
  for (const g of device.groups().filter((g) => g.active)) {
    const option = document.createElement("option");
    option.value = hex(g.groupId);
    option.textContent = g.title;
    select.append(option);
  }
  if (chosen) select.value = chosen;
  document.body.dataset.groups = String(select.options.length);
}

/** Records a group message read. */
async function saveGroupEntry(m) {
  const id = hex(m.messageId);
  if (findEntry(id)) return;
  const title = device.group(m.groupId)?.title ?? "group";
  const text = decoder.decode(m.body);
  await saveEntry({ dir: "in", peer: `[${title}] ${m.senderUserId}`, group: hex(m.groupId), id, ts: m.timestamp, text });
}

async function createGroup(title, members) {
  for (const userId of members) await prepare(userId);
  const update = await device.createGroup(title, members, Date.now());
  await submitAll(update.outgoing);
  notice(`Group ${title} created with ${members.join(", ")}.`);
  renderGroups();
  $("group").value = hex(update.group.groupId);
}

async function sendGroup(groupId, text) {
  const group = device.group(groupId);
  for (const m of group.members) {
    if (m.userId !== device.userId) await prepare(m.userId);
  }
  const ts = Date.now();
  const sent = await device.sendGroupText(groupId, text, ts);
  // The sender chain reaches every member before the message does.
  await submitAll(sent.outgoing);
  await submitFrame((id) => device.submitGroupFrame(id, sent));
  await saveEntry({ dir: "out", peer: `[${group.title}]`, group: hex(groupId), id: hex(sent.messageId), ts, text, status: "sent" });
  render();
}

async function send(userId, text) {
  const ts = Date.now();
  const out = await seal(userId, TEXT, encoder.encode(text));
  if (out.length === 0) throw new Error(`${userId} has no device to send to`);
  await saveEntry({ dir: "out", peer: userId, id: hex(out[0].messageId), ts, text, status: "sent" });
  render();
}

async function receipt(userId, kind, messageId) {
  try {
    await seal(userId, kind, messageId);
  } catch (e) {
    console.warn("receipt not sent", e);
  }
}

/** Opens an envelope, fetching the sender's list once when the sender is
 * new or its device not yet listed. Records and shows what it holds. */
async function openAndShow(envelope) {
  let got;
  try {
    got = await device.openEnvelope(envelope);
  } catch (e) {
    if (e.code !== "unknown-user" && e.code !== "device-not-listed") throw e;
    await refreshList(e.userId);
    got = await device.openEnvelope(envelope);
  }
  const from = got.senderUserId;
  const id = hex(got.messageId);
  if (got.identityChanged) notice(`${from}.${got.senderDeviceId}'s device identity changed.`, "identity-change");
  if (got.kind === SESSION_CONTROL) {
    const title = got.groupId ? device.group(got.groupId)?.title : undefined;
    if (got.groupRefusal) notice(`A group change from ${from} was refused (${got.groupRefusal}).`, "error");
    else if (got.groupChanged) notice(`Group ${title} changed (by ${from}).`);
    for (const m of got.groupMessages) await saveGroupEntry(m);
    renderGroups();
    return {};
  }
  if (got.kind === TEXT) {
    if (!findEntry(id)) {
      const text = decoder.decode(got.body);
      await saveEntry({ dir: "in", peer: from, id, ts: got.timestamp, text, newSession: got.newSession });
      if (!peer) {
        peer = from;
        $("peer").value = from;
      }
    }
    return { reply: [from, got.messageId] };
  }
  if (got.kind === DELIVERY_RECEIPT || got.kind === READ_RECEIPT) {
    const next = got.kind === READ_RECEIPT ? "read" : "delivered";
    for (let i = 0; i + 16 <= got.body.length; i += 16) {
      const entry = findEntry(hex(got.body.subarray(i, i + 16)));
      if (entry && entry.dir === "out" && entry.peer === from && STATUS_RANK[next] > STATUS_RANK[entry.status]) {
        entry.status = next;
        await saveEntry(entry);
      }
    }
  }
  return {};
}

/** A frame pushed by the relay. A message is acknowledged once what it
 * changed is stored; then its delivery and read receipts go out (the page
 * shows it at once). */
async function receive(message) {
  if (message.type === "prekeys-low") {
    try {
      await account.request((id) => device.replenishPreKeys(id, 20, 10));
    } catch (e) {
      notice(`Prekeys not replenished: ${e.message}`, "error");
    }
    return;
  }
  if (message.type !== "push") return;
  if (message.group) {
    try {
      const got = await device.openGroupEnvelope(message.envelope);
      if (got) await saveGroupEntry(got);
    } catch (e) {
      notice(`A group message could not be read (${e.code ?? e.message}).`, "error");
    }
    await account.request((id) => encodeAck(id, [message.messageId]));
    render();
    return;
  }
  let result = {};
  try {
    result = await openAndShow(message.envelope);
  } catch (e) {
    if (e.code === "user-key-changed") {
      await hold(e.userId, message.envelope);
    } else {
      notice(`A message could not be read (${e.code ?? e.message}).`, "error");
    }
  }
  await account.request((id) => encodeAck(id, [message.messageId]));
  render();
  if (result.reply) {
    const [from, id] = result.reply;
    await receipt(from, DELIVERY_RECEIPT, id);
    await receipt(from, READ_RECEIPT, id);
    document.body.dataset.receipts = String(Number(document.body.dataset.receipts ?? 0) + 1);
  }
}

// ---- start ------------------------------------------------------------------

let storage;
let created = false; // the device was created by this unlock
let registered = false; // the relay accepted it

async function unlock(event) {
  event.preventDefault();
  created = false;
  $("go").disabled = true;
  try {
    const key = await storeKey($("pass").value);
    storage = await IdbStorage.open("tacit-web");
    device = await Tacit.open(storage, key);
    created = !device;
    if (!device) {
      const userId = $("user").value.trim();
      if (!userId) throw new Error("choose a user name");
      device = await Tacit.create(storage, key, userId, 1, Date.now());
      localStorage.setItem("tacit-relay", $("relay").value);
    }
    $("setup").hidden = true;
    $("chat").hidden = false;
    $("me").textContent = `${device.userId}.${device.deviceId}`;
    const last = entries().at(-1);
    if (last) {
      peer = last.peer;
      $("peer").value = peer;
    }
    for (const name of device.recordNames("n/")) {
      const n = JSON.parse(decoder.decode(device.record(name)));
      showNotice(`${new Date(n.ts).toLocaleTimeString()}  ${n.text}`, n.kind);
    }
    for (const name of device.recordNames("held/")) identityChanged(name.split("/")[1]);
    render();
    renderGroups();
    await connect();
  } catch (e) {
    $("go").disabled = false;
    device = undefined;
    if (created && !registered && storage) {
      // The relay refused the new device (a name taken, say), or was not
      // reached: start over.
      storage.close();
      await new Promise((resolve) => {
        const req = indexedDB.deleteDatabase("tacit-web");
        req.onsuccess = req.onerror = req.onblocked = resolve;
      });
      $("setup").hidden = false;
      $("chat").hidden = true;
    }
    status(e.code === "wrong-key" ? "wrong passphrase" : `error: ${e.message}`);
  }
}

async function onSend(event) {
  event.preventDefault();
  const to = $("peer").value.trim();
  const text = $("text").value;
  if (!to || !text) return;
  peer = to;
  $("send").disabled = true;
  try {
    await send(to, text);
    $("text").value = "";
  } catch (e) {
    notice(`Not sent: ${e.code ?? ""} ${e.message}`, "error");
  } finally {
    $("send").disabled = false;
  }
}

/** A new delivery token for this device (docs/web.md, "Delivery tokens"):
 * stored, then set at the relay, which from then on refuses anonymous
 * submissions presenting the old one; correspondents learn the new one
 * from this device's next message. The button is enabled only while the
 * logged-in connection is open. If the relay does not answer, the stored
 * token is set at the next login. */
async function onRotateToken() {
  $("rotate-token").disabled = true;
  try {
    await account.request((id) => device.rotateDeliveryTokenFrame(id));
    rotations += 1;
    document.body.dataset.tokenRotations = String(rotations);
    notice("New delivery token set: your correspondents learn it from your next message.");
  } catch (e) {
    notice(`Delivery token not rotated: ${e.code ?? ""} ${e.message}`, "error");
  } finally {
    $("rotate-token").disabled = account.ws.readyState !== WebSocket.OPEN;
  }
}

async function onGroupCreate(event) {
  event.preventDefault();
  const title = $("group-title").value.trim();
  const members = $("group-members").value.split(",").map((m) => m.trim()).filter(Boolean);
  if (!title || members.length === 0) return;
  $("group-create").disabled = true;
  try {
    await createGroup(title, members);
    $("group-title").value = "";
    $("group-members").value = "";
  } catch (e) {
    notice(`Group not created: ${e.code ?? ""} ${e.message}`, "error");
  } finally {
    $("group-create").disabled = false;
  }
}

async function onGroupSend(event) {
  event.preventDefault();
  const text = $("group-text").value;
  if (!$("group").value || !text) return;
  $("group-send").disabled = true;
  try {
    await sendGroup(unhex($("group").value), text);
    $("group-text").value = "";
  } catch (e) {
    notice(`Not sent to the group: ${e.code ?? ""} ${e.message}`, "error");
  } finally {
    $("group-send").disabled = false;
  }
}

await init();
$("relay").value = localStorage.getItem("tacit-relay") ?? "";
$("relay").placeholder = relayUrl();
const existing = await IdbStorage.open("tacit-web").then(async (s) => {
  const n = (await s.load()).length;
  s.close();
  return n > 0;
});
$("user-row").hidden = existing;
$("go").textContent = existing ? "Unlock" : "Create and register";
$("setup").onsubmit = unlock;
$("compose").onsubmit = onSend;
$("group-new").onsubmit = onGroupCreate;
$("group-compose").onsubmit = onGroupSend;
$("rotate-token").onclick = onRotateToken;
$("peer").onchange = () => {
  peer = $("peer").value.trim();
  showSafety();
};
status(existing ? "locked" : "no account yet");
document.body.dataset.fallbacks = "0";
document.body.dataset.ready = "true";
