// Groups through the JavaScript API in Node, with no relay: three users
// pass envelopes by hand, create a group, exchange group messages, remove
// a member who then reads nothing more; a non-admin's change, a state
// forwarded by another device and a chain forwarded by another member are
// refused. Needs ../../pkg (../../build.sh).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

const pkg = new URL("../../pkg/", import.meta.url);
const wasm = await import(new URL("tacit_wasm.js", pkg));
wasm.initSync({ module: readFileSync(new URL("tacit_wasm_bg.wasm", pkg)) });
const { Tacit, encodeSubmitGroup } = wasm;

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

const KEY = new Uint8Array(32).fill(3);
const dec = new TextDecoder();

/** Alice, Bob and Carol, every list trusted, sessions every way. */
async function three() {
  const users = {};
  const storages = {};
  for (const name of ["alice", "bob", "carol"]) {
    storages[name] = new MemoryStorage();
    users[name] = await Tacit.create(storages[name], KEY, name, 1, Date.now());
  }
  for (const a of Object.values(users)) {
    for (const b of Object.values(users)) {
      if (a !== b) await a.updateDeviceList(b.deviceList());
    }
  }
  // One session a pair: the first message consumes the one-time prekey
  // before the next bundle is taken.
  const list = Object.values(users);
  for (const [i, a] of list.entries()) {
    for (const b of list.slice(i + 1)) {
      await a.processBundle(b.userId, 1, b.bundle());
      await deliver(b, await a.sealText(b.userId, "hello", Date.now()));
      assert.equal(b.missingSessions(a.userId).length, 0);
    }
  }
  return { users, storages };
}

/** Opens every envelope of `outgoing` addressed to `to`; the results. */
async function deliver(to, outgoing) {
  const out = [];
  for (const o of outgoing) {
    if (o.userId === to.userId && o.deviceId === to.deviceId) {
      out.push(await to.openEnvelope(o.envelope));
    }
  }
  return out;
}

async function throwsCode(f, code) {
  await assert.rejects(async () => f(), (e) => {
    assert.equal(e.name, "TacitError");
    assert.equal(e.code, code, e.message);
    return true;
  });
}

async function team() {
  const { users, storages } = await three();
  const { alice, bob, carol } = users;
  const created = await alice.createGroup("team", ["bob", "carol"], Date.now());
  assert.equal(created.group.title, "team");
  assert.equal(created.group.groupId.length, 32);
  assert.deepEqual(
    created.group.members.map((m) => [m.userId, m.admin]),
    [["alice", true], ["bob", false], ["carol", false]],
  );
  for (const u of [bob, carol]) {
    const [r] = await deliver(u, created.outgoing);
    assert.equal(r.kind, 6);
    assert.equal(r.groupChanged, true);
    assert.equal(r.groupRefusal, undefined);
    assert.deepEqual(r.groupId, created.group.groupId);
    assert.equal(u.groups().length, 1);
  }
  return { users, storages, id: created.group.groupId };
}

/** `from` sends `text`; its chain is delivered to `to` users. */
async function sendGroup(from, id, text, to) {
  const sent = await from.sendGroupText(id, text, Date.now());
  assert.equal(sent.messageId.length, 16);
  for (const u of to) await deliver(u, sent.outgoing);
  return sent;
}

test("a group: create, messages both ways, a removed member reads no more", async () => {
  const { users, storages, id } = await team();
  const { alice, bob, carol } = users;
  const sent = await sendGroup(alice, id, "hello team", [bob, carol]);
  assert.deepEqual(
    sent.recipients.map((r) => r.userId).sort(),
    ["bob", "carol"],
  );
  // The relay frame encodes.
  assert.ok(encodeSubmitGroup(1, sent).length > 0);
  for (const u of [bob, carol]) {
    const got = await u.openGroupEnvelope(sent.envelopeFor(u.userId, 1));
    assert.equal(dec.decode(got.body), "hello team");
    assert.equal(got.senderUserId, "alice");
    assert.deepEqual(got.groupId, id);
    assert.deepEqual(got.messageId, sent.messageId);
  }
  // Bob replies.
  const reply = await sendGroup(bob, id, "hi alice", [alice, carol]);
  const got = await alice.openGroupEnvelope(reply.envelopeFor("alice", 1));
  assert.equal(dec.decode(got.body), "hi alice");

  // Carol removed: she learns it; the next message is not for her.
  const removed = await alice.removeGroupMember(id, "carol", Date.now());
  assert.deepEqual(removed.group.members.map((m) => m.userId), ["alice", "bob"]);
  for (const u of [bob, carol]) {
    const [r] = await deliver(u, removed.outgoing);
    assert.equal(r.groupChanged, true);
  }
  assert.equal(carol.group(id).active, false);
  const after = await sendGroup(alice, id, "without carol", [bob, carol]);
  assert.equal(after.envelopeFor("carol", 1), undefined);
  const forBob = after.envelopeFor("bob", 1);
  await throwsCode(() => carol.openGroupEnvelope(forBob), "group-envelope");
  await throwsCode(() => carol.sendGroupText(id, "still here", Date.now()), "not-group-member");
  assert.equal(dec.decode((await bob.openGroupEnvelope(forBob)).body), "without carol");

  // Bob reopened from his storage holds the group and reads on.
  const bob2 = await Tacit.open(storages.bob, KEY);
  assert.deepEqual(bob2.group(id).members.map((m) => m.userId), ["alice", "bob"]);
  const again = await sendGroup(alice, id, "again", [bob2]);
  assert.equal(dec.decode((await bob2.openGroupEnvelope(again.envelopeFor("bob", 1))).body), "again");
});

test("a non-admin's change is refused and changes nothing", async () => {
  const { users, id } = await team();
  const { bob } = users;
  const before = JSON.stringify(bob.group(id).members.map((m) => m.userId));
  await throwsCode(() => bob.removeGroupMember(id, "carol", Date.now()), "group-state");
  await throwsCode(() => bob.retitleGroup(id, "mine", Date.now()), "group-state");
  assert.equal(JSON.stringify(bob.group(id).members.map((m) => m.userId)), before);
  // A member may leave.
  const left = await bob.leaveGroup(id, Date.now());
  assert.equal(left.group.active, false);
  const [r] = await deliver(users.alice, left.outgoing);
  assert.equal(r.groupChanged, true);
  assert.deepEqual(users.alice.group(id).members.map((m) => m.userId), ["alice", "carol"]);
});

test("a chain forwarded by another member is refused; the message waits for the real one", async () => {
  const { users, id } = await team();
  const { alice, bob, carol } = users;
  const sent = await alice.sendGroupText(id, "held", Date.now());
  // Bob opens Alice's distribution and sends its body to Carol as his own.
  const [toBob] = sent.outgoing.filter((o) => o.userId === "bob");
  const opened = await bob.openEnvelope(toBob.envelope);
  assert.equal(opened.kind, 6);
  const forwarded = await bob.seal("carol", 6, opened.body, Date.now());
  const [r] = await deliver(carol, forwarded);
  assert.equal(r.groupRefusal, "group-chain-refused");
  // Carol's envelope is held, then read when Alice's own copy arrives.
  assert.equal(await carol.openGroupEnvelope(sent.envelopeFor("carol", 1)), undefined);
  assert.equal(carol.heldGroupMessages(), 1);
  const [real] = await deliver(carol, sent.outgoing);
  assert.equal(real.groupRefusal, undefined);
  assert.deepEqual(real.groupMessages.map((m) => dec.decode(m.body)), ["held"]);
  assert.equal(carol.heldGroupMessages(), 0);
});

test("a group state forwarded by a device that did not sign it is refused", async () => {
  const { users } = await three();
  const { alice, bob, carol } = users;
  const created = await alice.createGroup("pair", ["bob"], Date.now());
  const [toBob] = created.outgoing.filter((o) => o.userId === "bob");
  const opened = await bob.openEnvelope(toBob.envelope);
  const forwarded = await bob.seal("carol", 6, opened.body, Date.now());
  const [r] = await deliver(carol, forwarded);
  // Carol is not in the state either: the sender is checked first.
  assert.equal(r.groupRefusal, "group-not-from-signer");
  assert.equal(carol.groups().length, 0);
});

test("group arguments are checked", async () => {
  const { users } = await three();
  const { alice } = users;
  await throwsCode(() => alice.sendGroupText(new Uint8Array(5), "x", Date.now()), "invalid-argument");
  await throwsCode(() => alice.sendGroupText(new Uint8Array(32), "x", Date.now()), "unknown-group");
  await throwsCode(() => alice.createGroup("t", ["dave"], Date.now()), "unknown-user");
  await throwsCode(() => alice.openGroupEnvelope(new Uint8Array(10)), "group-envelope");
  assert.equal(alice.groups().length, 0);
});
