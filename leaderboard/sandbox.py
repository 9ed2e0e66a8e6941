"""Submitted code scores in a separate process that cannot hurt the harness or see what it should not.

`SandboxedModel` is a `CostModel` whose `score` ships the sealed input table to a child process
(`sandbox_child`) and reads back one float64 per record. The child runs:

- with CPU-time, address-space, file-size and process-count limits, and a wall-time limit per request
  and for start-up (a hang is killed, with its process group);
- as the unprivileged user `nobody` where the harness runs as root and the Python installation is
  readable by it (else as the harness's user: said in the provenance);
- in a new network namespace where the harness may create one (root), and with TCP blocked by
  Landlock (ABI >= 4);
- under a Landlock ruleset: reading only the Python installation (with the source folders of an
  editable cwm-bench install), the system libraries, /proc, its own copy of the submission and the
  inputs it is handed; writing only a scratch folder.

Code is refused where neither Landlock nor the user switch is available (nothing would keep it from
the harness's files). Only numbers come back (JSON header + raw float64, exactly 8 bytes a record),
checked for count and finiteness. The child reports what held right after restricting itself and
before importing any submitted code (`SandboxedModel.isolation`, stored with every result).
"""

from __future__ import annotations

import ctypes
import json
import os
import pwd
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from cwm_bench.leaderboard import landlock
from cwm_bench.leaderboard.sandbox_child import HEADER
from cwm_bench.model.base import CostModel
from cwm_bench.model.records import Records, check_inputs

_CLONE_NEWNET = 0x40000000
SANDBOX_USER = "nobody"


class SubmissionError(RuntimeError):
    """The submitted code failed, hung, ran out of a limit or answered wrongly (one line)."""


@dataclass(frozen=True)
class Limits:
    wall_s: float = 900.0  # per request, and for start-up
    cpu_s: int = 3600  # the child's whole life
    memory_gb: float = 8.0  # address space
    max_processes: int = 256  # threads count too; enforced when the child runs as the sandbox user

    def to_dict(self) -> dict:
        return {"wall_s": self.wall_s, "cpu_s": self.cpu_s, "memory_gb": self.memory_gb,
                "max_processes": self.max_processes}


def traversable_by_others(path: str) -> bool:
    """Whether a user with no rights but "others" can pass through every folder down to `path`
    (itself included, when a folder): then it can open any file inside whose name it guesses."""
    path = os.path.realpath(path)
    parts = path.split(os.sep)
    for i in range(2, len(parts) + 1):
        here = os.sep.join(parts[:i])
        st = os.stat(here)
        if os.path.isdir(here) and not st.st_mode & 0o001:
            return False
    return True


def _readable_by_others(path: str) -> bool:
    """Whether a user with no rights but "others" can reach and read `path`."""
    return traversable_by_others(os.path.dirname(os.path.realpath(path))) and bool(os.stat(path).st_mode & 0o004)


def sandbox_user() -> pwd.struct_passwd | None:
    """`nobody`, when this process may switch to it and it can run this Python; else None."""
    if os.geteuid() != 0:
        return None
    try:
        user = pwd.getpwnam(SANDBOX_USER)
    except KeyError:
        return None
    needed = {sys.prefix, sys.base_prefix, os.path.realpath(sys.executable)}
    import cwm_bench

    needed.add(os.path.dirname(os.path.abspath(cwm_bench.__file__)))
    return user if all(_readable_by_others(p) for p in needed) else None


def isolation_available() -> dict:
    """What this machine can enforce: {"landlock_abi", "user", "network_namespace"} (the namespace is
    attempted as root; whether it held is reported by the child)."""
    user = sandbox_user()
    return {"landlock_abi": landlock.abi_version(), "user": user.pw_name if user else None,
            "network_namespace": os.geteuid() == 0}


def filesystem_isolation_problem() -> str | None:
    """Why submitted code cannot be kept from the harness's files here (None: it can)."""
    available = isolation_available()
    if available["landlock_abi"] or available["user"]:
        return None
    return ("this machine can keep submitted code neither to its own files (no Landlock in this kernel) nor "
            f"away from the harness's (not root, so no switch to {SANDBOX_USER}): code submissions are refused "
            "here; score them on Linux >= 5.13 with Landlock, or as root")


def _copy_readable(src: str, dst: str) -> None:
    """Copy a submission so the sandbox user can read (not write) it, whatever the original modes."""
    # links stay links (load_submission refuses them anyway): following one here would copy its target
    shutil.copytree(src, dst, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", ".git"))
    for root, _, files in os.walk(dst):
        os.chmod(root, 0o755)
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, 0o644)


def _preexec(limits: Limits, user: pwd.struct_passwd | None, netns: bool):
    libc = ctypes.CDLL(None, use_errno=True)  # loaded before fork: no dlopen in the child of a threaded parent

    def setup() -> None:
        os.setsid()
        gib = int(limits.memory_gb * (1 << 30))
        resource.setrlimit(resource.RLIMIT_AS, (gib, gib))
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 5))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 30, 1 << 30))
        if netns:
            libc.unshare(_CLONE_NEWNET)  # a fresh namespace: loopback only; the child reports whether it held
        if user is not None:
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
            # per user: only meaningful for a user of its own (the harness's user runs other processes)
            resource.setrlimit(resource.RLIMIT_NPROC, (limits.max_processes, limits.max_processes))
    return setup


class SandboxedModel(CostModel):
    """A submitted model, scored in a sandboxed child process (see the module docstring)."""

    trainable = False  # what it learned is in its checkpoint; the harness never trains submitted code

    def __init__(self, submission_dir: str, include: str | None, checkpoint: str, module: str | None = None,
                 limits: Limits | None = None, label: str = "submission"):
        super().__init__()
        self.limits = limits or Limits()
        self.label = label
        # on a private test set an error message must not carry what the code saw: its type only
        self.quiet_errors = False
        self._process = None
        self._tx = self._rx = None
        problem = filesystem_isolation_problem()
        if problem:
            raise SubmissionError(problem)
        self._scratch = tempfile.mkdtemp(prefix="cwm-bench-sandbox-")
        try:
            self._start(submission_dir, include, checkpoint, module)
        except BaseException:
            self.close()
            raise

    def _start(self, submission_dir: str, include: str | None, checkpoint: str, module: str | None) -> None:
        os.chmod(self._scratch, 0o755)
        copy = os.path.join(self._scratch, "submission")
        _copy_readable(submission_dir, copy)
        work = os.path.join(self._scratch, "work")
        os.mkdir(work)
        user = sandbox_user()
        if user is not None:
            os.chown(work, user.pw_uid, user.pw_gid)
        abi = landlock.abi_version()
        spec = {"include": os.path.join(copy, include) if include and (include.endswith(".whl") or os.path.exists(
                    os.path.join(copy, include))) else include,
                "module": module, "checkpoint": os.path.join(copy, checkpoint), "scratch": work,
                "read_only": [copy], "landlock": abi > 0}
        self._stderr_path = os.path.join(self._scratch, "stderr.txt")
        env = {"PATH": "/usr/bin:/bin", "HOME": work, "TMPDIR": work, "LANG": "C.UTF-8",
               "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(os.cpu_count() or 1)),
               "PYTHONDONTWRITEBYTECODE": "1", "HF_HUB_OFFLINE": "1", "TVM_NUM_THREADS": str(os.cpu_count() or 1)}
        netns = os.geteuid() == 0
        down_r, down_w = os.pipe()
        up_r, up_w = os.pipe()
        self._tx, self._rx = down_w, up_r
        try:
            with open(self._stderr_path, "wb") as err:
                self._process = subprocess.Popen(
                    [sys.executable, "-m", "cwm_bench.leaderboard.sandbox_child", str(down_r), str(up_w),
                     json.dumps(spec)],
                    stdin=subprocess.DEVNULL, stdout=err, stderr=err, pass_fds=(down_r, up_w), env=env, cwd=work,
                    preexec_fn=_preexec(self.limits, user, netns), close_fds=True)
        finally:
            os.close(down_r)
            os.close(up_w)
        os.set_blocking(self._tx, False)
        self._requests = 0
        # 1) sent by our code right after the restriction, before anything submitted is imported
        sandboxed, _ = self._receive("starting", payload_bytes=0)
        if "error" in sandboxed or sandboxed.get("sandboxed") is not True:
            raise SubmissionError(f"{self.label}: the sandbox did not start: "
                                  f"{_clean(sandboxed.get('error', 'no report'))}")
        enforced = sandboxed.get("enforced") if isinstance(sandboxed.get("enforced"), dict) else {}
        interfaces = sandboxed.get("interfaces")
        # 2) after the submission's code and checkpoint loaded: what it says of itself, checked
        ready, _ = self._receive("loading", payload_bytes=0)
        if "error" in ready:
            raise SubmissionError(f"{self.label} failed to load: {_clean(ready['error'])}")
        try:
            self.name = _clean(ready["model"])
            self.inputs = check_inputs([str(x) for x in ready["inputs"]])
            self.config = ready.get("config") if isinstance(ready.get("config"), dict) else {}
        except (KeyError, TypeError, ValueError) as exc:
            raise SubmissionError(f"{self.label} sent a malformed start-up answer ({_clean(str(exc))})") from None
        why = "not root" if os.geteuid() != 0 else f"{SANDBOX_USER} cannot read the Python installation"
        isolated_net = isinstance(interfaces, list) and set(interfaces) <= {"lo"}
        self.isolation = {
            "process": "separate, own session",
            "user": user.pw_name if user else f"{pwd.getpwuid(os.geteuid()).pw_name} (no switch: {why})",
            "network": ("new network namespace (loopback only)" if isolated_net else
                        f"shared (interfaces: {', '.join(map(str, interfaces or [])) or 'unknown'})")
            + (", TCP blocked (Landlock)" if enforced.get("tcp_blocked") else ""),
            "filesystem": (f"Landlock ABI {enforced.get('landlock_abi')}: reads the Python installation, /proc, "
                           "its submission copy and its inputs; writes a scratch folder")
            if enforced.get("landlock_abi") else f"file permissions only (no Landlock), as {SANDBOX_USER}",
            "limits": self.limits.to_dict()}

    # -- the contract ----------------------------------------------------------------------------
    def fit(self, train: Records, progress: bool = True) -> None:
        raise NotImplementedError("the leaderboard scores submitted checkpoints; it does not train them")

    def score(self, records: Records) -> np.ndarray:
        if self._process is None or self._tx is None:
            raise SubmissionError(f"{self.label}: the sandbox is closed")
        self._requests += 1
        request = self._requests
        buffers = [_ipc(records.table), _ipc(records.workloads)]
        data = json.dumps({"op": "score", "request": request, "records_bytes": len(buffers[0]),
                           "bytes": len(buffers[0]) + len(buffers[1])}).encode()
        deadline = time.monotonic() + self.limits.wall_s
        for chunk in (HEADER.pack(len(data)) + data, *buffers):
            self._write(chunk, deadline)
        answer, payload = self._receive("scoring", payload_bytes=8 * len(records))
        if "error" in answer:
            raise self._fail(f"{self.label} failed while scoring: {self._error_text(answer['error'])}")
        if answer.get("request") != request:
            raise self._fail(f"{self.label} answered request {_clean(answer.get('request'))}, not {request}")
        scores = np.frombuffer(payload, dtype="<f8").astype(np.float64)
        bad = ~np.isfinite(scores)
        if bad.any():
            raise self._fail(f"{self.label} returned {int(bad.sum())} non-finite score(s) (NaN or inf) of "
                             f"{scores.size}")
        return scores

    # -- the pipe --------------------------------------------------------------------------------
    def _error_text(self, text) -> str:
        cleaned = _clean(text)
        return cleaned.split(":", 1)[0] + " (message withheld: private test set)" if self.quiet_errors else cleaned

    def _fail(self, message: str) -> SubmissionError:
        self.close()
        return SubmissionError(message)

    def _write(self, data: bytes, deadline: float) -> None:
        """Write all of `data` to the child, never past `deadline` (a child that stops reading is killed)."""
        view = memoryview(data)
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._fail(f"{self.label} exceeded the wall-time limit ({self.limits.wall_s:g} s) while "
                                 "receiving its inputs")
            _, writable, _ = select.select([], [self._tx], [], min(remaining, 1.0))
            if not writable:
                continue
            try:
                view = view[os.write(self._tx, view):]
            except BlockingIOError:
                continue
            except OSError:
                raise self._fail(f"{self.label} exited before scoring{self._exit_reason()}") from None

    def _read(self, n: int, deadline: float, stage: str) -> bytes:
        chunks, left = [], n
        while left:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._fail(f"{self.label} exceeded the wall-time limit ({self.limits.wall_s:g} s) "
                                 f"while {stage}")
            readable, _, _ = select.select([self._rx], [], [], min(remaining, 1.0))
            if not readable:
                continue
            chunk = os.read(self._rx, min(left, 1 << 20))
            if not chunk:
                raise self._fail(f"{self.label} died while {stage}{self._exit_reason()}")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _receive(self, stage: str, payload_bytes: int) -> tuple[dict, bytes]:
        """One answer: a JSON header, then `payload_bytes` bytes if it is not an error."""
        deadline = time.monotonic() + self.limits.wall_s
        (size,) = HEADER.unpack(self._read(HEADER.size, deadline, stage))
        if size > 1 << 16:
            raise self._fail(f"{self.label} sent a malformed answer while {stage}")
        try:
            header = json.loads(self._read(size, deadline, stage))
            if not isinstance(header, dict):
                raise ValueError
            count = int(header.get("bytes", 0))
        except (ValueError, TypeError, RecursionError):
            raise self._fail(f"{self.label} sent a malformed answer while {stage}") from None
        if "error" in header:
            return header, b""
        if count != payload_bytes:
            raise self._fail(f"{self.label} returned {count // 8 if count % 8 == 0 else count} scores for "
                             f"{payload_bytes // 8} records" if stage == "scoring" else
                             f"{self.label} sent a malformed answer while {stage}")
        return header, self._read(count, deadline, stage)

    def _exit_reason(self) -> str:
        try:
            code = self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return ""
        tail = "" if self.quiet_errors else self._stderr_tail()
        if code < 0:
            name = signal.Signals(-code).name
            why = {"SIGXCPU": "the CPU-time limit", "SIGKILL": "a kill (the memory limit or the OOM killer)",
                   "SIGSEGV": "a segfault"}.get(name, name)
            return f" ({name}: {why}){': ' + tail if tail else ''}"
        return f" (exit {code}){': ' + tail if tail else ''}"

    def _stderr_tail(self) -> str:
        try:
            with open(self._stderr_path, errors="replace") as handle:
                lines = [line.strip() for line in handle.read()[-4000:].splitlines() if line.strip()]
        except OSError:
            return ""
        return _clean(lines[-1]) if lines else ""

    def close(self) -> None:
        process = getattr(self, "_process", None)
        if process is not None:
            try:  # the whole group, even when its leader already exited (children it forked)
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            if process.poll() is None:
                process.kill()
            process.wait()
        for fd in (getattr(self, "_tx", None), getattr(self, "_rx", None)):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._tx = self._rx = None
        scratch = getattr(self, "_scratch", None)
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
            self._scratch = None

    def __del__(self) -> None:
        self.close()

    def __enter__(self) -> SandboxedModel:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _clean(text, limit: int = 300) -> str:
    """Text from the child, made safe for a one-line message: printable, short."""
    text = "".join(ch if ch.isprintable() else " " for ch in str(text))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + " ..."


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()
