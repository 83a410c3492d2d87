"""Peak memory of `usercom send --dry-run` streaming a large file of the standard mix.

Run: .venv/bin/python benchmarks/memory.py [--events N]   (default 1,000,000; target < 200 MB)
The file is generated in bounded memory, then the command runs in a child process whose peak
resident size the kernel reports.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

from pipeline.testing.mix import standard_mix

CONFIG = Path(__file__).resolve().parent.parent / "pipeline" / "examples" / "config.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    wanted = parser.parse_args().events
    with tempfile.TemporaryDirectory() as folder:
        events = Path(folder) / "events.jsonl"
        with events.open("w") as sink:
            for event in islice(standard_mix(wanted // 9 + 1), wanted):
                sink.write(json.dumps(event) + "\n")
        size_mb = events.stat().st_size / 1e6
        command = [sys.executable, "-m", "pipeline.cli", "send", str(events)]
        command += ["--config", str(CONFIG), "--dry-run"]
        started = time.monotonic()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        seconds = time.monotonic() - started
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"events:          {wanted} ({size_mb:.0f} MB of JSONL)")
    print(f"exit status:     {done.returncode}")
    print(f"time:            {seconds:.1f} s ({wanted / seconds:.0f} events/s)")
    print(f"peak memory:     {peak_mb:.0f} MB  (target < 200 MB)")


if __name__ == "__main__":
    main()
