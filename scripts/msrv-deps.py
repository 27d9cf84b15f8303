#!/usr/bin/env python3
"""Checks that no dependency of the publishable crates needs a newer Rust
than the workspace's rust-version, from `cargo metadata` and the lock file.

The check .ci/run falls back to when the toolchain of the declared minimum
version cannot be installed: it covers the dependencies' declared
rust-version, not the project's own code (clippy's incompatible_msrv lint
covers the standard library APIs that code uses). Exits 1 on a violation.
"""
import json
import subprocess
import sys

PUBLISHABLE = {"tacit", "tacit-seal", "tacit-sqlite", "tacit-wasm", "tacit-relay-proto", "tacit-relay", "tacit-client"}


def version(text):
    return tuple(int(part) for part in text.split("."))[:3]


def main():
    meta = json.loads(subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked",
         "--filter-platform", "x86_64-unknown-linux-gnu"],
        check=True, capture_output=True, text=True).stdout)
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    roots = [p["id"] for p in meta["packages"] if p["name"] in PUBLISHABLE]
    if len(roots) != len(PUBLISHABLE):
        sys.exit(f"publishable crates not all found: {sorted(packages[r]['name'] for r in roots)}")
    msrv = version(packages[roots[0]]["rust_version"])
    seen, stack = set(), list(roots)
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        for dep in nodes[node]["deps"]:
            if any(kind["kind"] in (None, "build") for kind in dep["dep_kinds"]):
                stack.append(dep["pkg"])
    newer = sorted(
        (packages[i]["name"], packages[i]["version"], packages[i]["rust_version"])
        for i in seen
        if packages[i]["rust_version"] and version(packages[i]["rust_version"]) > msrv
    )
    for name, ver, needs in newer:
        print(f"{name} {ver} needs Rust {needs}", file=sys.stderr)
    print(f"{len(seen)} crates built for the publishable ones; "
          f"{len(newer)} need more than Rust {'.'.join(map(str, msrv))}")
    sys.exit(1 if newer else 0)


if __name__ == "__main__":
    main()
