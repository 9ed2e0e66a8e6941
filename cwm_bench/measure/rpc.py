"""TVM's RPC tracker as the way to many measuring devices: addresses, reachability, sessions.

Nothing here replaces TVM's engine: servers are `python -m tvm.exec.rpc_server --tracker HOST:PORT
--key KEY`, the tracker is `python -m tvm.exec.rpc_tracker`, and sessions are TVM `RPCSession`s. We
only ask the tracker ourselves (with TVM's wire helpers) so that a session knows which server it
reached: every row names the device that measured it.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

SERVER_HELP = "python -m tvm.exec.rpc_server --tracker {tracker} --key {key}"
TRACKER_HELP = "python -m tvm.exec.rpc_tracker --host 0.0.0.0 --port 9190"


class TrackerError(RuntimeError):
    """The tracker cannot be reached, or has no server for the key."""


@dataclass(frozen=True)
class RpcConfig:
    """Where to measure: a tracker and the device key its servers registered under."""

    tracker: str  # "HOST:PORT"
    key: str
    parallel: int | None = None  # sessions in flight at once (default: the servers registered)
    max_attempts: int = 2  # a candidate whose server dies or hangs is measured at most this often
    # TVM's server ends a session after this long: how a server stuck in a hung kernel frees itself.
    # Lanes renew their sessions at half this age.
    session_timeout_s: float = 600.0
    # Waiting for a free server before a lane gives up: long enough for a hung server to free itself.
    # A lane waits in slices of `connect_slice_s`, handing its share back between them, so that work
    # never waits on a lane that waits for a server (a server whose session process crashed stays
    # registered with TVM's tracker but never serves again).
    connect_timeout_s: float = 660.0
    connect_slice_s: float = 15.0

    @property
    def address(self) -> tuple[str, int]:
        return parse_tracker(self.tracker)


def parse_tracker(text: str) -> tuple[str, int]:
    """"HOST:PORT" -> (host, port); ValueError with the expected form otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:9190)")
    return host, int(port)


def _tracker_socket(address: tuple[str, int], timeout_s: float) -> socket.socket:
    from tvm.rpc import base

    try:
        sock = socket.create_connection(address, timeout=timeout_s)
        sock.sendall(struct.pack("<i", base.RPC_TRACKER_MAGIC))
        magic = struct.unpack("<i", base.recvall(sock, 4))[0]
    except OSError as exc:
        raise TrackerError(f"cannot reach the RPC tracker at {address[0]}:{address[1]} ({exc}); "
                           f"start one with `{TRACKER_HELP}`") from exc
    if magic != base.RPC_TRACKER_MAGIC:
        sock.close()
        raise TrackerError(f"{address[0]}:{address[1]} answered, but is not a TVM RPC tracker")
    return sock


def tracker_summary(address: tuple[str, int], timeout_s: float = 10.0) -> dict:
    """The tracker's own summary: {"server_info": [...], "queue_info": {key: {"free", "pending"}}}."""
    from tvm.rpc import base

    sock = _tracker_socket(address, timeout_s)
    try:
        base.sendjson(sock, [base.TrackerCode.SUMMARY])
        reply = base.recvjson(sock)
    except OSError as exc:
        raise TrackerError(f"the RPC tracker at {address[0]}:{address[1]} did not answer ({exc})") from exc
    finally:
        sock.close()
    return reply[1]


def servers_for(summary: dict, key: str) -> list[str]:
    """Addresses ("host:port") of the servers registered under `key`."""
    out = []
    for info in summary.get("server_info", []):
        # The tracker lists a server as "server:KEY" (or "server:KEY:random-suffix").
        parts = str(info.get("key", "")).split(":")
        if len(parts) >= 2 and parts[1] == key:
            out.append(":".join(map(str, info["addr"])))
    return out


def check_tracker(config: RpcConfig, timeout_s: float = 10.0) -> list[str]:
    """Servers registered under the key; TrackerError (one clear sentence) when there are none."""
    summary = tracker_summary(config.address, timeout_s)
    servers = servers_for(summary, config.key)
    if not servers:
        keys = sorted({str(i.get("key", "")).split(":")[1] for i in summary.get("server_info", [])
                       if ":" in str(i.get("key", ""))})
        raise TrackerError(f"no server is registered under key {config.key!r} at {config.tracker} "
                           f"(keys there: {', '.join(keys) or 'none'}); start one on each device with "
                           f"`{SERVER_HELP.format(tracker=config.tracker, key=config.key)}`")
    return servers


def request_session(address: tuple[str, int], key: str, session_timeout_s: float, wait_s: float | None = None):
    """Wait for a free server under `key` (at most `wait_s`, then TrackerError); returns (RPCSession,
    "host:port" of that server).

    The tracker queues the request while every server is busy; closing the socket withdraws it (a
    server handed to a withdrawn request renews its match key within seconds).
    """
    from tvm import rpc
    from tvm.rpc import base

    sock = _tracker_socket(address, 10.0)
    sock.settimeout(wait_s)  # the tracker answers once a server is free
    try:
        base.sendjson(sock, [base.TrackerCode.REQUEST, key, "", 1])
        reply = base.recvjson(sock)
    except TimeoutError as exc:
        raise TrackerError(f"no server under key {key!r} was free within {wait_s:g} s") from exc
    finally:
        sock.close()
    if reply[0] != base.TrackerCode.SUCCESS:
        raise TrackerError(f"the tracker refused a session for key {key!r}: {reply}")
    host, port, match_key = reply[1]
    return rpc.connect(host, port, match_key, session_timeout=session_timeout_s), f"{host}:{port}"
