"""Child processes that die with the process that started them, whatever kills it.

``cxstream up`` starts the embedded broker, the collector and the worker as
processes in sessions of their own (so that Ctrl-C reaches ``up`` alone and
``up`` stops them in an order that loses nothing). A ``kill -9`` of ``up``
runs none of its code, so the children must learn of it from the kernel:
on Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, set in the child between
fork and exec (it survives the exec, also of a binary such as tansu).

Two details of ``PR_SET_PDEATHSIG`` matter:

- It fires when the *thread* that forked the child exits, not the process.
  ``cxstream up`` starts every child (restarts included) from its main
  thread, which lives as long as the process.
- A parent killed after ``fork`` but before the ``prctl`` leaves a child
  that never gets the signal: the child therefore checks, once the signal
  is set, that its parent is still the process that started it, and kills
  itself otherwise.

Without ``prctl`` (not Linux) ``die_with_parent`` returns None: the
children are then only stopped by the next ``cxstream up`` on the same data
directory, which stops the processes its dead predecessor recorded
(``pipeline.supervisor.runner``). Only Linux keeps ``/proc``, so ``process_start``
is None elsewhere.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from pathlib import Path
from typing import Callable

__all__ = ["die_with_parent", "process_start", "pdeathsig_available"]

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _prctl():  # noqa: ANN202 - a ctypes function, or None
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    fn.restype = ctypes.c_int
    return fn


# Resolved once, in the parent: the function that runs between fork and exec
# then calls C and os functions only (no import, no lookup, no allocation of note).
_PRCTL = _prctl()


def pdeathsig_available() -> bool:
    return _PRCTL is not None


def die_with_parent(sig: signal.Signals = signal.SIGKILL) -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``subprocess.Popen``: the child gets ``sig`` when this thread ends.

    Call it in the thread that will call ``Popen`` (the main thread for a
    child meant to live as long as the process). None where the kernel
    offers no such signal.
    """
    if _PRCTL is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        if _PRCTL(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the parent died before the prctl: nobody will send the signal
            os.kill(os.getpid(), sig)

    return preexec


def process_start(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (/proc), or None if it is gone or unknown.

    A pid with the same start time is the same process; a pid reused later is not.
    """
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie has ended: only its exit status is left
        return None
    return int(fields[19])
