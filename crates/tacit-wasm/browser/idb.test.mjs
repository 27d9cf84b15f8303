// tacit-wasm in headless Chromium (Debian's `chromium`, playwright-core):
// two devices on real IndexedDB message each other, the page reloads, both
// reopen from IndexedDB with their sessions, and a record altered in
// IndexedDB is refused. Needs ../pkg (../build.sh).
import { test } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { serve } from "./serve.mjs";

const pkg = new URL("../pkg/", import.meta.url).pathname;

// Runs in the page: opens (or creates) alice and bob on IndexedDB, sends
// `text` from alice to bob, returns what bob got.
async function exchange(text) {
  const { default: init, Tacit } = await import("/tacit_wasm.js");
  const { IdbStorage } = await import("/idb-storage.js");
  await init();
  const key = new Uint8Array(32).fill(3);
  const open = async (name) => {
    const storage = await IdbStorage.open(name);
    const existing = await Tacit.open(storage, key);
    return { device: existing ?? (await Tacit.create(storage, key, name, 1, Date.now())), created: !existing };
  };
  const alice = await open("alice");
  const bob = await open("bob");
  if (alice.created) {
    await alice.device.updateDeviceList(bob.device.deviceList());
    await bob.device.updateDeviceList(alice.device.deviceList());
  }
  const missing = alice.device.missingSessions("bob");
  for (const d of missing) await alice.device.processBundle(d.userId, d.deviceId, bob.device.bundle());
  const [out] = await alice.device.sealText("bob", text, Date.now());
  const got = await bob.device.openEnvelope(out.envelope);
  return {
    created: alice.created,
    missing: missing.length,
    text: new TextDecoder().decode(got.body),
    newSession: got.newSession,
    identity: Array.from(alice.device.identityKey()),
    safety: alice.device.safetyNumber("bob"),
  };
}

// Runs in the page: alters a byte of one of alice's session records in
// IndexedDB, then opens alice; returns the error code.
async function tamper() {
  const { default: init, Tacit } = await import("/tacit_wasm.js");
  const { IdbStorage } = await import("/idb-storage.js");
  await init();
  const storage = await IdbStorage.open("alice");
  const records = await storage.load();
  const session = records.find((r) => r.key.startsWith("session/"));
  session.value[30] ^= 1;
  await storage.write([session]);
  try {
    await Tacit.open(storage, new Uint8Array(32).fill(3));
    return "opened";
  } catch (e) {
    return `${e.name}:${e.code}`;
  }
}

test("IndexedDB in Chromium: sessions survive a reload; an altered record is refused", async () => {
  const server = await serve(pkg);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox"],
  });
  try {
    const page = await browser.newPage();
    await page.goto(server.url);
    const first = await page.evaluate(exchange, "before the reload");
    assert.equal(first.created, true);
    assert.equal(first.missing, 1);
    assert.equal(first.text, "before the reload");
    assert.equal(first.newSession, true);

    await page.reload();
    const second = await page.evaluate(exchange, "after the reload");
    assert.equal(second.created, false);
    assert.equal(second.missing, 0, "the session was kept");
    assert.equal(second.text, "after the reload");
    assert.equal(second.newSession, false);
    assert.deepEqual(second.identity, first.identity);
    assert.equal(second.safety, first.safety);

    await page.reload();
    assert.equal(await page.evaluate(tamper), "TacitError:tampered");
  } finally {
    await browser.close();
    server.close();
  }
});
