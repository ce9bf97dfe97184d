"""Milvus servers for the tests, on 127.0.0.1 only: `milvus-lite server` and the real Milvus engine.

The real engine is the standalone binary that PyPI's `milvus` package ships (Go + knowhere, with
embedded etcd and local storage): `milvus-server --data DIR --proxy-port PORT`. Facts that shape
this module (measured here, DESIGN.md):
- Besides the proxy port it binds fixed ports (etcd 2379/2380, 9091, 53100, 19529, 19531,
  21121-21124, 13333), so ONE runs per machine: the test session starts one and shares it, and a
  session (or benchmark) that finds it taken waits on the machine-wide lock MACHINE_LOCK.
- SIGTERM to the launcher left the binary (DIR/bin/milvus) serving minutes later, so we stop the
  binary by its own pid, with SIGKILL after a grace period.
- It is ready some seconds after the proxy port opens; we wait until a collection can be made.
"""
from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REAL_MILVUS_USER, REAL_MILVUS_PASSWORD = "root", "Milvus"  # the engine's default account
FIXED_PORTS = (2379, 9091)  # two of the real engine's fixed ports: busy means one already runs
MACHINE_LOCK = "/tmp/ragkit-real-milvus.lock"  # held by whoever runs the real engine on this machine
MACHINE_WAIT_SECONDS = float(os.environ.get("RAGKIT_REAL_MILVUS_WAIT", "480"))


@dataclass(frozen=True)
class MilvusTarget:
    """A running server the tests can point ragkit at."""
    engine: str          # "milvus-lite" or "milvus"
    uri: str             # http://127.0.0.1:PORT, no credentials
    token: str = ""      # user:password when the server checks credentials

    @property
    def env(self) -> dict[str, str]:
        env = {"RAGKIT_MILVUS_URI": self.uri}
        if self.token:
            env["RAGKIT_MILVUS_TOKEN"] = self.token
        return env

    def client(self):
        from pymilvus import MilvusClient
        kwargs = {"token": self.token} if self.token else {}
        return MilvusClient(uri=self.uri, dedicated=True, **kwargs)  # see ragkit.storage.connection.connect

    def drop_all_collections(self) -> None:
        """Between tests: the next test starts with an empty server."""
        client = self.client()
        try:
            for name in client.list_collections():
                client.drop_collection(name)
        finally:
            client.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_busy(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait_until_ready(target: MilvusTarget, process: subprocess.Popen, timeout: float, log: Path) -> None:
    """Until a collection can be created and dropped (the proxy answers before the rest is up)."""
    from pymilvus import DataType, MilvusClient
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{target.engine} exited with {process.returncode}: {_tail(log)}")
        if port_busy(int(target.uri.rsplit(":", 1)[1])):
            try:
                client = target.client()
                try:
                    schema = MilvusClient.create_schema(auto_id=False)
                    schema.add_field("id", DataType.INT64, is_primary=True)
                    schema.add_field("v", DataType.FLOAT_VECTOR, dim=2)
                    client.create_collection("ragkit_probe", schema=schema)
                    client.drop_collection("ragkit_probe")
                    return
                finally:
                    client.close()
            except Exception as exc:  # noqa: BLE001 - not ready yet
                last = str(exc)[:200]
        time.sleep(0.5)
    raise TimeoutError(f"{target.engine} not ready after {timeout:.0f}s ({last}): {_tail(log)}")


def _tail(log: Path, chars: int = 1500) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


class LiteServer:
    """`milvus-lite server` (Milvus Lite's own engine behind Milvus' gRPC protocol)."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.log = data_dir.with_suffix(".log")
        exe = Path(sys.executable).with_name("milvus-lite")
        self.process = subprocess.Popen(
            [str(exe), "server", "--data-dir", str(data_dir), "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=open(self.log, "wb"))
        self.target = MilvusTarget("milvus-lite", f"http://127.0.0.1:{self.port}")
        try:
            _wait_until_ready(self.target, self.process, 60, self.log)
        except BaseException:
            self.stop()
            raise

    def death_notice(self) -> str | None:
        """None while serving; else what its log said last (a crash mid-session fails loudly)."""
        if self.process.poll() is None:
            return None
        return f"{self.target.engine} exited with {self.process.returncode} mid-session: {_tail(self.log)}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


class RealMilvus:
    """The real Milvus standalone engine from PyPI's `milvus` package, with authentication on."""

    def __init__(self, data_dir: Path, startup_timeout: float = 180) -> None:
        self._machine_lock = _take_machine_lock()  # held until stop(): the engine's ports are ours
        try:
            _wait_for_free_ports()
        except BaseException:
            _release(self._machine_lock)
            raise
        exe = Path(sys.executable).with_name("milvus-server")
        self.data_dir = data_dir
        self.port = free_port()
        self.log = data_dir.with_suffix(".log")
        self.process = subprocess.Popen(
            [str(exe), "--data", str(data_dir), "--proxy-port", str(self.port), "--authorization-enabled", "true"],
            stdout=open(self.log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
        self.target = MilvusTarget("milvus", f"http://127.0.0.1:{self.port}",
                                   f"{REAL_MILVUS_USER}:{REAL_MILVUS_PASSWORD}")
        try:
            _wait_until_ready(self.target, self.process, startup_timeout, self.log)
        except BaseException:
            self.stop()
            raise

    def _binary_pids(self) -> list[int]:
        """The engine itself (DIR/bin/milvus run standalone), which outlives its launcher."""
        binary = str(self.data_dir / "bin" / "milvus")
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace") == binary:
                        pids.append(int(entry.name))
                except OSError:
                    continue
        return pids

    def death_notice(self) -> str | None:
        """None while the engine serves; else the end of its log (a crash mid-session fails loudly)."""
        if any(_alive(pid) for pid in self._binary_pids()):
            return None
        return f"the real Milvus engine died mid-session: {_tail(self.log, 4000)}"

    def stop(self, grace: float = 5) -> None:
        pids = self._binary_pids()
        for pid in pids:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
            time.sleep(0.2)
        for pid in pids:
            _signal(pid, signal.SIGKILL)
        try:  # the launcher (and anything else it started) goes with its process group
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)
        deadline = time.monotonic() + 30  # the next holder of the machine lock finds the ports free
        while time.monotonic() < deadline and any(port_busy(p) for p in FIXED_PORTS):
            time.sleep(0.5)
        _release(self._machine_lock)


def _take_machine_lock() -> int:
    """One real engine per machine: a session that wants it waits for the one that has it (another
    engineer's test run, a benchmark) instead of failing; the kernel frees the lock if its holder dies."""
    fd = os.open(MACHINE_LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    deadline = time.monotonic() + MACHINE_WAIT_SECONDS
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise RuntimeError(f"the real Milvus engine stayed in use by another process for "
                                   f"{MACHINE_WAIT_SECONDS:.0f}s ({MACHINE_LOCK} is held)") from None
            time.sleep(1)


def _wait_for_free_ports() -> None:
    """An engine started without the machine lock (older code) still holds the fixed ports: wait for it too."""
    deadline = time.monotonic() + MACHINE_WAIT_SECONDS
    while busy := [p for p in FIXED_PORTS if port_busy(p)]:
        if time.monotonic() > deadline:
            raise RuntimeError(f"port(s) {busy} are in use: another Milvus (or etcd) runs on this machine, "
                               "and the real engine binds fixed ports, so only one can run. Stop it first.")
        time.sleep(1)


def _release(fd: int) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
