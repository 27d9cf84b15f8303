// A static server for a built package directory, on 127.0.0.1, with an
// empty page at "/" for scripts to import the module from.
import { createServer } from "node:http";
import { readFileSync } from "node:fs";
import { join, normalize } from "node:path";

const TYPES = { ".js": "text/javascript", ".wasm": "application/wasm" };

/** Serves `dir`; resolves `{ url, close }`. */
export async function serve(dir) {
  const server = createServer((req, res) => {
    const path = normalize(new URL(req.url, "http://x").pathname);
    if (path === "/") {
      res.writeHead(200, { "content-type": "text/html" });
      res.end("<!doctype html><title>tacit</title>");
      return;
    }
    try {
      const body = readFileSync(join(dir, path));
      const type = TYPES[path.slice(path.lastIndexOf("."))] ?? "application/octet-stream";
      res.writeHead(200, { "content-type": type });
      res.end(body);
    } catch {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}/`,
    close: () => server.close(),
  };
}
