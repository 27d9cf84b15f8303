// The web chat (examples/web) in headless Chromium (Debian's `chromium`,
// playwright-core) against a real tacit-relay serving the page
// (--static-dir), with a native tacit-chat user: messages both ways,
// group messages both ways in a group of each side's,
// receipts, first contact and safety numbers, delivery tokens (the page's
// in its contents, so that tacit-chat's anonymous receipts reach it; bob's
// presented by the page, so that only its first-contact submission goes
// logged in: body[data-fallbacks]); then the page reloads, its history and
// sessions are still there, and messages still go both ways; last, the page
// rotates its delivery token, bob's stale one is refused and his client
// falls back, and the page's next text gives him the new one.
//
// Needs examples/web/pkg (crates/tacit-wasm/build.sh examples/web/pkg) and
// the binaries tacit-relay and tacit-chat (cargo build -p tacit-relay -p
// tacit-chat; TACIT_BIN_DIR, default target/debug). WEB_CHAT_SCREENSHOT:
// where to save a screenshot of the page (default: the test's scratch
// directory).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFile } from "node:child_process";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { chromium } from "playwright-core";

const run = promisify(execFile);
const root = resolve(new URL("../../..", import.meta.url).pathname);
const bin = process.env.TACIT_BIN_DIR ?? join(root, process.env.CARGO_TARGET_DIR ?? "target", "debug");
const site = join(root, "examples/web");
const WAIT = 30_000;

/** Starts tacit-relay on a free port serving `site`; resolves its port. */
function startRelay(dir) {
  const relay = spawn(
    join(bin, "tacit-relay"),
    ["--listen", "127.0.0.1:0", "--db", join(dir, "relay.db"), "--server-name", "127.0.0.1", "--static-dir", site],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let errors = "";
  relay.stderr.on("data", (d) => (errors += d));
  return new Promise((resolve, reject) => {
    relay.stdout.on("data", (d) => {
      const m = /listening on 127\.0\.0\.1:(\d+)/.exec(String(d));
      if (m) resolve({ relay, port: Number(m[1]) });
    });
    relay.on("exit", (code) => reject(new Error(`tacit-relay exited (${code}): ${errors}`)));
  });
}

test("web chat in Chromium and tacit-chat through a real relay, across a reload", { timeout: 240_000 }, async () => {
  assert.ok(existsSync(join(site, "pkg/tacit_wasm.js")), "build examples/web/pkg first");
  const dir = mkdtempSync(join(tmpdir(), "tacit-web-chat-"));
  const { relay, port } = await startRelay(dir);
  const url = `ws://127.0.0.1:${port}/v1`;
  const chat = (...args) =>
    run(join(bin, "tacit-chat"), ["--store", join(dir, "bob.db"), "--relay", url, ...args], { timeout: WAIT });
  // The same, with tacit-client's debug log on stderr.
  const chatDebug = (...args) =>
    run(join(bin, "tacit-chat"), ["--store", join(dir, "bob.db"), "--relay", url, ...args], {
      timeout: WAIT,
      env: { ...process.env, RUST_LOG: "tacit_client=debug" },
    });
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox"],
  });
  try {
    await chat("register", "bob");
    // Bob's first login sets his delivery token at the relay.
    await chat("recv");
    const page = await browser.newPage({ viewport: { width: 900, height: 720 } });
    page.on("pageerror", (e) => console.error("page error:", e));
    page.on("console", (m) => console.error("page:", m.text()));
    await page.goto(`http://127.0.0.1:${port}/`);
    await page.waitForSelector("body[data-ready=true]");

    // A name already taken (bob's, by tacit-chat) is refused by the relay,
    // and the page starts over.
    await page.fill("#user", "bob");
    await page.fill("#pass", "correct horse battery staple");
    await page.click("#go");
    await page.waitForFunction(() => document.getElementById("status").textContent.startsWith("error:"), null, { timeout: WAIT });
    assert.match(await page.textContent("#status"), /AddressTaken|UserKeyMismatch/);
    assert.equal(await page.isVisible("#user-row"), true);

    // Alice registers in the browser.
    await page.fill("#user", "alice");
    await page.fill("#pass", "correct horse battery staple");
    await page.click("#go");
    await page.waitForFunction(() => document.getElementById("status").textContent.startsWith("connected"), null, { timeout: WAIT });

    // Browser to terminal: first contact on both sides.
    await page.fill("#peer", "bob");
    await page.fill("#text", "hello from the browser");
    await page.click("#send");
    await page.waitForSelector(".msg.out[data-status=sent]", { timeout: WAIT });
    assert.match(await page.textContent("#notices"), /First contact with bob/);
    const bobGot = await chat("recv");
    assert.match(bobGot.stdout, /^alice: hello from the browser$/m);
    assert.match(bobGot.stderr, /first contact with alice/);
    // Bob set a delivery token the page did not know yet: the page's
    // anonymous submission was refused and went again logged in.
    assert.equal(await page.getAttribute("body", "data-fallbacks"), "1");
    // Bob's delivery receipt reaches the page: tacit-chat submits it only
    // anonymously, so with the token the page set at login and sent in
    // its text.
    await page.waitForSelector(".msg.out[data-status=delivered]", { timeout: WAIT });

    // Terminal to browser; the page answers with receipts.
    await chat("send", "alice", "hello from the terminal");
    await page.waitForSelector(".msg.in >> text=hello from the terminal", { timeout: WAIT });
    await page.waitForSelector("body[data-receipts='1']", { timeout: WAIT });
    const receipts = await chat("recv");
    assert.match(receipts.stderr, /delivered to alice/);
    assert.match(receipts.stderr, /read by alice/);
    // The page recorded bob's token from his text: its receipts went
    // anonymously, presenting it.
    assert.equal(await page.getAttribute("body", "data-fallbacks"), "1");

    // The same safety number on both sides.
    const safety = await chat("safety", "alice");
    const native = safety.stdout.split("\n")[0].replace(/\D/g, "");
    const shown = await page.getAttribute("#safety", "data-digits");
    assert.equal(native.length, 60);
    assert.equal(shown, native);

    // Reload: locked; the passphrase opens the sealed store again.
    await page.reload();
    await page.waitForSelector("body[data-ready=true]");
    assert.equal(await page.isHidden("#user-row"), true, "the device was kept");
    await page.fill("#pass", "a wrong passphrase");
    await page.click("#go");
    await page.waitForFunction(() => document.getElementById("status").textContent === "wrong passphrase");
    await page.fill("#pass", "correct horse battery staple");
    await page.click("#go");
    await page.waitForFunction(() => document.getElementById("status").textContent.startsWith("connected"), null, { timeout: WAIT });
    const history = await page.$$eval(".msg", (els) => els.map((e) => e.textContent));
    assert.equal(history.length, 2, history.join("\n"));
    assert.match(history[0], /you → bob: hello from the browser \[(delivered|read)\]/);
    assert.match(history[1], /bob: hello from the terminal/);
    assert.equal(await page.getAttribute("#safety", "data-digits"), native);

    // The sessions survived: both directions decrypt without a new one.
    await page.fill("#text", "after the reload");
    await page.click("#send");
    await page.waitForSelector(".msg.out >> text=after the reload", { timeout: WAIT });
    const again = await chat("recv");
    assert.match(again.stdout, /^alice: after the reload$/m);
    assert.doesNotMatch(again.stderr, /first contact/);
    await chat("send", "alice", "and back again");
    const back = await page.waitForSelector(".msg.in >> text=and back again", { timeout: WAIT });
    assert.equal(await back.getAttribute("data-new-session"), "false");
    assert.doesNotMatch(await page.textContent("#notices"), /could not be read|identity changed/);
    await page.waitForSelector(".msg.out[data-status=delivered] >> text=after the reload", { timeout: WAIT });

    // A group of tacit-chat's, then one of the page's: a message each way
    // through the relay (the chains pairwise, the messages by SubmitGroup).
    await chat("group", "create", "team", "alice");
    await page.waitForSelector("body[data-groups='1']", { timeout: WAIT });
    await chat("group", "send", "team", "hello group");
    await page.waitForSelector(".msg.in >> text=hello group", { timeout: WAIT });
    assert.match(await page.textContent(".msg.in >> text=hello group"), /\[team\] bob: hello group/);
    await page.selectOption("#group", { label: "team" });
    await page.fill("#group-text", "hi group");
    await page.click("#group-send");
    await page.waitForSelector(".msg.out >> text=hi group", { timeout: WAIT });
    const team = await chat("recv");
    assert.match(team.stdout, /^\[team\] alice: hi group$/m);
    await page.fill("#group-title", "web");
    await page.fill("#group-members", "bob");
    await page.click("#group-create");
    await page.waitForSelector("body[data-groups='2']", { timeout: WAIT });
    await page.selectOption("#group", { label: "web" });
    await page.fill("#group-text", "from the page's group");
    await page.click("#group-send");
    await page.waitForSelector(".msg.out >> text=from the page's group", { timeout: WAIT });
    const web = await chat("recv");
    assert.match(web.stdout, /^\[web\] alice: from the page's group$/m);
    await chat("group", "send", "web", "back in the page's group");
    await page.waitForSelector(".msg.in >> text=back in the page's group", { timeout: WAIT });
    assert.doesNotMatch(await page.textContent("#notices"), /could not be read|refused/);
    // Since the reload, every submission (texts, receipts, group controls,
    // chains and SubmitGroup) presented bob's recorded token: none went
    // logged in.
    assert.equal(await page.getAttribute("body", "data-fallbacks"), "0");

    // The page rotates its delivery token (the button is live once
    // logged in). Bob's recorded token is refused: his next text goes
    // again logged in (tacit-client logs the fallback at debug level).
    // The page's read receipt and answer carry the new token, and bob's
    // text after them goes anonymously, presenting it.
    assert.equal(await page.isEnabled("#rotate-token"), true);
    await page.click("#rotate-token");
    await page.waitForSelector("body[data-token-rotations='1']", { timeout: WAIT });
    const stale = await chatDebug("send", "alice", "after the rotation");
    assert.match(stale.stderr, /delivery token refused; submitting logged in/);
    await page.waitForSelector(".msg.in >> text=after the rotation", { timeout: WAIT });
    await page.fill("#peer", "bob");
    await page.fill("#text", "with the new token");
    await page.click("#send");
    await page.waitForSelector(".msg.out[data-status=sent] >> text=with the new token", { timeout: WAIT });
    const rotated = await chat("recv");
    assert.match(rotated.stdout, /^alice: with the new token$/m);
    const fresh = await chatDebug("send", "alice", "presenting the new token");
    assert.doesNotMatch(fresh.stderr, /delivery token refused/);
    await page.waitForSelector(".msg.in >> text=presenting the new token", { timeout: WAIT });

    await page.screenshot({ path: process.env.WEB_CHAT_SCREENSHOT ?? join(dir, "web-chat.png") });
  } finally {
    await browser.close();
    relay.kill("SIGTERM");
    rmSync(dir, { recursive: true, force: true });
  }
});
