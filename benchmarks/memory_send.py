"""Peak memory of a real `usercom send` of 200,000 identifies of distinct users to the sandbox.

Run: .venv/bin/python benchmarks/memory_send.py [--users N]   (target: peak RSS < 150 MB)
The sandbox runs in its own process (latency 0); the command runs in a child process whose
peak resident size the kernel reports (the sandbox's memory is not counted).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _sandbox import sandbox_process

CONFIG = Path(__file__).resolve().parent.parent / "pipeline" / "examples" / "config.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=200_000)
    users = parser.parse_args().users
    key = json.loads(CONFIG.read_text())["apiKey"]
    with tempfile.TemporaryDirectory() as folder:
        events = Path(folder) / "events.jsonl"
        with events.open("w") as sink:
            for n in range(users):
                traits = {"email": f"user{n}@example.com", "plan": "pro", "age": n % 90}
                message = {"type": "identify", "userId": f"u{n:07d}", "traits": traits}
                sink.write(json.dumps(message) + "\n")
        with sandbox_process("--api-key", key) as url:
            command = [sys.executable, "-m", "pipeline.cli", "send", str(events)]
            command += ["--config", str(CONFIG), "--base-url", url, "--concurrency", "32"]
            started = time.monotonic()
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            seconds = time.monotonic() - started
            # Read now: the sandbox (holding every user) is not a waited-for child yet.
            peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"users: {users}; exit {done.returncode}; {seconds:.0f} s ({users / seconds:.0f}/s)")
    print(f"peak RSS of usercom send: {peak_mb:.0f} MB (target < 150 MB)")
    if done.returncode != 0:
        print(done.stderr[-2000:])


if __name__ == "__main__":
    main()
