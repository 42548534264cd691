"""Where `run_video --ray ADDRESS` joins Ray, checked before Ray is asked to join it.

Ray's own join waits minutes on an address that is not a Ray cluster: the driver retries
the cluster's control store (GCS) for minutes, printing "Failed to connect to GCS" every
few seconds, whether nothing listens there or another service does (the dashboard's port
instead of the GCS's). And a `ray://` address needs Ray's client package (grpcio: ray's
`client` extra, which toonstream's `ray` extra installs). So before Ray starts:

- a `ray://` address checks that the client package imports;
- one TCP connection, with a short timeout, to where Ray will dial: refused at once when
  nothing listens, given up after CONNECT_TIMEOUT_S when the host does not answer;
- on it, the opening of an HTTP/2 connection, which every gRPC server (the GCS and the
  client server both are) answers at once with its SETTINGS frame: another service answers
  otherwise, or not at all. Skipped when Ray's TLS is on (RAY_USE_TLS), whose handshake
  comes first.

Any of these failing is one line that names what to do. Where Ray will dial: `HOST:PORT`
(a GCS; on a loopback host Ray dials this machine's address, which is tried too) and
`ray://HOST[:PORT]` (the client server, port 10001 by default) say it; `auto`, and no
address while RAY_ADDRESS is set or a `ray start` cluster runs here, are resolved by Ray's
own lookup (where this Ray version has it; without it the check is left to Ray).
"""
from __future__ import annotations

import ipaddress
import os
import socket
from typing import Any

from streamer.config import ConfigError
from streamer.errors import UserError

CONNECT_TIMEOUT_S = 5.0
CLIENT_PORT = 10001  # Ray's default client server port (ray start --head)
INSTALL = "pip install 'toonstream[ray]'"
# The client side of an HTTP/2 connection's opening: the preface and an empty SETTINGS frame
# (length 0, type 4, no flags, stream 0). The server's reply starts with its own SETTINGS.
_H2_OPEN = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
_H2_SETTINGS = 4


class RayAddressError(UserError):
    """The --ray address cannot be joined as it stands: nothing answers there, what answers
    is not Ray, or the Ray client package a `ray://` address needs is not installed."""


def split_address(address: str, given: str = "--ray") -> tuple[str, int]:
    """(host, port) of `HOST:PORT` or `ray://HOST[:PORT]` (brackets around an IPv6 host);
    ConfigError, one line, when it is neither (`given`: where the address came from)."""
    client = address.startswith("ray://")
    rest = (address[len("ray://"):] if client else address).split("/", 1)[0]
    host, sep, port_text = rest.rpartition(":")
    if not sep or host.endswith(":") or (":" in host and not host.startswith("[")):
        host, port_text = rest, ""  # no port, or a bare IPv6 address
    host = host.strip("[]")
    if not port_text and client:
        port_text = str(CLIENT_PORT)
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"{given} {address!r} is not a Ray address (auto, HOST:PORT or "
                          f"ray://HOST:PORT, with a port from 1 to 65535)")
    return host, int(port_text)


def _ray_lookup(address: str | None) -> str | None:
    """The HOST:PORT Ray itself dials for `auto` or no address (None: it starts its own, or
    this Ray version's lookup is not there to ask)."""
    try:
        from ray._private.services import canonicalize_bootstrap_address
    except ImportError:
        return None
    try:
        return canonicalize_bootstrap_address(address)
    except ConnectionError:  # `auto`, and no cluster to find
        raise RayAddressError(f"cannot join Ray at {address}: no running Ray cluster found "
                              f"from this machine (RAY_ADDRESS unset, no 'ray start' here); "
                              f"start one with ray start --head, or give --ray HOST:PORT"
                              ) from None
    except Exception:  # noqa: BLE001 - another Ray version's lookup: leave it to Ray
        return None


def dial_address(address: str | None, environ: Any = os.environ) -> str | None:
    """What Ray will dial for the --ray value `address` (None or `local`: ray.init() with no
    address): `HOST:PORT` or `ray://...`, or None when Ray starts its own instance (or this
    Ray version cannot say). RAY_ADDRESS stands in for no address and for `auto`, as in
    Ray."""
    if address in (None, "", "local"):
        address = None
    env = environ.get("RAY_ADDRESS") or None
    if address in (None, "auto") and env not in (None, "auto", "local"):
        return env
    if address in (None, "auto"):
        dial = _ray_lookup(address)
        return None if dial in (None, "auto", "local") else dial
    return address


def _speaks_grpc(sock: socket.socket) -> bool | None:
    """True when the peer answers the opening of an HTTP/2 connection with SETTINGS, as a
    gRPC server does; False when it answers otherwise or hangs up; None when it is silent
    (the socket's timeout)."""
    try:
        sock.sendall(_H2_OPEN)
        head = b""
        while len(head) < 4:
            got = sock.recv(4 - len(head))
            if not got:
                return False
            head += got
    except socket.timeout:
        return None
    except OSError:
        return False
    return head[3] == _H2_SETTINGS


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _candidates(host: str, client: bool) -> list[str]:
    """The hosts to try: Ray joins a GCS on a loopback host at this machine's address."""
    if client or not _is_loopback(host):
        return [host]
    try:
        from ray.util import get_node_ip_address
        return [host, get_node_ip_address()]
    except Exception:  # noqa: BLE001 - no address to add: the loopback host alone
        return [host]


def not_ray(host: str, port: int, *, client: bool = False, tls: bool = False,
            timeout_s: float = CONNECT_TIMEOUT_S) -> str | None:
    """None when a Ray cluster's gRPC server can be reached at host:port (`client`: a
    `ray://` client server), else why not, as the end of a sentence that starts "cannot
    join Ray at ADDRESS: "."""
    why = ""
    for candidate in _candidates(host, client):
        try:
            with socket.create_connection((candidate, port), timeout=timeout_s) as sock:
                answer = True if tls else _speaks_grpc(sock)
        except socket.gaierror:
            return f"there is no host {host!r}; check the address"
        except OSError as exc:
            reason = (f"no answer within {timeout_s:g} s" if isinstance(exc, socket.timeout)
                      else (exc.strerror or str(exc)).lower())
            why = why or (f"nothing answers at {host}:{port} ({reason}); start the cluster "
                          f"there (ray start --head) or check the address")
            continue
        if answer:
            return None
        what = "client server (default 10001)" if client else "GCS (default 6379)"
        silent = f"is silent for {timeout_s:g} s" if answer is None else "answers"
        return (f"something at {host}:{port} {silent}, but it is not Ray (no gRPC server); "
                f"give the port of the head's {what}")
    return why


def check_ray_address(address: str | None, environ: Any = os.environ) -> None:
    """Raise RayAddressError (one line) unless Ray can be asked to join `address`: the
    client package is there for `ray://`, and Ray answers where it will dial."""
    dial = dial_address(address, environ)
    if dial is None:
        return
    client = dial.startswith("ray://")
    if client:
        try:
            import grpc  # noqa: F401 - what Ray's client needs (ray[client])
        except ImportError:
            given = "--ray" if address == dial else "RAY_ADDRESS"
            raise RayAddressError(f"{given} {dial} needs Ray's client (the grpcio package), "
                                  f"which is not installed: {INSTALL}") from None
    from_env = address != dial and dial == environ.get("RAY_ADDRESS")
    tls = environ.get("RAY_USE_TLS", "").lower() in ("1", "true", "yes")
    why = not_ray(*split_address(dial, "RAY_ADDRESS" if from_env else "--ray"), client=client,
                  tls=tls)
    if why is not None:
        shown = (dial if address == dial else f"RAY_ADDRESS={dial}" if from_env
                 else f"{address or 'local'} ({dial})")
        raise RayAddressError(f"cannot join Ray at {shown}: {why}")
