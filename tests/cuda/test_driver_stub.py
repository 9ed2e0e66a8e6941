"""The build-only stand-in for libcuda.so.1: made once, loadable under the driver's name, and a clear
error where it cannot be made."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cwm_bench.cuda import driver_stub

PROBE = """
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
text = ctypes.c_char_p()
print(lib.cuModuleLoadData(), lib.cuGetErrorString(100, ctypes.byref(text)), b"stub" in text.value)
"""


def test_the_stub_loads_as_the_driver_and_reports_no_device(tmp_path, monkeypatch):
    monkeypatch.setenv("CWM_BENCH_CACHE", str(tmp_path))
    driver_stub.stub_dir.cache_clear()
    folder = driver_stub.stub_dir()
    # loaded in another process: once a libcuda.so.1 is loaded here, this process would look like a GPU machine
    done = subprocess.run([sys.executable, "-c", PROBE, os.path.join(folder, "libcuda.so.1")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["100", "0", "True"], "CUDA_ERROR_NO_DEVICE; an error string naming the stub"
    driver_stub.stub_dir.cache_clear()
    assert driver_stub.stub_dir() == folder, "made once, reused after"
    driver_stub.stub_dir.cache_clear()


def test_without_a_c_compiler_the_error_says_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("CWM_BENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(driver_stub.shutil, "which", lambda name: None)
    driver_stub.stub_dir.cache_clear()
    with pytest.raises(driver_stub.DriverStubError, match="needs a C compiler"):
        driver_stub.stub_dir()
    driver_stub.stub_dir.cache_clear()
    assert not os.listdir(tmp_path), "nothing half-made left in the cache"
