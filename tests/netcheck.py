"""What a process has open on the network, read from ``ss`` (iproute2), for tests that must
show that streamser talks to this machine only."""

from __future__ import annotations

import ipaddress
import subprocess
from dataclasses import dataclass

from tests.conftest import require_tools

WILDCARDS = {"0.0.0.0", "*", "::"}


@dataclass(frozen=True)
class Socket:
    netid: str
    """``tcp`` or ``udp``."""
    state: str
    local_host: str
    local_port: int
    peer_host: str
    """``*`` (or a wildcard address) when the socket has no peer."""

    @property
    def bound_to_all(self) -> bool:
        return self.local_host in WILDCARDS

    @property
    def has_peer(self) -> bool:
        return self.peer_host not in WILDCARDS


def _split(address: str) -> tuple[str, str]:
    host, _, port = address.rpartition(":")
    host = host.strip("[]").split("%")[0]  # "[::1]" -> "::1"; "127.0.0.1%lo" -> "127.0.0.1"
    return host, port


def is_loopback(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def sockets_of(pid: int) -> list[Socket]:
    """Every TCP and UDP socket ``pid`` holds now (``ss -tuanp``)."""
    require_tools("ss")
    out = subprocess.run(
        ["ss", "-tuanp"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    found = []
    for line in out.splitlines()[1:]:
        if f"pid={pid}," not in line:
            continue
        netid, state, _recv_q, _send_q, local, peer, *_ = line.split()
        local_host, local_port = _split(local)
        peer_host, _ = _split(peer)
        found.append(Socket(netid, state, local_host, int(local_port), peer_host))
    return found
