"""What a worker may do, applied by the worker to itself before it imports any
package code (:func:`apply` is the first call of the worker's ``main``).

The supervisor builds a :class:`Policy` per worker (see
:mod:`headrace.supervisor.confinement`) and passes it in the worker's config.
The OS identity (a uid per tenant) is set by the supervisor when it spawns the
worker (``subprocess``'s ``user=``/``group=``); everything here needs no
privilege:

- resource limits (``setrlimit``): memory (``RLIMIT_DATA``: heap, anonymous
  maps and thread stacks, not mapped files), CPU seconds, processes and threads
  (``RLIMIT_NPROC``, counted per uid, so per tenant; only with a uid of its
  own, since root ignores it and a shared uid would count the server's own
  processes), open files and the size of one written file;
- ``PR_SET_NO_NEW_PRIVS``, so nothing the worker executes gains privileges;
- Landlock (Linux 5.13+): the filesystem is reduced to the Python
  installation and system libraries (read), the graph's package (read) and
  the tenant's own folders (read and write); from ABI 6 on the worker can also
  neither signal nor reach the abstract Unix sockets of processes outside its
  domain (other tenants' workers, the server).

Landlock and ``NO_NEW_PRIVS`` apply to the calling thread and the threads and
processes it starts later, so :func:`apply` refuses to run once a second
thread exists.
"""

from __future__ import annotations

import ctypes
import os
import resource
import socket
import stat
import struct
from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["Limits", "Policy", "SandboxError", "apply", "from_parent", "landlock_abi"]


class SandboxError(RuntimeError):
    """The worker could not confine itself (it must not run unconfined)."""


@dataclass(frozen=True)
class Limits:
    """Per-worker resource limits; 0 means no limit."""

    memory_mb: int = 0
    cpu_seconds: int = 0
    #: Processes and threads of the tenant's uid (all its workers together).
    processes: int = 0
    open_files: int = 0
    file_mb: int = 0

    def lowered_by(self, wanted: Limits) -> Limits:
        """These limits, with each one a package asks for lower taken instead."""
        values = {}
        for f in fields(self):
            ours, theirs = getattr(self, f.name), getattr(wanted, f.name)
            values[f.name] = theirs if theirs and (not ours or theirs < ours) else ours
        return Limits(**values)

    def exceeded_by(self, wanted: Limits) -> list[str]:
        """Each limit ``wanted`` asks above this one, as 'name: wanted > ours'."""
        return [
            f"limits.{f.name}: {getattr(wanted, f.name)} is above the server's limit {getattr(self, f.name)}"
            for f in fields(self)
            if getattr(self, f.name) and getattr(wanted, f.name) > getattr(self, f.name)
        ]


@dataclass(frozen=True)
class Policy:
    limits: Limits = field(default_factory=Limits)
    #: Paths the worker may read (and execute), and read and write.
    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    landlock: bool = False
    #: Whether the worker runs as a uid of its tenant (``processes`` applies only then).
    own_uid: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Policy:
        return cls(
            limits=Limits(**data.get("limits", {})),
            read=tuple(data.get("read", ())),
            write=tuple(data.get("write", ())),
            landlock=bool(data.get("landlock", False)),
            own_uid=bool(data.get("own_uid", False)),
        )


def apply(policy: dict[str, Any] | None) -> None:
    """Confines the calling process (the worker, before it loads a package).

    Raises:
        SandboxError: naming what could not be applied.
    """
    if policy is None:
        return
    p = Policy.from_json(policy)
    threads = len(os.listdir("/proc/self/task"))
    if threads != 1:
        raise SandboxError(f"the sandbox must be applied before any thread starts ({threads} running)")
    _set_limits(p.limits, p.own_uid)
    if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise SandboxError(f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(ctypes.get_errno())}")
    if p.landlock:
        _landlock(p.read, p.write)


def from_parent(conn: socket.socket) -> bool:
    """Whether a Unix-socket peer is this process's parent (the supervisor).
    Landlock does not guard connecting to a socket by its path, and workers
    that share the server's uid pass the folder permissions: a worker accepts
    connections from its supervisor only."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid: int = struct.unpack("3i", creds)[0]
    return pid == os.getppid()


def _set_limits(limits: Limits, own_uid: bool) -> None:
    mb = 1024 * 1024
    wanted = [
        (resource.RLIMIT_DATA, limits.memory_mb * mb),
        (resource.RLIMIT_CPU, limits.cpu_seconds),
        (resource.RLIMIT_NOFILE, limits.open_files),
        (resource.RLIMIT_FSIZE, limits.file_mb * mb),
    ]
    if own_uid:
        wanted.append((resource.RLIMIT_NPROC, limits.processes))
    for which, value in wanted:
        if value <= 0:
            continue
        _, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        # CPU: SIGXCPU at the soft limit names the cause; SIGKILL a second later if it is caught.
        hard_value = value + 1 if which == resource.RLIMIT_CPU else value
        if hard != resource.RLIM_INFINITY:
            hard_value = min(hard_value, hard)
        try:
            resource.setrlimit(which, (value, hard_value))
        except (ValueError, OSError) as e:
            raise SandboxError(f"setrlimit({which}, {value}): {e}") from e


# --- Landlock (include/uapi/linux/landlock.h) ---------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_NO_NEW_PRIVS = 38
_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446  # x86_64 and aarch64 alike
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1

_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_REMOVE_DIR, _REMOVE_FILE, _MAKE_CHAR, _MAKE_DIR = 1 << 4, 1 << 5, 1 << 6, 1 << 7
_MAKE_REG, _MAKE_SOCK, _MAKE_FIFO, _MAKE_BLOCK, _MAKE_SYM = 1 << 8, 1 << 9, 1 << 10, 1 << 11, 1 << 12
_REFER, _TRUNCATE, _IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
#: The filesystem rights each ABI version knows.
_FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1}
_FS_LATEST = (1 << 16) - 1
_FILE_RIGHTS = _EXECUTE | _WRITE_FILE | _READ_FILE | _TRUNCATE | _IOCTL_DEV
_READ = _EXECUTE | _READ_FILE | _READ_DIR
_WRITE = (
    _READ | _WRITE_FILE | _REMOVE_DIR | _REMOVE_FILE | _MAKE_DIR | _MAKE_REG | _MAKE_SOCK | _MAKE_FIFO
    | _MAKE_SYM | _REFER | _TRUNCATE
)
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1 << 0, 1 << 1
#: Devices a Python process expects to open (read and write: /dev/null).
_DEVICES = ("/dev/null", "/dev/zero", "/dev/random", "/dev/urandom")


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # packed in the kernel's header
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _syscall(number: int, *args: Any) -> int:
    result: int = _libc.syscall(number, *args)
    return result


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 when it has none (or it is disabled)."""
    abi = _syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    return max(abi, 0)


def _landlock(read: tuple[str, ...], write: tuple[str, ...]) -> None:
    abi = landlock_abi()
    if abi < 1:
        raise SandboxError("Landlock was asked for, but this kernel does not offer it")
    handled = _FS_BY_ABI.get(abi, _FS_LATEST)
    attr = _RulesetAttr(handled, 0, _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL if abi >= 6 else 0)
    size = ctypes.sizeof(attr) if abi >= 6 else 16 if abi >= 4 else 8
    ruleset = _syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        raise SandboxError(f"landlock_create_ruleset: {os.strerror(ctypes.get_errno())}")
    try:
        rules = [(p, _READ) for p in read] + [(p, _WRITE) for p in write] + [(d, _READ | _WRITE_FILE) for d in _DEVICES]
        for path, access in rules:
            _allow(ruleset, path, access & handled)
        if _syscall(_SYS_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
            raise SandboxError(f"landlock_restrict_self: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(ruleset)


def _allow(ruleset: int, path: str, access: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        return  # nothing there to allow (an optional system folder)
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            access &= _FILE_RIGHTS
        rule = _PathBeneathAttr(access, fd)
        if _syscall(_SYS_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(_RULE_PATH_BENEATH), ctypes.byref(rule), ctypes.c_uint32(0)) != 0:
            raise SandboxError(f"landlock_add_rule({path}): {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)
