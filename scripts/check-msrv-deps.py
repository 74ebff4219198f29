#!/usr/bin/env python3
"""Fails if a package in the dependency graph declares a `rust-version` above
the workspace's (the MSRV, `rust-version` in Cargo.toml's [workspace.package]).

CI has one toolchain and cannot fetch another, so the MSRV is checked in two
halves: our own code by clippy's `incompatible_msrv` lint (on by default, it
reads `rust-version`, and `.ci/run` denies warnings), and our dependencies'
declared MSRVs by this script, over `cargo metadata` (the versions Cargo.lock
pins). A dependency that declares no `rust-version` is not judged.
"""

import json
import subprocess
import sys


def version(text):
    return tuple(int(part) for part in text.split(".")) + (0,) * (3 - len(text.split(".")))


def main():
    metadata = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--locked", "--all-features"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    members = set(metadata["workspace_members"])
    packages = {package["id"]: package for package in metadata["packages"]}
    msrvs = {packages[member]["rust_version"] for member in members}
    if len(msrvs) != 1 or None in msrvs:
        sys.exit(f"workspace members disagree on rust-version: {msrvs}")
    msrv = msrvs.pop()
    used = {node["id"] for node in metadata["resolve"]["nodes"]} - members
    too_new = sorted(
        f"{packages[id]['name']} {packages[id]['version']} needs Rust {packages[id]['rust_version']}"
        for id in used
        if packages[id].get("rust_version") and version(packages[id]["rust_version"]) > version(msrv)
    )
    if too_new:
        print(f"dependencies above the MSRV {msrv}:", *too_new, sep="\n  ")
        sys.exit(1)
    print(f"MSRV {msrv}: {len(used)} dependencies, none declares a newer rust-version")


if __name__ == "__main__":
    main()
