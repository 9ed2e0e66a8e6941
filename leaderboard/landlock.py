"""Linux Landlock through ctypes: a process limits itself to reading a list of folders, writing one,
and (ABI >= 4) no TCP connect or bind. Needs no privileges; inherited by children; irreversible.

Used by the leaderboard's scoring sandbox: submitted code runs after `restrict(...)`, so it can
read its own copy, the inputs handed to it and the Python installation, and nothing else (a
private test set included), whatever the file permissions say.
"""

from __future__ import annotations

import ctypes
import os
import platform

_SYSCALLS = {"x86_64": (444, 445, 446), "aarch64": (444, 445, 446)}
_PR_SET_NO_NEW_PRIVS = 38
_RULE_PATH_BENEATH = 1
_CREATE_RULESET_VERSION = 1

_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_WRITE_ALL_V1 = sum(1 << b for b in range(4, 13))  # remove dir/file, make char/dir/reg/sock/fifo/block/sym
_REFER, _TRUNCATE, _IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1 << 0, 1 << 1


class LandlockError(OSError):
    pass


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def abi_version() -> int:
    """The kernel's Landlock ABI (0: not available: another OS, an old kernel, or disabled)."""
    numbers = _SYSCALLS.get(platform.machine())
    if platform.system() != "Linux" or numbers is None:
        return 0
    version = _libc().syscall(numbers[0], None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    return max(int(version), 0)


def _fs_masks(abi: int) -> tuple[int, int, int]:
    """(handled, read-only rights, read-write rights) for this ABI."""
    read = _EXECUTE | _READ_FILE | _READ_DIR
    write = _WRITE_FILE | _WRITE_ALL_V1
    if abi >= 2:
        write |= _REFER
    if abi >= 3:
        write |= _TRUNCATE
    handled = read | write
    if abi >= 5:
        handled |= _IOCTL_DEV
        write |= _IOCTL_DEV
    return handled, read, read | write


def restrict(read_only: list[str], read_write: list[str], block_tcp: bool = True) -> dict:
    """Limit this process (and its future children) to reading `read_only` and reading/writing
    `read_write` (paths that do not exist are skipped); with ABI >= 4 and `block_tcp`, no TCP at
    all; with ABI >= 6, no signals to and no abstract sockets of processes outside. Returns what was
    enforced; LandlockError if the kernel has no Landlock."""
    abi = abi_version()
    if abi < 1:
        raise LandlockError("Landlock is not available on this kernel")
    create, add_rule, restrict_self = _SYSCALLS[platform.machine()]
    libc = _libc()
    handled, read, read_write_mask = _fs_masks(abi)
    attr = _RulesetAttr(handled, (_NET_BIND_TCP | _NET_CONNECT_TCP) if (abi >= 4 and block_tcp) else 0,
                        (_SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL) if abi >= 6 else 0)
    size = ctypes.sizeof(_RulesetAttr) if abi >= 6 else (16 if abi >= 4 else 8)
    ruleset = libc.syscall(create, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        raise LandlockError(ctypes.get_errno(), f"landlock_create_ruleset: {os.strerror(ctypes.get_errno())}")
    try:
        for paths, mask in ((read_only, read), (read_write, read_write_mask)):
            for path in paths:
                if not os.path.exists(path):
                    continue
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
                try:
                    # a file (not a folder) may only carry file rights
                    rights = mask if os.path.isdir(path) else mask & (_EXECUTE | _READ_FILE | _WRITE_FILE
                                                                     | _TRUNCATE | _IOCTL_DEV)
                    rule = _PathBeneathAttr(rights & handled, fd)
                    if libc.syscall(add_rule, ctypes.c_int(ruleset), ctypes.c_int(_RULE_PATH_BENEATH),
                                    ctypes.byref(rule), ctypes.c_uint32(0)) < 0:
                        err = ctypes.get_errno()
                        raise LandlockError(err, f"landlock_add_rule {path}: {os.strerror(err)}")
                finally:
                    os.close(fd)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise LandlockError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        if libc.syscall(restrict_self, ctypes.c_int(ruleset), ctypes.c_uint32(0)) < 0:
            err = ctypes.get_errno()
            raise LandlockError(err, f"landlock_restrict_self: {os.strerror(err)}")
    finally:
        os.close(ruleset)
    return {"landlock_abi": abi, "tcp_blocked": bool(attr.handled_access_net), "signals_scoped": abi >= 6}
