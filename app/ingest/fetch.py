"""Fetch a manifest's image: a local file, or an http(s) URL behind an address check.

URLs reach only public addresses: every hop's host is resolved and refused if any address is loopback,
private, link-local (cloud metadata lives there), multicast, reserved or unspecified, unless the host is
on the configured allow-list. Redirects are followed by hand so each hop is checked; the body is
streamed with a byte cap, so a huge or endless response is cut off early.
"""

import ipaddress
import socket
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx


class FetchError(ValueError):
    """Why an image could not be fetched, for the per-row report."""


@dataclass(frozen=True)
class FetchPolicy:
    timeout_s: float = 15.0  # per read and connect
    max_redirects: int = 3
    max_bytes: int = 30 * 1024 * 1024
    allow_hosts: tuple[str, ...] = ()  # exempt from the public-address check (tests, intranets)


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


def fetch_url(url: str, policy: FetchPolicy, client: httpx.Client | None = None) -> bytes:
    own_client = client is None
    client = client or httpx.Client(timeout=policy.timeout_s, follow_redirects=False)
    try:
        for _ in range(policy.max_redirects + 1):
            check_url(url, policy.allow_hosts)
            with client.stream("GET", url, headers={"User-Agent": "SourceLens/0.1"}) as response:
                if response.is_redirect:
                    url = urljoin(url, response.headers.get("location", ""))
                    continue
                if response.status_code != 200:
                    raise FetchError(f"HTTP {response.status_code} from {url}")
                return _read_capped(response, policy.max_bytes)
        raise FetchError(f"more than {policy.max_redirects} redirects")
    except httpx.TimeoutException as exc:
        raise FetchError(f"timed out after {policy.timeout_s:g}s fetching {url}") from exc
    except httpx.HTTPError as exc:
        raise FetchError(f"could not fetch {url}: {exc}") from exc
    finally:
        if own_client:
            client.close()


def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise FetchError(f"response is {int(declared):,} bytes; the limit is {max_bytes:,}")
    chunks: list[bytes] = []
    total = 0
    for chunk in response.iter_bytes():
        total += len(chunk)
        if total > max_bytes:
            raise FetchError(f"response exceeds the {max_bytes:,}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def check_url(url: str, allow_hosts: Collection[str]) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise FetchError(f"only http and https URLs are fetched, not {parts.scheme or 'a bare path'!r}")
    host = parts.hostname
    if not host:
        raise FetchError(f"URL {url!r} has no host")
    if host in allow_hosts:
        return
    try:
        infos = socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise FetchError(f"cannot resolve host {host!r}") from exc
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not is_public(address):
            raise FetchError(f"host {host!r} resolves to non-public address {address}; refused")


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    # is_global excludes private, loopback, link-local (169.254.169.254 metadata), shared and reserved ranges.
    return address.is_global and not address.is_multicast
