"""Execution priority: inference that leaves the rest of the machine responsive.

Transformer-Lite (arXiv 2403.20041) pairs its kernels with an execution-priority setting so a
phone stays responsive while a model runs; on a CPU the same holds for every core a generation
takes. Two levels:

    normal   as the operating system started the process (tmac changes nothing, or undoes
             its own ``low``)
    low      every thread of this process -- the Python thread and Numba's worker threads --
             at the lowest priority an unprivileged user may set: on Linux the SCHED_IDLE
             policy, which runs only on a core nothing else wants; on other POSIX systems
             nice 19. Threads created afterwards (a larger Numba pool, the tokenizer's) inherit
             it from the thread that creates them. Where the kernel has EEVDF's custom slices
             (Linux 6.12+), the threads also take a short slice (0.3 ms), so a program that
             wakes up does not wait out a decode thread's slice (~1-3 ms). (0.1 ms, the
             shortest Linux grants, cost a decode 12% against a probe waking every
             millisecond; 0.3 ms costs 8% and keeps the gain: docs/model.md.)

Linux's autogroups (``/proc/sys/kernel/sched_autogroup_enabled``) share the CPU fairly between
*sessions* first (a terminal, a desktop app), whatever the priorities inside each: SCHED_IDLE
then only yields to programs of the same session. So when the process leads a session of its
own (``setsid tmac generate ...``; ``tmac bench priority`` starts its decodes so), ``low`` also
sets that session's autogroup to nice 19 (``/proc/self/autogroup``), and it yields to every
other session too. A process that shares its session (e.g. with the shell) leaves the group
alone: lowering it would slow the user's other programs.

``set_priority("low")`` is for the whole process and, for an unprivileged user, for good: the
operating system lets a process lower its priority but not raise it back (Linux needs
CAP_SYS_NICE or an RLIMIT_NICE allowance). ``set_priority("normal")`` after it tries to restore
what the process had, and says so clearly when the system refuses. Results never depend on the priority: only *when* the threads
run changes, not what they compute.
"""
from __future__ import annotations

import ctypes
import os
import platform
import struct
import sys

PRIORITIES = ("normal", "low")
LOW_NICE = 19
_before_low: tuple[int, int, int | None] | None = None   # (policy, nice, autogroup nice) before "low"
AUTOGROUP = "/proc/self/autogroup"
SHORT_SLICE_NS = 300_000        # the slice of a low thread (Linux grants 0.1-100 ms)
# sched_setattr / sched_getattr syscall numbers (Python's os module has neither)
_ATTR_SYSCALLS = {"x86_64": (314, 315), "aarch64": (274, 275), "arm64": (274, 275)}
_ATTR = "IIQiIQQQII"            # struct sched_attr, version 1: 56 bytes


def check(priority: str) -> str:
    """``priority``, or ValueError naming the choices."""
    if priority not in PRIORITIES:
        raise ValueError(f"priority must be one of {PRIORITIES}, got {priority!r}")
    return priority


def thread_ids() -> list[int]:
    """The kernel ids of this process's threads (Linux: /proc/self/task), else [0] (the
    calling thread, in the calls that take 0 for "me")."""
    try:
        return sorted(int(t) for t in os.listdir("/proc/self/task"))
    except OSError:
        return [0]


def uses_sched_idle() -> bool:
    """Whether ``low`` means Linux's SCHED_IDLE policy (else nice 19)."""
    return sys.platform.startswith("linux") and hasattr(os, "SCHED_IDLE")


def set_priority(priority: str) -> None:
    """Put every thread of this process at ``priority`` (module docstring). OSError with a
    one-line reason when the system refuses (e.g. ``normal`` after ``low`` without the right)."""
    global _before_low
    check(priority)
    if priority == "normal" and _before_low is None:
        return                              # nothing of ours to undo
    if not hasattr(os, "setpriority"):
        raise OSError(f"priority {priority!r}: this operating system ({sys.platform}) offers no "
                      "priority control tmac can use")
    if priority == "low":
        if _before_low is None:
            _before_low = (os.sched_getscheduler(0) if uses_sched_idle() else 0,
                           os.getpriority(os.PRIO_PROCESS, 0),
                           autogroup_nice() if leads_own_session() else None)
        policy, nice, group_nice = (os.SCHED_IDLE if uses_sched_idle() else None), LOW_NICE, \
            LOW_NICE if _before_low[2] is not None else None
    else:
        policy, nice, group_nice = _before_low
        policy = policy if uses_sched_idle() else None
    try:
        for tid in thread_ids():
            try:
                _set_thread(tid, policy, nice)
            except ProcessLookupError:      # a thread that ended meanwhile
                continue
        if group_nice is not None and autogroup_nice() != group_nice:
            with open(AUTOGROUP, "w") as f:
                f.write(str(group_nice))
    except PermissionError:
        raise OSError(f"priority {priority!r}: the operating system refuses to raise this "
                      "process's priority again (an unprivileged process may only lower "
                      "it); start a new process instead") from None
    if priority == "normal":
        _before_low = None


def _set_thread(tid: int, policy: int | None, nice: int) -> None:
    """One thread (``tid`` as thread_ids gives it) at scheduling ``policy`` (None: leave it)
    and ``nice``. Going to SCHED_IDLE, the thread first takes nice and the short slice as a
    normal task (SCHED_IDLE keeps them but ignores both when set directly); going back, the
    default slice again."""
    if policy is not None and os.sched_getscheduler(tid) != policy:
        idle = policy == getattr(os, "SCHED_IDLE", None)
        _fair_attr(tid, nice, SHORT_SLICE_NS if idle else 0)
        os.sched_setscheduler(tid, policy, os.sched_param(0))
    if os.getpriority(os.PRIO_PROCESS, tid) != nice:
        os.setpriority(os.PRIO_PROCESS, tid, nice)


def _attr_syscalls():
    """(sched_setattr, sched_getattr) syscall numbers here, or None (not Linux, other CPU)."""
    if not sys.platform.startswith("linux"):
        return None
    return _ATTR_SYSCALLS.get(platform.machine())


def _fair_attr(tid: int, nice: int, slice_ns: int) -> None:
    """sched_setattr: SCHED_OTHER at ``nice`` with a slice of ``slice_ns`` (0: the default).
    Silently nothing where the call or custom slices do not exist (older kernels ignore the
    slice); PermissionError where the system refuses."""
    calls = _attr_syscalls()
    if calls is None:
        return
    attr = ctypes.create_string_buffer(struct.pack(_ATTR, struct.calcsize(_ATTR), os.SCHED_OTHER,
                                                   0, nice, 0, slice_ns, 0, 0, 0, 0))
    if ctypes.CDLL(None, use_errno=True).syscall(calls[0], tid, attr, 0) != 0:
        if ctypes.get_errno() == 1:                  # EPERM
            raise PermissionError(1, "sched_setattr refused")


def thread_slice_ns(tid: int) -> int | None:
    """The scheduling slice of thread ``tid`` in ns (sched_getattr's runtime: Linux 6.12+
    reports the slice of fair tasks), or None where it cannot be read."""
    calls = _attr_syscalls()
    if calls is None:
        return None
    size = struct.calcsize(_ATTR)
    attr = ctypes.create_string_buffer(size)
    if ctypes.CDLL(None, use_errno=True).syscall(calls[1], tid, attr, size, 0) != 0:
        return None
    return struct.unpack(_ATTR, attr.raw)[5] or None


def leads_own_session() -> bool:
    """Whether this process leads its session, so its autogroup (Linux) holds only it and its
    children."""
    return hasattr(os, "getsid") and os.getsid(0) == os.getpid() and autogroup_nice() is not None


def autogroup_nice() -> int | None:
    """The nice value of this process's autogroup (Linux, autogroups on), else None."""
    try:
        with open(AUTOGROUP) as f:
            return int(f.read().split()[-1])
    except (OSError, ValueError, IndexError):
        return None


def thread_priorities() -> dict[int, tuple[str, int]]:
    """{thread id: (scheduling policy name, nice value)} of this process's threads: what the
    tests and ``tmac bench priority`` check (thread_slice_ns gives the slice)."""
    names = {getattr(os, n): n for n in ("SCHED_OTHER", "SCHED_IDLE", "SCHED_BATCH", "SCHED_FIFO",
                                         "SCHED_RR") if hasattr(os, n)}
    found = {}
    for tid in thread_ids():
        try:
            policy = (names.get(os.sched_getscheduler(tid), "?")
                      if hasattr(os, "sched_getscheduler") else "?")
            found[tid] = (policy, os.getpriority(os.PRIO_PROCESS, tid))
        except ProcessLookupError:
            continue
    return found
