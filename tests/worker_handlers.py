"""A tiny handler for isolation tests (imported inside worker processes)."""

import os
import time


def handle(request: dict):
    op = request["op"]
    if op == "echo":
        return request["value"]
    if op == "raise":
        raise ValueError("asked to fail")
    if op == "exit":
        os._exit(request["code"])
    if op == "sleep":
        time.sleep(request["seconds"])
    if op == "whoami":  # which worker answered, and where it may run
        time.sleep(request.get("seconds", 0))
        return {"pid": os.getpid(), "cpus": sorted(os.sched_getaffinity(0))}
    return None
