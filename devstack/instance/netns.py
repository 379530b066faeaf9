"""The booted instance's network: a namespace of its own, a veth to this machine, and listeners opened
inside it by this process (a socket keeps the namespace it was made in), so the metadata stand-in sits
at 169.254.169.254 and the local stack's loopback services answer on the container's own loopback, at
the same addresses as on this machine (the presigned URLs and endpoints the stack hands out work
unchanged inside).
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import socket
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeVar

__all__ = ["IMDS_ADDRESS", "Forwarder", "Netns", "in_netns"]

IMDS_ADDRESS: Final = "169.254.169.254"
_CLONE_NEWNET: Final = 0x40000000
# Private /30s for the veth pairs, one per booted instance; a free one is picked at creation.
_POOL: Final = ipaddress.IPv4Network("100.90.0.0/16")

T = TypeVar("T")


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def in_netns(name: str, fn: Callable[[], T]) -> T:
    """`fn()` run in a thread that has joined the namespace (only that thread moves; it ends after)."""
    result: list[T] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
            try:
                if libc.setns(fd, _CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns into {name}")
            finally:
                os.close(fd)
            result.append(fn())
        except BaseException as exc:  # handed to the caller's thread
            error.append(exc)

    thread = threading.Thread(target=run, name=f"setns-{name}")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def _used_networks() -> set[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    out = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True, check=False).stdout
    found = set()
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            found.add(ipaddress.ip_interface(parts[parts.index("inet") + 1]).network)
    return found


@dataclass
class Netns:
    """A namespace with lo up, the metadata address on it, and a veth whose far end is this machine."""

    name: str
    host_if: str
    host_ip: str = ""
    guest_ip: str = ""

    def create(self) -> Netns:
        _ip("netns", "add", self.name)
        try:
            _ip("link", "add", self.host_if, "type", "veth", "peer", "name", "eth0", "netns", self.name)
            used = _used_networks()
            # Start the search at a place of this process's own, so two test runs creating at once do not
            # both take the first free /30.
            subnets: list[ipaddress.IPv4Network] = list(_POOL.subnets(new_prefix=30))
            start = (os.getpid() * 61) % len(subnets)
            ordered = subnets[start:] + subnets[:start]
            subnet = next(n for n in ordered if not any(n.overlaps(u) for u in used))
            host, guest = list(subnet.hosts())
            self.host_ip, self.guest_ip = str(host), str(guest)
            _ip("addr", "add", f"{host}/30", "dev", self.host_if)
            _ip("link", "set", self.host_if, "up")
            inside = ["netns", "exec", self.name, "ip"]
            _ip(*inside, "link", "set", "lo", "up")
            _ip(*inside, "addr", "add", f"{IMDS_ADDRESS}/32", "dev", "lo")
            _ip(*inside, "addr", "add", f"{guest}/30", "dev", "eth0")
            _ip(*inside, "link", "set", "eth0", "up")
            _ip(*inside, "route", "add", "default", "via", str(host))
        except Exception:
            self.delete()
            raise
        return self

    def delete(self) -> None:
        """The namespace and the veth (both ends go with it); quiet when already gone."""
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True, check=False, timeout=30)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, check=False, timeout=30)

    def listen(self, host: str, port: int) -> socket.socket:
        """A listening TCP socket at host:port inside the namespace."""

        def make() -> socket.socket:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(64)
            return sock

        return in_netns(self.name, make)


class Forwarder:
    """Connections to a port on the namespace's loopback, carried to the same port on this machine's."""

    def __init__(self, listener: socket.socket, target: tuple[str, int]) -> None:
        self._listener = listener
        self._target = target
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, name=f"forward-{target[1]}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._carry, args=(conn,), daemon=True).start()

    def _carry(self, conn: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self._target, timeout=10)
        except OSError:
            conn.close()
            return
        upstream.settimeout(None)

        def pump(src: socket.socket, dst: socket.socket) -> None:
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)

        back = threading.Thread(target=pump, args=(upstream, conn), daemon=True)
        back.start()
        pump(conn, upstream)
        back.join()
        conn.close()
        upstream.close()
