#!/usr/bin/env python3
"""Keep a TVM RPC server serving after a session crashes (stdlib only: runs where cwm-bench is not).

    python3 tools/rpc_server_supervised.py -- python3 -m tvm.exec.rpc_server --tracker HOST:9190 --key KEY

When a kernel kills a session process (abort, segfault), TVM's server raises in its listening
thread ("Child process N exited unsuccessfully") and never serves again, while its process stays
registered with the tracker. This runs the server command, passes its output through, and restarts
it (killing it and every process it started) when that message appears or the server exits; a
fresh server registers with the tracker again within seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

DEAD_SERVER = "exited unsuccessfully with error code"  # TVM 0.27's rpc/server.py, _serving()
MIN_UPTIME_S = 5.0  # a server that dies faster than this is failing to start: back off


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (read from /proc: the server's popen worker and session processes)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _stop(proc: subprocess.Popen) -> None:
    """Kill the server and everything it started (they share this process group, so whoever kills the
    supervisor's group takes them all down too)."""
    for pid in [proc.pid, *_descendants(proc.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def supervise(command: list[str], max_restarts: int | None = None) -> int:
    restarts = 0
    while True:
        started = time.monotonic()
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            for line in proc.stdout:
                sys.stderr.write(line)
                sys.stderr.flush()
                if DEAD_SERVER in line:
                    break
        except KeyboardInterrupt:
            _stop(proc)
            return 130
        _stop(proc)
        restarts += 1
        if max_restarts is not None and restarts > max_restarts:
            return 1
        print(f"rpc_server_supervised: server stopped serving; restart {restarts}", file=sys.stderr, flush=True)
        if time.monotonic() - started < MIN_UPTIME_S:
            time.sleep(MIN_UPTIME_S)


def main() -> None:
    args = sys.argv[1:]
    if "--" in args:
        args = args[args.index("--") + 1:]
    if not args:
        raise SystemExit(__doc__)
    sys.exit(supervise(args))


if __name__ == "__main__":
    main()
