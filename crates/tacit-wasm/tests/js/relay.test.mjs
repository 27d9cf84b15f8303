// Relay frames and the page's own sealed records, in Node. Server frames
// are written here by hand in protobuf (docs/relay.md), so a decoder that
// read the wrong field, or took a non-canonical frame, fails. Needs
// ../../pkg (../../build.sh).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

const pkg = new URL("../../pkg/", import.meta.url);
const wasm = await import(new URL("tacit_wasm.js", pkg));
wasm.initSync({ module: readFileSync(new URL("tacit_wasm_bg.wasm", pkg)) });
const { Tacit, decodeServerFrame, encodeAck, encodeGetChallenge, encodeSubmit, encodeFetchDeviceList } = wasm;

class MemoryStorage {
  constructor() {
    this.records = new Map();
  }
  async load() {
    return [...this.records].map(([key, value]) => ({ key, value: value.slice() }));
  }
  async write(records) {
    for (const { key, value } of records) {
      if (value === null) this.records.delete(key);
      else this.records.set(key, value.slice());
    }
  }
}

const KEY = new Uint8Array(32).fill(9);
const bytes = (...b) => new Uint8Array(b.flat());
const codeOf = (f) => {
  try {
    f();
  } catch (e) {
    return `${e.name}:${e.code}`;
  }
  return "no error";
};

test("requests encode as docs/relay.md says", () => {
  // request_id = 1 (field 1), get_challenge = Empty (field 2).
  assert.deepEqual(encodeGetChallenge(1), bytes(0x08, 0x01, 0x12, 0x00));
  // Ack: field 8 holding packed ids (field 1) 5 and 300.
  assert.deepEqual(encodeAck(2, [5, 300]), bytes(0x08, 0x02, 0x42, 0x05, 0x0a, 0x03, 0x05, 0xac, 0x02));
  // FetchDeviceList: field 11 holding user_id (field 1).
  assert.deepEqual(encodeFetchDeviceList(3, "bob"), bytes(0x08, 0x03, 0x5a, 0x05, 0x0a, 0x03, [..."bob"].map((c) => c.charCodeAt(0))));
  for (const bad of [0, -1, 1.5, NaN, 2 ** 53]) {
    assert.equal(codeOf(() => encodeGetChallenge(bad)), "TacitError:invalid-argument", String(bad));
  }
  assert.equal(codeOf(() => encodeAck(1, [])), "TacitError:invalid-argument");
  assert.equal(codeOf(() => encodeAck(1, [4, 4])), "TacitError:invalid-argument");
  assert.equal(codeOf(() => encodeSubmit(1, "bob", 1, new Uint8Array(0))), "TacitError:invalid-argument");
  assert.equal(codeOf(() => encodeSubmit(1, "", 1, new Uint8Array(1))), "TacitError:invalid-argument");
});

test("server frames decode strictly", () => {
  assert.deepEqual(decodeServerFrame(bytes(0x1a, 0x00)), { type: "queue-empty" });
  // Push (field 2): message_id 7, server_time_ms 9, envelope [1,2,3].
  const push = decodeServerFrame(bytes(0x12, 0x09, 0x08, 0x07, 0x10, 0x09, 0x1a, 0x03, 1, 2, 3));
  assert.equal(push.type, "push");
  assert.equal(push.messageId, 7);
  assert.equal(push.serverTimeMs, 9);
  assert.deepEqual(push.envelope, bytes(1, 2, 3));
  assert.equal(push.group, false);
  // Response (field 1): request_id 4, submitted (field 7) message_id 12.
  assert.deepEqual(decodeServerFrame(bytes(0x0a, 0x06, 0x08, 0x04, 0x3a, 0x02, 0x08, 0x0c)), {
    type: "response",
    requestId: 4,
    ok: true,
    reply: { type: "submitted", messageId: 12 },
  });
  // Response: request_id 4, error (field 2) code 19 (RateLimited), "slow", retry 250.
  const refused = decodeServerFrame(
    bytes(0x0a, 0x0f, 0x08, 0x04, 0x12, 0x0b, 0x08, 0x13, 0x12, 0x04, [..."slow"].map((c) => c.charCodeAt(0)), 0x18, 0xfa, 0x01),
  );
  assert.deepEqual(refused.error, { code: "RateLimited", codeNumber: 19, message: "slow", retryAfterMs: 250 });
  // Not canonical (a default value written out: request_id 0), not a frame,
  // and empty.
  for (const bad of [bytes(0x0a, 0x04, 0x08, 0x00, 0x3a, 0x00), bytes(0xff, 0xff), bytes()]) {
    assert.equal(codeOf(() => decodeServerFrame(bad)), "TacitError:frame");
  }
});

test("login and prekey frames come from the device's keys", async () => {
  const device = await Tacit.create(new MemoryStorage(), KEY, "alice", 1, Date.now());
  const challenge = new Uint8Array(32).fill(1);
  const login = device.loginFrame(1, "relay.example", challenge, Date.now());
  const register = device.registerFrame(2, "relay.example", challenge, Date.now());
  assert.equal(login[0], 0x08);
  assert.equal(login[2], 0x22, "Login is field 4");
  assert.equal(register[2], 0x1a, "Register is field 3");
  // Signatures are fresh per challenge.
  const other = device.loginFrame(1, "relay.example", new Uint8Array(32).fill(2), Date.now());
  assert.notDeepEqual(other, login);
  assert.equal(codeOf(() => device.loginFrame(1, "relay.example", new Uint8Array(31), 1)), "TacitError:invalid-argument");
  assert.equal(codeOf(() => device.loginFrame(1, "", challenge, 1)), "TacitError:invalid-argument");
  const upload = device.uploadPreKeysFrame(3);
  // Signed, fallback and last-resort KEM prekeys (1569-byte key) and the
  // 20 one-time prekeys of a new device.
  assert.ok(upload.length > 1569 + 20 * 34, String(upload.length));
  const before = device.oneTimePrekeyCount();
  const more = await device.replenishPreKeys(4, 10, 2);
  assert.ok(more instanceof Uint8Array && more.length > 2 * 1569);
  assert.equal(device.oneTimePrekeyCount(), before + 10);
  assert.equal(codeOf(() => device.replenishPreKeys(5, 201, 0)), "TacitError:invalid-argument");
  assert.equal(device.oneTimePrekeyCount(), before + 10, "a refused call changes nothing");
});

test("the page's records are sealed, kept across a reopen, and bound to their name", async () => {
  const storage = new MemoryStorage();
  const device = await Tacit.create(storage, KEY, "alice", 1, Date.now());
  await device.putRecord("h/1", new TextEncoder().encode("first"));
  await device.putRecord("h/2", new TextEncoder().encode("second"));
  await device.putRecord("x", new Uint8Array([1]));
  await device.putRecord("x", null);
  assert.deepEqual(device.recordNames("h/"), ["h/1", "h/2"]);
  const keys = [...storage.records.keys()].filter((k) => k.startsWith("app/"));
  assert.equal(keys.length, 2);
  for (const [key, value] of storage.records) {
    assert.ok(!key.includes("h/"), "record names are not in the keys");
    assert.ok(!Buffer.from(value).includes("second"), "values are sealed");
  }
  const reopened = await Tacit.open(storage, KEY);
  assert.deepEqual(reopened.recordNames(""), ["h/1", "h/2"]);
  assert.equal(new TextDecoder().decode(reopened.record("h/2")), "second");
  assert.equal(reopened.record("x"), undefined);
  assert.equal(codeOf(() => reopened.putRecord("", new Uint8Array(1))), "TacitError:invalid-argument");
  // A record moved under another record's key is refused.
  const [a, b] = keys;
  storage.records.set(a, storage.records.get(b));
  await assert.rejects(Tacit.open(storage, KEY), (e) => e.code === "tampered");
});

test("an error about a user names it (userId), for the page to fetch its list", async () => {
  const alice = await Tacit.create(new MemoryStorage(), KEY, "alice", 1, Date.now());
  const bob = await Tacit.create(new MemoryStorage(), KEY, "bob", 1, Date.now());
  await alice.updateDeviceList(bob.deviceList());
  await alice.processBundle("bob", 1, bob.bundle());
  const [out] = await alice.sealText("bob", "who is this?", Date.now());
  // Bob has no list of alice's yet.
  await assert.rejects(async () => bob.openEnvelope(out.envelope), (e) => e.code === "unknown-user" && e.userId === "alice");
  assert.equal(await bob.updateDeviceList(alice.deviceList()), "first-contact");
  const got = await bob.openEnvelope(out.envelope);
  assert.equal(new TextDecoder().decode(got.body), "who is this?");
  // Errors that name no user carry no userId.
  const e = await (async () => bob.openEnvelope(out.envelope))().catch((e) => e);
  assert.equal(e.name, "TacitError");
  assert.equal(e.userId, undefined);
});

test("delivery tokens: set at login, carried in contents, recorded and presented", async () => {
  const aliceStorage = new MemoryStorage();
  const alice = await Tacit.create(aliceStorage, KEY, "alice", 1, Date.now());
  const bob = await Tacit.create(new MemoryStorage(), KEY, "bob", 1, Date.now());
  // SetDeliveryToken: field 9 holding token (field 1), 32 bytes.
  const set = await alice.deliveryTokenFrame(5);
  assert.deepEqual(set.slice(0, 6), bytes(0x08, 0x05, 0x4a, 0x22, 0x0a, 0x20));
  assert.equal(set.length, 38);
  const token = set.slice(6);
  // The same token at the next login, and after a reopen.
  assert.deepEqual((await alice.deliveryTokenFrame(5)).slice(6), token);
  const reopened = await Tacit.open(aliceStorage, KEY);
  assert.deepEqual((await reopened.deliveryTokenFrame(5)).slice(6), token);
  assert.notDeepEqual((await bob.deliveryTokenFrame(5)).slice(6), token);

  await alice.updateDeviceList(bob.deviceList());
  await bob.updateDeviceList(alice.deviceList());
  await alice.processBundle("bob", 1, bob.bundle());
  const envelope = new Uint8Array(10).fill(1);
  // Nothing recorded yet: the frame is encodeSubmit's, without a token.
  assert.equal(bob.hasDeliveryToken("alice", 1), false);
  assert.deepEqual(bob.submitFrame(1, "alice", 1, envelope), encodeSubmit(1, "alice", 1, envelope));
  const [out] = await alice.sealText("bob", "hi", Date.now());
  const received = await bob.openEnvelope(out.envelope);
  assert.equal(new TextDecoder().decode(received.body), "hi");
  // Recorded: the Submit carries it as delivery_token (field 4).
  assert.equal(bob.hasDeliveryToken("alice", 1), true);
  const submit = bob.submitFrame(1, "alice", 1, envelope);
  assert.deepEqual(submit.slice(-34), bytes(0x22, 0x20, [...token]));
  assert.equal(submit.length, encodeSubmit(1, "alice", 1, envelope).length + 34);
  assert.equal(bob.hasDeliveryToken("carol", 1), false);

  // A rotation: a new token, stored before the frame is handed out, set
  // at the next login and after a reopen, and carried in what alice
  // seals next, so that bob presents it in place of the old one.
  const rotated = await alice.rotateDeliveryTokenFrame(6);
  assert.deepEqual(rotated.slice(0, 6), bytes(0x08, 0x06, 0x4a, 0x22, 0x0a, 0x20));
  assert.equal(rotated.length, 38);
  const newToken = rotated.slice(6);
  assert.notDeepEqual(newToken, token);
  assert.deepEqual((await alice.deliveryTokenFrame(5)).slice(6), newToken);
  const afterRotation = await Tacit.open(aliceStorage, KEY);
  assert.deepEqual((await afterRotation.deliveryTokenFrame(5)).slice(6), newToken);
  const [next] = await afterRotation.sealText("bob", "rotated", Date.now());
  await bob.openEnvelope(next.envelope);
  assert.deepEqual(bob.submitFrame(1, "alice", 1, envelope).slice(-34), bytes(0x22, 0x20, [...newToken]));
});
