"""Stopping a long run cleanly: Ctrl-C and SIGTERM ask the training loop to stop between two steps.

Without this, Ctrl-C raises KeyboardInterrupt wherever the program happens to be (perhaps between
a backward pass and the optimizer step, or halfway through writing a checkpoint), and SIGTERM,
which `docker stop`, Slurm, `timeout` and shutdowns send, kills the process without a save.
Inside `with StopRequests() as stop:` both only set `stop.signal`; the loop checks it after each
step, saves, and exits with the shell's code for that signal (130 for Ctrl-C, 143 for SIGTERM).
Further signals while it saves are noted, not obeyed, so a save is never cut short.
"""

from __future__ import annotations

import signal
import sys
import threading

NAMES = {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM"}


class StopRequests:
    """While active, SIGINT and SIGTERM set `signal` (the first one received) instead of stopping the program.

    Only the main thread can receive signals; elsewhere (or where a signal is ignored, as in a
    background job) the handlers are left as they are and `signal` stays None.
    """

    def __init__(self, log=None):
        self.signal: int | None = None
        self._log = log or (lambda message: print(message, file=sys.stderr, flush=True))
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.signal is None:
            self.signal = signum
            self._log(f"{NAMES.get(signum, signum)}: stopping after this step and saving the run. "
                      "Further interrupts are ignored until the checkpoint is written.")
        else:
            self._log(f"{NAMES.get(signum, signum)} again: still finishing the step and saving; please wait.")

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for signum in NAMES:
                if signal.getsignal(signum) is signal.SIG_IGN:
                    continue  # the launcher chose to ignore it (e.g. a background job): respect that
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    @property
    def requested(self) -> bool:
        return self.signal is not None


class Interrupted(KeyboardInterrupt):
    """The run stopped on a signal after saving; `exit_code` is the shell's code for it (128 + the signal)."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum
