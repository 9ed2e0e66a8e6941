"""The sandboxed side of leaderboard scoring: `python -m cwm_bench.leaderboard.sandbox_child`.

Started by `cwm_bench.leaderboard.sandbox.SandboxedModel` with the limits already set (rlimits, user,
network namespace). It restricts itself further (Landlock: read only the Python installation, /proc,
its submission copy and its inputs; write only its scratch folder; no TCP), reports what held, then
imports the submitted code, loads the checkpoint, and answers score requests over two pipes. Only
numbers go back: a JSON header and raw float64 scores (never pickle, which the harness would have to
unpickle).

Argv: READ_FD WRITE_FD SPEC_JSON, where SPEC_JSON holds include, module, checkpoint, scratch,
read_only (extra folders) and landlock (bool).
"""

from __future__ import annotations

import json
import os
import struct
import sys
import traceback

HEADER = struct.Struct("!I")


def send(fd: int, header: dict, payload: bytes = b"") -> None:
    data = json.dumps(header).encode()
    os.write(fd, HEADER.pack(len(data)) + data)
    view = memoryview(payload)
    while view:
        view = view[os.write(fd, view):]


def read_exact(fd: int, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError("pipe closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def receive(fd: int) -> tuple[dict, bytes]:
    (size,) = HEADER.unpack(read_exact(fd, HEADER.size))
    header = json.loads(read_exact(fd, size))
    payload = read_exact(fd, int(header.get("bytes", 0)))
    return header, payload


def sandbox_read_folders() -> list[str]:
    """What the sandbox may read besides its own copy and inputs, i.e. what imports need: the
    interpreter's prefixes, sys.path, the installed cwm_bench (an editable install maps its packages
    to source folders), and the system's shared libraries."""
    import importlib.util

    folders = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable))}
    folders.update(p for p in sys.path if p and os.path.isabs(p))
    for name in ("cwm_bench", "cwm_bench.baselines", "cwm_bench.reference_model", "cwm_bench.leaderboard",
                 "cwm_bench.data_cards"):
        spec = importlib.util.find_spec(name)
        for location in (spec.submodule_search_locations or []) if spec else []:
            folders.add(location)
    folders.update(["/usr", "/lib", "/lib64", "/etc/ld.so.cache", "/etc/localtime", "/proc", "/sys/devices/system/cpu",
                    "/dev/urandom", "/dev/random"])
    return sorted(folders)


def _load(spec: dict):
    from cwm_bench.model import load_checkpoint
    from cwm_bench.model.registry import include

    include_path = spec["include"]
    if include_path:
        if include_path.endswith(".whl"):
            sys.path.insert(0, include_path)  # a pure-Python wheel is a zip archive: zipimport reads it
            include(spec["module"])
        else:
            include(include_path)
    return load_checkpoint(spec["checkpoint"])


def main(argv: list[str]) -> int:
    read_fd, write_fd, spec = int(argv[0]), int(argv[1]), json.loads(argv[2])
    os.chdir(spec["scratch"])
    sys.path[:] = [p for p in sys.path if p not in ("", ".", os.getcwd())]
    # what scoring needs from our side, imported before the restriction and before any submitted code
    import socket

    import numpy as np
    import pyarrow as pa

    from cwm_bench.model.records import Records

    try:  # a fresh network namespace has only the loopback interface
        interfaces = sorted(name for _, name in socket.if_nameindex())
    except OSError:
        interfaces = None
    enforced: dict = {"landlock_abi": 0}
    if spec.get("landlock"):
        from cwm_bench.leaderboard.landlock import LandlockError, restrict

        try:
            enforced = restrict(sandbox_read_folders() + spec.get("read_only", []), [spec["scratch"], "/dev/null"])
        except LandlockError as exc:
            send(write_fd, {"error": f"sandbox: {exc}"})
            return 3
    # what held, reported before any submitted code runs (which could forge later messages)
    send(write_fd, {"sandboxed": True, "enforced": enforced, "interfaces": interfaces})
    try:
        model = _load(spec)
    except BaseException as exc:  # noqa: BLE001  (whatever the submission raises is reported, not raised)
        send(write_fd, {"error": _describe(exc)})
        return 1
    send(write_fd, {"ready": True, "model": model.name, "inputs": sorted(model.inputs),
                    "config": _jsonable(model.config), "enforced": enforced})
    while True:
        try:
            header, payload = receive(read_fd)
        except EOFError:
            return 0
        if header.get("op") != "score":
            return 0
        try:
            buffers = [payload[:header["records_bytes"]], payload[header["records_bytes"]:]]
            tables = [pa.ipc.open_stream(pa.BufferReader(b)).read_all() for b in buffers]
            scores = np.asarray(model.score(Records(tables[0], tables[1])), dtype="<f8").ravel()
            send(write_fd, {"ok": True, "request": header["request"], "n": int(scores.size),
                            "bytes": int(scores.nbytes)}, scores.tobytes())
        except BaseException as exc:  # noqa: BLE001
            send(write_fd, {"error": _describe(exc), "request": header.get("request")})
            return 1


def _describe(exc: BaseException) -> str:
    if isinstance(exc, MemoryError):
        return "MemoryError: exceeded the memory limit"
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno})" if frames else ""
    text = " ".join(str(exc).split())[:300]
    return f"{type(exc).__name__}: {text}{where}"


def _jsonable(value):
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return repr(value)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
