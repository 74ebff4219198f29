#!/usr/bin/env python3
"""Five `node` example processes of one runtime, as a new user would start them:
each must print a `key_changed` line for every key of every node (itself
included) within the timeout, then leave and exit 0 on SIGTERM.

    scripts/five-nodes.py --runtime tokio --runs 10
    scripts/five-nodes.py --runtime all --runs 10      # tokio, smol, async-std

Builds each adapter's `node` example once (debug profile), then runs it from
target/. Only loopback addresses are used. Exits 1 if any run failed.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time

NODES = 5
KEYS = ["role", "zone", "index", "version"]
RUNTIMES = ["tokio", "smol", "async-std"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build(runtime):
    """Builds the runtime's node example and returns a private copy of it."""
    subprocess.run(
        ["cargo", "build", "--quiet", "-p", f"chitchat-{runtime}", "--example", "node"],
        cwd=ROOT,
        check=True,
    )
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    binary = os.path.join(target, "debug", "examples", "node")
    copy = os.path.join(target, "debug", "examples", f"five-nodes-{runtime}")
    with open(binary, "rb") as source, open(copy, "wb") as destination:
        destination.write(source.read())
    os.chmod(copy, 0o755)
    return copy


class Node:
    """One node process and the JSON lines it printed."""

    def __init__(self, binary, name, seed):
        args = [binary, "--listen", "127.0.0.1:0", "--name", name, "--gossip-interval-ms", "100"]
        if seed:
            args += ["--seed", seed]
        for key in KEYS:
            args += ["--set", f"{key}={name}-{key}"]
        self.name = name
        self.lines = []
        self.lock = threading.Lock()
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.reader = threading.Thread(target=self.read, daemon=True)
        self.reader.start()

    def read(self):
        for line in self.process.stdout:
            try:
                value = json.loads(line)
            except ValueError:
                value = {"event": "unparsable", "line": line}
            with self.lock:
                self.lines.append(value)

    def events(self, kind):
        with self.lock:
            return [line for line in self.lines if line.get("event") == kind]

    def keys_seen(self):
        return {
            (line["node"], line["key"])
            for line in self.events("key_changed")
            if line.get("change") == "set" and line.get("value") == f"{line['node']}-{line['key']}"
        }


def run_once(binary, timeout):
    """One run; returns None if it passed, or what went wrong."""
    nodes = []
    try:
        nodes.append(Node(binary, "n0", None))
        deadline = time.monotonic() + timeout
        while not nodes[0].events("started"):
            if time.monotonic() > deadline or nodes[0].process.poll() is not None:
                return "n0 never printed started"
            time.sleep(0.02)
        seed = nodes[0].events("started")[0]["listen"]
        for i in range(1, NODES):
            nodes.append(Node(binary, f"n{i}", seed))
        expected = {(f"n{i}", key) for i in range(NODES) for key in KEYS}
        while time.monotonic() < deadline:
            if all(node.keys_seen() == expected for node in nodes):
                break
            time.sleep(0.05)
        missing = {node.name: sorted(expected - node.keys_seen()) for node in nodes}
        missing = {name: keys for name, keys in missing.items() if keys}
        if missing:
            return f"missing key_changed lines after {timeout}s: {missing}"
        for node in nodes:
            node.process.send_signal(signal.SIGTERM)
        for node in nodes:
            code = node.process.wait(timeout=timeout)
            node.reader.join(timeout=5)
            if code != 0:
                return f"{node.name} exited {code}"
            if not node.events("stopped"):
                return f"{node.name} did not print stopped"
        return None
    finally:
        for node in nodes:
            if node.process.poll() is None:
                node.process.kill()
                node.process.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtime", choices=RUNTIMES + ["all"], default="all")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per run")
    options = parser.parse_args()
    runtimes = RUNTIMES if options.runtime == "all" else [options.runtime]
    failed = False
    for runtime in runtimes:
        binary = build(runtime)
        passed = 0
        for run in range(1, options.runs + 1):
            start = time.monotonic()
            problem = run_once(binary, options.timeout)
            elapsed = time.monotonic() - start
            if problem is None:
                passed += 1
                print(f"{runtime} run {run}: pass ({elapsed:.1f} s)", flush=True)
            else:
                failed = True
                print(f"{runtime} run {run}: FAIL: {problem}", flush=True)
        print(f"{runtime}: {passed} of {options.runs} runs passed", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
