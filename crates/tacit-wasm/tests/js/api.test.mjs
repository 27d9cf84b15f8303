// The JavaScript API of tacit-wasm in Node: two devices message each other
// through their storages, reopen, and every refusal throws a TacitError
// with its code and changes nothing. The IndexedDB storage runs on
// fake-indexeddb. Needs ../../pkg (../../build.sh).
import "fake-indexeddb/auto";
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

const pkg = new URL("../../pkg/", import.meta.url);
const wasm = await import(new URL("tacit_wasm.js", pkg));
wasm.initSync({ module: readFileSync(new URL("tacit_wasm_bg.wasm", pkg)) });
const { Tacit } = wasm;
const { IdbStorage } = await import(new URL("idb-storage.js", pkg));

/** A storage in memory; `failNext` makes the next write reject. */
class MemoryStorage {
  constructor() {
    this.records = new Map();
    this.failNext = false;
    this.writes = 0;
  }
  async load() {
    return [...this.records].map(([key, value]) => ({ key, value: value.slice() }));
  }
  async write(records) {
    if (this.failNext) {
      this.failNext = false;
      throw new Error("disk full");
    }
    this.writes += 1;
    for (const { key, value } of records) {
      if (value === null) this.records.delete(key);
      else this.records.set(key, value.slice());
    }
  }
  snapshot() {
    return JSON.stringify([...this.records].map(([k, v]) => [k, [...v]]));
  }
}

const KEY = new Uint8Array(32).fill(7);
const enc = new TextEncoder();
const dec = new TextDecoder();

async function pair() {
  const aliceStorage = new MemoryStorage();
  const bobStorage = new MemoryStorage();
  const alice = await Tacit.create(aliceStorage, KEY, "alice", 1, Date.now());
  const bob = await Tacit.create(bobStorage, KEY, "bob", 1, Date.now());
  assert.equal(await alice.updateDeviceList(bob.deviceList()), "first-contact");
  assert.equal(await bob.updateDeviceList(alice.deviceList()), "first-contact");
  return { alice, bob, aliceStorage, bobStorage };
}

async function send(from, to, text) {
  for (const missing of from.missingSessions(to.userId)) {
    assert.equal(missing.userId, to.userId);
    await from.processBundle(missing.userId, missing.deviceId, to.bundle());
  }
  const out = await from.sealText(to.userId, text, Date.now());
  assert.equal(out.length, 1);
  assert.equal(out[0].userId, to.userId);
  assert.equal(out[0].messageId.length, 16);
  return out[0];
}

async function throwsCode(f, code) {
  await assert.rejects(async () => f(), (e) => {
    assert.equal(e.name, "TacitError");
    assert.equal(e.code, code, e.message);
    return true;
  });
}

test("messages both ways, first contact, safety numbers", async () => {
  const { alice, bob } = await pair();
  const first = await send(alice, bob, "hello bob");
  const got = await bob.openEnvelope(first.envelope);
  assert.equal(got.senderUserId, "alice");
  assert.equal(got.senderDeviceId, 1);
  assert.equal(got.kind, 1);
  assert.equal(dec.decode(got.body), "hello bob");
  assert.deepEqual(got.messageId, first.messageId);
  assert.equal(got.firstContact, true);
  assert.equal(got.newSession, true);
  assert.equal(got.identityChanged, false);

  const reply = await send(bob, alice, "hi alice");
  const back = await alice.openEnvelope(reply.envelope);
  assert.equal(dec.decode(back.body), "hi alice");
  // Alice started the session: Bob is no first contact for her.
  assert.equal(back.firstContact, false);

  // A delivery receipt (kind 3) lists the message ids.
  const receipt = await bob.seal("alice", 3, first.messageId, Date.now());
  const r = await alice.openEnvelope(receipt[0].envelope);
  assert.equal(r.kind, 3);
  assert.deepEqual(r.body, first.messageId);
  assert.equal(r.firstContact, false);

  const sn = alice.safetyNumber("bob");
  assert.match(sn, /^[0-9 ]+$/);
  assert.equal(sn.replace(/ /g, "").length, 60);
  assert.equal(sn, bob.safetyNumber("alice"));
});

test("sessions are tacit-v2; a rotated signed prekey serves new sessions", async () => {
  const { alice, bob } = await pair();
  assert.equal(alice.sessionProfile("bob", 1), undefined);
  await bob.openEnvelope((await send(alice, bob, "one")).envelope);
  assert.equal(alice.sessionProfile("bob", 1), "tacit-v2");
  assert.equal(bob.sessionProfile("alice", 1), "tacit-v2");
  assert.equal(await bob.rotateSignedPrekey(Date.now(), 86400000), 2);
  const carol = await Tacit.create(new MemoryStorage(), KEY, "carol", 1, Date.now());
  await carol.updateDeviceList(bob.deviceList());
  await bob.updateDeviceList(carol.deviceList());
  const got = await bob.openEnvelope((await send(carol, bob, "after rotation")).envelope);
  assert.equal(dec.decode(got.body), "after rotation");
  // The session from before the rotation goes on.
  assert.equal(dec.decode((await bob.openEnvelope((await send(alice, bob, "two")).envelope)).body), "two");
});

test("a reopened device keeps its sessions; the storage holds no user id or text", async () => {
  const { alice, bob, aliceStorage, bobStorage } = await pair();
  await bob.openEnvelope((await send(alice, bob, "before")).envelope);
  const alice2 = await Tacit.open(aliceStorage, KEY);
  const bob2 = await Tacit.open(bobStorage, KEY);
  assert.equal(alice2.userId, "alice");
  assert.deepEqual(alice2.identityKey(), alice.identityKey());
  assert.deepEqual(alice2.missingSessions("bob"), []);
  const m = await bob2.openEnvelope((await send(alice2, bob2, "after")).envelope);
  assert.equal(dec.decode(m.body), "after");
  assert.equal(m.newSession, false);
  assert.equal(m.firstContact, false);
  for (const [key, value] of aliceStorage.records) {
    for (const word of ["alice", "bob", "before", "after"]) {
      assert.ok(!key.includes(word));
      assert.ok(!Buffer.from(value).includes(Buffer.from(word)), `${key} shows ${word}`);
    }
  }
  assert.equal(await Tacit.open(new MemoryStorage(), KEY), undefined);
});

test("wrong key, tampered record, existing account", async () => {
  const { aliceStorage } = await pair();
  await throwsCode(() => Tacit.open(aliceStorage, new Uint8Array(32).fill(8)), "wrong-key");
  await throwsCode(() => Tacit.open(aliceStorage, new Uint8Array(31)), "invalid-argument");
  const key = [...aliceStorage.records.keys()].find((k) => k.startsWith("list/"));
  aliceStorage.records.get(key)[40] ^= 1;
  await throwsCode(() => Tacit.open(aliceStorage, KEY), "tampered");
  await throwsCode(() => Tacit.create(aliceStorage, KEY, "alice", 2, 0), "account-exists");
});

test("a bad envelope or unknown user throws and changes nothing", async () => {
  const { alice, bob, bobStorage } = await pair();
  const env = (await send(alice, bob, "x")).envelope;
  const before = bobStorage.snapshot();
  const writes = bobStorage.writes;
  const flipped = env.slice();
  flipped[flipped.length - 1] ^= 1;
  await throwsCode(() => bob.openEnvelope(flipped), "envelope");
  await throwsCode(() => bob.openEnvelope(new Uint8Array(3)), "envelope");
  await throwsCode(() => bob.sealText("carol", "hi", Date.now()), "unknown-user");
  assert.equal(bobStorage.snapshot(), before);
  assert.equal(bobStorage.writes, writes);
  // The genuine envelope still opens after the refusals.
  assert.equal(dec.decode((await bob.openEnvelope(env)).body), "x");
  // A replay is refused.
  await assert.rejects(async () => bob.openEnvelope(env), (e) => e.name === "TacitError");
});

test("a bundle that does not decode, or not of a listed device, is refused", async () => {
  const { alice, bob, aliceStorage } = await pair();
  const before = aliceStorage.snapshot();
  await throwsCode(() => alice.processBundle("bob", 1, new Uint8Array([1, 2, 3])), "handshake");
  // Carol's bundle offered as Bob's device 1: not the identity Bob's list names.
  const carol = await Tacit.create(new MemoryStorage(), KEY, "carol", 1, Date.now());
  await throwsCode(() => alice.processBundle("bob", 1, carol.bundle()), "device-not-listed");
  await throwsCode(() => alice.processBundle("bob", 2, bob.bundle()), "device-not-listed");
  await throwsCode(() => alice.processBundle("carol", 1, carol.bundle()), "unknown-user");
  await throwsCode(() => alice.processBundle("", 1, bob.bundle()), "invalid-argument");
  assert.equal(aliceStorage.snapshot(), before);
  assert.equal(alice.missingSessions("bob").length, 1);
});

test("a user key change is refused", async () => {
  const { alice } = await pair();
  const mallory = await Tacit.create(new MemoryStorage(), KEY, "bob", 1, Date.now());
  await throwsCode(() => alice.updateDeviceList(mallory.deviceList()), "user-key-changed");
  await throwsCode(() => alice.updateDeviceList(enc.encode("junk")), "identity");
});

test("a refused write fails the call and every later one", async () => {
  const { alice, bob, aliceStorage } = await pair();
  aliceStorage.failNext = true;
  await throwsCode(() => send(alice, bob, "lost"), "storage-failed");
  assert.throws(() => alice.safetyNumber("bob"), (e) => e.code === "storage-failed");
  // Reopened, the device is as the storage last held it.
  const again = await Tacit.open(aliceStorage, KEY);
  assert.equal((await bob.openEnvelope((await send(again, bob, "kept")).envelope)).kind, 1);
});

test("IndexedDB storage: create, reopen, message", async () => {
  const aliceDb = await IdbStorage.open("alice-test");
  const bobDb = await IdbStorage.open("bob-test");
  const alice = await Tacit.create(aliceDb, KEY, "alice", 1, Date.now());
  const bob = await Tacit.create(bobDb, KEY, "bob", 1, Date.now());
  await alice.updateDeviceList(bob.deviceList());
  await bob.updateDeviceList(alice.deviceList());
  await bob.openEnvelope((await send(alice, bob, "one")).envelope);
  aliceDb.close();
  const alice2 = await Tacit.open(await IdbStorage.open("alice-test"), KEY);
  const m = await bob.openEnvelope((await send(alice2, bob, "two")).envelope);
  assert.equal(dec.decode(m.body), "two");
  assert.equal(m.newSession, false);
});
