"""A TVM RPC tracker and servers on 127.0.0.1, started exactly as a user starts them on real hosts
(`python -m tvm.exec.rpc_tracker`, `python -m tvm.exec.rpc_server`). For tests, the RPC benchmark,
and trying `collect --rpc-tracker` on one machine."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from cwm_bench.measure.rpc import servers_for, tracker_summary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


class LoopbackCluster:
    """`with LoopbackCluster(servers=2, key="k") as c:` -> c.tracker == "127.0.0.1:PORT"."""

    def __init__(self, servers: int = 2, key: str = "loopback", threads_per_server: int | None = None,
                 start_timeout_s: float = 60.0, log_dir: str | None = None,
                 server_argv: tuple[str, ...] = ("-m", "tvm.exec.rpc_server"),
                 server_env: dict[str, str] | None = None):
        self.key = key
        self.server_argv = server_argv  # how a server starts (tests run a fake GPU server script instead)
        self.server_env = server_env or {}  # added to the servers' environment (e.g. a runtime-only TVM)
        self.num_servers = servers
        self.threads = threads_per_server
        self.start_timeout_s = start_timeout_s
        self.log_dir = log_dir
        self.port = free_port()
        self.tracker_proc: subprocess.Popen | None = None
        self.servers: list[subprocess.Popen] = []

    @property
    def tracker(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _spawn(self, args: list[str], name: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
        env = {**os.environ, **(extra_env or {})}
        if self.threads:
            env["TVM_NUM_THREADS"] = str(self.threads)
        out = open(os.path.join(self.log_dir, f"{name}.log"), "w") if self.log_dir else subprocess.DEVNULL  # noqa: SIM115
        # Own process group: killing a "machine" takes its per-session children with it.
        return subprocess.Popen([sys.executable, *args], env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)

    def start(self) -> LoopbackCluster:
        self.tracker_proc = self._spawn(["-m", "tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port", str(self.port),
                                         "--port-end", str(self.port + 1), "--silent"], "tracker")
        for i in range(self.num_servers):
            self.add_server(f"server{i}")
        self.wait_for(self.num_servers)
        return self

    def add_server(self, name: str = "server") -> subprocess.Popen:
        port = free_port()
        proc = self._spawn([*self.server_argv, "--host", "127.0.0.1", "--port", str(port), "--port-end",
                            str(port + 1), "--tracker", self.tracker, "--key", self.key, "--silent"], name,
                           self.server_env)
        self.servers.append(proc)
        return proc

    def wait_for(self, count: int) -> list[str]:
        """Block until `count` servers are registered under the key; returns their addresses."""
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            try:
                found = servers_for(tracker_summary(("127.0.0.1", self.port), 2.0), self.key)
                if len(found) >= count:
                    return found
            except RuntimeError:
                pass  # the tracker is still starting
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"loopback RPC: {count} server(s) did not register in {self.start_timeout_s:g} s")
            time.sleep(0.2)

    def kill_server(self, index: int) -> None:
        """SIGKILL a server and its session processes, like a machine losing power."""
        _kill_group(self.servers[index])

    def close(self) -> None:
        for proc in [*self.servers, self.tracker_proc]:
            if proc is not None and proc.poll() is None:
                _kill_group(proc)

    def __enter__(self) -> LoopbackCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
