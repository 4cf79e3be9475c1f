"""Fetch a manifest's image: a local file, or an http(s) URL behind an address check.

URLs reach only public addresses. Each hop's host is resolved once; every address it resolves to must be
public (not loopback, private, link-local where cloud metadata lives, multicast, reserved or unspecified,
including IPv4 addresses wrapped in IPv6: mapped, compatible, NAT64, 6to4, Teredo), and the connection goes to
the address that was checked, so DNS cannot answer differently between the check and the connect. Hosts on the
allow-list (`host` for ports 80 and 443, or `host:port`) skip the public check, on their listed ports only.
Redirects are followed by hand so each hop is checked; the body is streamed with a byte cap and an overall
deadline, so a huge, endless or slowly trickling response is cut off.
"""

import ipaddress
import socket
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
DEFAULT_PORTS = {"http": 80, "https": 443}


class FetchError(ValueError):
    """Why an image could not be fetched, for the per-row report."""


@dataclass(frozen=True)
class FetchPolicy:
    timeout_s: float = 15.0  # per connect and per read
    deadline_s: float = 60.0  # for the whole fetch, redirects included
    max_redirects: int = 3
    max_bytes: int = 30 * 1024 * 1024
    allow_hosts: tuple[str, ...] = ()  # exempt from the public-address check: "host" (80, 443) or "host:port"
    max_concurrent: int = 8  # fetches in flight at once, over all jobs


class Fetcher:
    """Fetches URLs under a policy, at most `max_concurrent` at once in this process."""

    def __init__(self, policy: FetchPolicy) -> None:
        self.policy = policy
        self._slots = threading.BoundedSemaphore(policy.max_concurrent)

    def fetch(self, url: str) -> bytes:
        with self._slots:
            return fetch_url(url, self.policy)


def read_local(image: str, base_dir: Path, max_bytes: int, confine: bool) -> bytes:
    path = Path(image).expanduser()
    path = (path if path.is_absolute() else base_dir / path).resolve()
    if confine and not path.is_relative_to(base_dir.resolve()):
        raise FetchError(f"path {image!r} points outside the upload")
    if not path.is_file():
        raise FetchError(f"file not found: {image}")
    size = path.stat().st_size
    if size > max_bytes:
        raise FetchError(f"file is {size:,} bytes; the limit is {max_bytes:,}")
    return path.read_bytes()


def fetch_url(url: str, policy: FetchPolicy) -> bytes:
    deadline = time.monotonic() + policy.deadline_s
    client = httpx.Client(timeout=policy.timeout_s, follow_redirects=False)
    # The per-read timeout cannot stop a server that trickles a byte at a time, headers included: at the
    # deadline the connection is closed under the reading thread.
    watchdog = threading.Timer(policy.deadline_s, client.close)
    watchdog.start()
    try:
        with client:
            for _ in range(policy.max_redirects + 1):
                target = Target.of(url, policy.allow_hosts)
                with client.stream(
                    "GET",
                    target.pinned_url,
                    headers={"User-Agent": "SourceLens/0.1", "Host": target.host_header},
                    extensions={"sni_hostname": target.host} if target.scheme == "https" else {},
                ) as response:
                    if response.is_redirect and response.headers.get("location"):  # httpx: any 3xx is one
                        url = urljoin(url, response.headers.get("location", ""))
                        continue
                    if response.status_code != 200:
                        raise FetchError(f"HTTP {response.status_code} from {url}")
                    return _read_capped(response, policy, deadline)
    except (httpx.HTTPError, RuntimeError) as exc:  # a client closed by the watchdog raises RuntimeError
        if time.monotonic() >= deadline:
            raise FetchError(f"took longer than {policy.deadline_s:g}s in all fetching {url}") from exc
        if isinstance(exc, httpx.TimeoutException):
            raise FetchError(f"timed out after {policy.timeout_s:g}s fetching {url}") from exc
        raise FetchError(f"could not fetch {url}: {exc}") from exc
    finally:
        watchdog.cancel()
    raise FetchError(f"more than {policy.max_redirects} redirects")


def post_json(url: str, payload: object, policy: FetchPolicy) -> int:
    """POST JSON to a public http(s) URL (a webhook), behind the same address check and pinning as a fetch;
    redirects are not followed. Returns the status code; FetchError when it cannot be delivered."""
    target = Target.of(url, policy.allow_hosts)
    try:
        with httpx.Client(timeout=policy.timeout_s, follow_redirects=False) as client:
            response = client.post(
                target.pinned_url,
                json=payload,
                headers={"User-Agent": "SourceLens/0.1", "Host": target.host_header},
                extensions={"sni_hostname": target.host} if target.scheme == "https" else {},
            )
    except httpx.HTTPError as exc:
        raise FetchError(f"could not deliver to {url}: {exc}") from exc
    return response.status_code


@dataclass(frozen=True)
class Target:
    """Where one hop really goes: the address that was checked, for a host the URL names."""

    scheme: str
    host: str
    port: int
    address: IPAddress
    path: str

    @classmethod
    def of(cls, url: str, allow_hosts: Collection[str]) -> "Target":
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS:
            raise FetchError(f"only http and https URLs are fetched, not {parts.scheme or 'a bare path'!r}")
        host = parts.hostname
        if not host:
            raise FetchError(f"URL {url!r} has no host")
        try:
            port = parts.port or DEFAULT_PORTS[parts.scheme]
        except ValueError as exc:
            raise FetchError(f"URL {url!r} has a bad port") from exc
        address = resolve(host, port, allowed=allowed(host, port, allow_hosts))
        path = parts.path or "/"
        return cls(parts.scheme, host, port, address, path + (f"?{parts.query}" if parts.query else ""))

    @property
    def pinned_url(self) -> str:
        address = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        return f"{self.scheme}://{address}:{self.port}{self.path}"

    @property
    def host_header(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return shown if self.port == DEFAULT_PORTS[self.scheme] else f"{shown}:{self.port}"


def allowed(host: str, port: int, allow_hosts: Collection[str]) -> bool:
    """On the allow-list: `host` for the default ports, `host:port` for that port."""
    return f"{host}:{port}" in allow_hosts or (host in allow_hosts and port in DEFAULT_PORTS.values())


def resolve(host: str, port: int, allowed: bool = False) -> IPAddress:
    """The address to connect to; every address the host resolves to must be public unless it is allowed."""
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchError(f"cannot resolve host {host!r}") from exc
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not allowed:
        for address in addresses:
            if not is_public(address):
                raise FetchError(f"host {host!r} resolves to non-public address {address}; refused")
    return addresses[0]


def check_url(url: str, allow_hosts: Collection[str]) -> None:
    """Refuse a URL that is not public http(s) (resolving its host, as a fetch would)."""
    Target.of(url, allow_hosts)


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and (embedded := embedded_ipv4(address)) is not None:
        return is_public(embedded)
    # is_global excludes private, loopback, link-local (169.254.169.254 metadata) and shared ranges; in Python
    # 3.11 it lets IETF-reserved and deprecated site-local IPv6 (fec0::/10) through, so those are refused here.
    site_local = isinstance(address, ipaddress.IPv6Address) and address.is_site_local
    return address.is_global and not address.is_multicast and not address.is_reserved and not site_local


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries and reaches in the end, if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # the client's address
    low = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if any(address in network for network in NAT64):
        return low
    if int(address) >> 32 == 0 and int(address) > 1:  # IPv4-compatible ::a.b.c.d (deprecated, still routed)
        return low
    return None


def _read_capped(response: httpx.Response, policy: FetchPolicy, deadline: float) -> bytes:
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > policy.max_bytes:
        raise FetchError(f"response is {int(declared):,} bytes; the limit is {policy.max_bytes:,}")
    chunks: list[bytes] = []
    total = 0
    for chunk in response.iter_bytes():
        total += len(chunk)
        if total > policy.max_bytes:
            raise FetchError(f"response exceeds the {policy.max_bytes:,}-byte limit")
        if time.monotonic() > deadline:
            raise FetchError(f"took longer than {policy.deadline_s:g}s in all; refused")
        chunks.append(chunk)
    return b"".join(chunks)
