"""The seccomp filter of a sandboxed run: refuses the system calls whose
memory no limit of the run would count.

Where the run has a memory cgroup (rewards.sandbox_cgroup) every page is
charged to it, except, under cgroup v1, socket buffers (v1 charges only
TCP's, and only when its own limit is set): Unix sockets are refused there.
Where there is no cgroup at all, the run's memory is bounded per process by
RLIMIT_AS and its files by the tmpfs sizes, so what neither counts is
refused: `memfd_create` and `memfd_secret` (anonymous files filled with
`write()`), `shmget` (SysV shared memory, which outlives its mapping),
`msgget` (SysV message queues) and Unix sockets (`socket`/`socketpair`
with AF_UNIX); POSIX message queues are bounded by RLIMIT_MSGQUEUE = 0. The
program gets EPERM, as from any refused call. The sandbox fails closed: on a
machine whose architecture this module has no table for, a run that needs the
filter is refused instead of run unbounded.

The filter is classic BPF in the kernel's `struct sock_filter` layout, handed
to bubblewrap (`--seccomp FD`), which installs it just before it execs the
program. It also refuses every system call of another ABI (i386 via int
0x80, x32), whose numbers the tables below do not cover.
"""
from __future__ import annotations

import errno
import platform
import struct
from typing import Optional

# AUDIT_ARCH_* and the syscall numbers of each architecture (asm/unistd_64.h;
# asm-generic/unistd.h for aarch64).
ARCHES = {
    "x86_64": (0xC000003E, {"memfd_create": 319, "memfd_secret": 447, "shmget": 29, "msgget": 68,
                            "socket": 41, "socketpair": 53}),
    "aarch64": (0xC00000B7, {"memfd_create": 279, "memfd_secret": 447, "shmget": 194, "msgget": 186,
                             "socket": 198, "socketpair": 199}),
}
X32_BIT = 0x40000000
AF_UNIX = 1

# What each memory account leaves uncounted.
REFUSED = {
    "cgroup-v2": (),
    "cgroup-v1": ("unix-sockets",),
    "none": ("memfd_create", "memfd_secret", "shmget", "msgget", "unix-sockets"),
}

_LD_W_ABS, _JEQ_K, _JGE_K, _RET_K = 0x20, 0x15, 0x35, 0x06
_RET_ALLOW = 0x7FFF0000
_RET_EPERM = 0x00050000 | errno.EPERM
_NR, _ARCH, _ARG0 = 0, 4, 16  # offsets in struct seccomp_data (little-endian: arg 0's low word at 16)


def _ins(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k)


def program(account: str, machine: Optional[str] = None) -> Optional[bytes]:
    """The filter for a run whose memory account is `account` (a REFUSED
    key), as bytes; b"" when nothing needs refusing; None when this machine's
    architecture has no table (the caller must then refuse to run)."""
    refused = REFUSED[account]
    if not refused:
        return b""
    arch = ARCHES.get(machine or platform.machine())
    if arch is None:
        return None
    audit_arch, numbers = arch
    calls = [numbers[name] for name in refused if name != "unix-sockets"]
    sockets = [numbers["socket"], numbers["socketpair"]] if "unix-sockets" in refused else []
    # Layout: [arch check][x32 check] then one JEQ per refused call (jump to EPERM),
    # then the socket checks (load arg 0, compare with AF_UNIX), ALLOW, EPERM.
    body: list[tuple] = []  # ("jeq_deny", nr) | ("jeq_sock", nr)
    body += [("deny", nr) for nr in calls]
    body += [("sock", nr) for nr in sockets]
    out = [_ins(_LD_W_ABS, _ARCH), None, _ins(_LD_W_ABS, _NR), None]
    n_body = len(body)
    # after the body: [ALLOW][EPERM][socket tail: LD arg0, JEQ AF_UNIX -> EPERM, ALLOW]
    for i, (kind, nr) in enumerate(body):
        pos = 4 + i
        allow_at = 4 + n_body
        eperm_at = allow_at + 1
        sock_at = eperm_at + 1
        target = eperm_at if kind == "deny" else sock_at
        out.append(_ins(_JEQ_K, nr, jt=target - pos - 1, jf=0))
    allow_at = 4 + n_body
    eperm_at = allow_at + 1
    out[1] = _ins(_JEQ_K, audit_arch, jt=0, jf=eperm_at - 1 - 1)  # wrong arch -> EPERM
    out[3] = _ins(_JGE_K, X32_BIT, jt=eperm_at - 3 - 1, jf=0)  # x32 ABI -> EPERM
    out.append(_ins(_RET_K, _RET_ALLOW))
    out.append(_ins(_RET_K, _RET_EPERM))
    if sockets:
        sock_at = len(out)
        out.append(_ins(_LD_W_ABS, _ARG0))
        out.append(_ins(_JEQ_K, AF_UNIX, jt=0, jf=1))
        out.append(_ins(_RET_K, _RET_EPERM))
        out.append(_ins(_RET_K, _RET_ALLOW))
        assert sock_at == eperm_at + 1
    if len(out) > 255:  # jump offsets are one byte
        raise ValueError("seccomp filter too long")
    return b"".join(out)
