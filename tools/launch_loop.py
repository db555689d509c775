"""Launch a command N times in a row and count the runs that fail or abort (a flaky-teardown hunter).

    python tools/launch_loop.py -n 100 -- torchrun --standalone --nproc_per_node=2 chapters/appA_pytorch/ddp_train.py

`{tmp}` in the command becomes a fresh, empty folder for each launch (removed afterwards), e.g. `--out {tmp}/run`.
A launch fails when it exits non-zero or its stderr says "terminate called", "SIGABRT" or "Signal 6". The head
and tail of the stderr of the first few failures are printed, then one summary line: runs, failures, exit codes, time.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
import time

ABORT_MARKERS = ("terminate called", "SIGABRT", "Signal 6")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=20, help="number of launches")
    parser.add_argument("--timeout", type=float, default=300, help="seconds one launch may take")
    parser.add_argument("--show", type=int, default=3, help="print the stderr tail of the first SHOW failures")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to launch after --")
    codes, failures, aborts, shown = collections.Counter(), 0, 0, 0
    started = time.perf_counter()
    for run in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory(prefix="launch_loop_") as tmp:
            try:
                done = subprocess.run([part.replace("{tmp}", tmp) for part in command], capture_output=True,
                                      text=True, timeout=args.timeout)
                code, stderr = done.returncode, done.stderr
            except subprocess.TimeoutExpired as err:
                code, stderr = "timeout", (err.stderr or b"").decode(errors="replace")
        aborted = any(marker in stderr for marker in ABORT_MARKERS)
        codes[code] += 1
        if code != 0 or aborted:
            failures += 1
            aborts += aborted
            if shown < args.show:
                shown += 1
                excerpt = stderr if len(stderr) <= 2500 else f"{stderr[:1200]}\n[...]\n{stderr[-1200:]}"
                print(f"--- run {run}: exit {code}{', aborted' if aborted else ''}\n{excerpt}", flush=True)
    seconds = time.perf_counter() - started
    print(f"runs {args.runs}, failures {failures}, aborts {aborts}, exit codes {dict(codes)}, "
          f"{seconds:.1f} s ({seconds / args.runs:.2f} s each)", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
