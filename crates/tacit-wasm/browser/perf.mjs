// Times the workloads of tacit_wasm::perf in headless Chromium (Debian's
// `chromium`, driven by playwright-core) and prints them beside the
// gzipped size of the shipped module and its glue.
//
//   node perf.mjs SHIPPED_PKG PERF_PKG
//
// SHIPPED_PKG is build.sh's output; PERF_PKG the same built with the
// `perf` feature (TACIT_WASM_FEATURES=perf build.sh DIR). Each workload
// runs 11 samples of N iterations (after a warm-up); the median and the
// minimum per operation are printed.
import { chromium } from "playwright-core";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { serve } from "./serve.mjs";

const [shipped, perfPkg] = process.argv.slice(2);
if (!shipped || !perfPkg) {
  console.error("usage: node perf.mjs SHIPPED_PKG PERF_PKG");
  process.exit(2);
}

let total = 0;
for (const file of ["tacit_wasm_bg.wasm", "tacit_wasm.js", "idb-storage.js"]) {
  const bytes = readFileSync(join(shipped, file));
  const gz = gzipSync(bytes, { level: 9 }).length;
  total += gz;
  console.log(`size ${file}: ${bytes.length} B, gzip -9 ${gz} B`);
}
console.log(`size total gzipped: ${total} B (${(total / 1024).toFixed(1)} KiB)`);

const server = await serve(perfPkg);
const url = server.url;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
try {
  const page = await browser.newPage();
  await page.goto(url);
  const results = await page.evaluate(async () => {
    const m = await import("/tacit_wasm.js");
    await m.default();
    const plan = [["session-setup", 200], ["chain-step", 20000], ["ping-pong", 2000]];
    const out = {};
    for (const [name, n] of plan) {
      const perOp = [];
      for (let i = 0; i < 11; i++) perOp.push((m.perfRun(name, n) / n) * 1000);
      perOp.sort((a, b) => a - b);
      out[name] = { median: perOp[5], min: perOp[0], iterations: n };
    }
    return out;
  });
  console.log(`browser: Chromium ${browser.version()} (headless)`);
  for (const [name, r] of Object.entries(results)) {
    console.log(`wasm ${name}: median ${r.median.toFixed(2)} us, min ${r.min.toFixed(2)} us (11 x ${r.iterations})`);
  }
} finally {
  await browser.close();
  server.close();
}
