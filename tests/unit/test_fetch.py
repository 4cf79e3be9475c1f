"""Fetching a manifest's images: byte caps while streaming, an overall deadline, redirects, the public-address
check (IPv4 wrapped in IPv6 included), the allow-list by host and port, DNS pinned between check and connect,
bounded concurrency, local paths."""

import ipaddress
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from jobtools import image_server, served

from app.ingest.fetch import Fetcher, FetchError, FetchPolicy, Target, check_url, fetch_url, is_public, read_local


def policy_for(base: str, **overrides) -> FetchPolicy:
    host_port = base.removeprefix("http://")
    return FetchPolicy(**{"allow_hosts": (host_port,), "timeout_s": 2.0, "max_bytes": 100_000, **overrides})


def test_an_endless_body_is_cut_off_at_the_byte_cap_while_streaming(tmp_path):
    with image_server(tmp_path) as base:
        served["huge"] = 0
        with pytest.raises(FetchError, match="exceeds the 100,000-byte limit"):
            fetch_url(f"{base}/huge", policy_for(base))
    assert served["huge"] < 64 * 65536  # the client stopped reading long before the end


def test_a_declared_length_over_the_cap_is_refused_before_reading(tmp_path):
    with image_server(tmp_path) as base, pytest.raises(FetchError, match="response is 50,000,000 bytes"):
        fetch_url(f"{base}/declared", policy_for(base))


def test_a_file_within_the_cap_and_redirects_within_the_limit_are_fetched(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x" * 99_000)
    with image_server(tmp_path) as base:
        assert fetch_url(f"{base}/a.jpg", policy_for(base)) == b"x" * 99_000
        hops = f"{base}/redirect?to={base}/a.jpg"
        assert len(fetch_url(hops, policy_for(base, max_redirects=1))) == 99_000
        with pytest.raises(FetchError, match="more than 0 redirects"):
            fetch_url(hops, policy_for(base, max_redirects=0))
        with pytest.raises(FetchError, match="more than 3 redirects"):
            fetch_url(f"{base}/loop", policy_for(base))
        with pytest.raises(FetchError, match="HTTP 404"):
            fetch_url(f"{base}/absent.jpg", policy_for(base))
        with pytest.raises(FetchError, match=r"non-public address 169\.254\.169\.254"):  # a hop is checked too
            fetch_url(f"{base}/redirect?to=http://169.254.169.254/latest", policy_for(base))


@pytest.fixture
def trickle():
    """A server that sends its headers one byte every 0.3 s: no single read ever times out."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            try:
                for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Padding: " + b"x" * 200:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.3)
            except OSError:
                pass

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_slow_trickle_is_cut_off_at_the_overall_deadline(trickle):
    started = time.monotonic()
    with pytest.raises(FetchError, match=r"took longer than 1\.5s in all"):
        fetch_url(f"{trickle}/x.jpg", policy_for(trickle, timeout_s=1.0, deadline_s=1.5))
    assert time.monotonic() - started < 4


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/a.jpg", "only http and https"),
        ("http:///a.jpg", "has no host"),
        ("http://127.0.0.1:1/a.jpg", "non-public address 127.0.0.1"),
        ("http://10.1.2.3/a.jpg", "non-public address 10.1.2.3"),
        ("http://[::ffff:169.254.169.254]/latest", "non-public address"),
        ("http://[::127.0.0.1]/", "non-public address"),
        ("http://[64:ff9b::a00:1]/", "non-public address"),
        ("http://[2002:a00:1::]/", "non-public address"),
        ("http://[2001:0:4136:e378:8000:63bf:f5ff:fffe]/", "non-public address"),  # Teredo, client 10.0.0.1
        ("http://example.com:99999/", "bad port"),
        ("http://no-such-host.invalid/a.jpg", "cannot resolve"),
    ],
)
def test_urls_that_are_not_public_http_are_refused(url, message):
    with pytest.raises(FetchError, match=message):
        check_url(url, allow_hosts=[])


def test_the_allow_list_names_hosts_and_ports():
    check_url("http://127.0.0.1:8080/a.jpg", allow_hosts=["127.0.0.1:8080"])  # no error
    check_url("http://127.0.0.1/a.jpg", allow_hosts=["127.0.0.1"])  # a bare host: ports 80 and 443
    with pytest.raises(FetchError, match="non-public"):
        check_url("http://127.0.0.1:6379/", allow_hosts=["127.0.0.1"])  # not any port of an allowed host
    with pytest.raises(FetchError, match="non-public"):
        check_url("http://127.0.0.1:6379/", allow_hosts=["127.0.0.1:8080"])


def test_the_connection_goes_to_the_address_that_was_checked(monkeypatch):
    answers = iter(["93.184.216.34", "127.0.0.1"])  # a rebinding DNS: public for the check, private after

    def rebinding(host, port, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    target = Target.of("https://shop.example/img/a.jpg?size=2", allow_hosts=[])
    assert target.pinned_url == "https://93.184.216.34:443/img/a.jpg?size=2"
    assert (target.host_header, target.host) == ("shop.example", "shop.example")  # and SNI for the certificate


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
        ("::ffff:10.0.0.1", False),
        ("::ffff:8.8.8.8", True),
        ("::7f00:1", False),
        ("64:ff9b::808:808", True),
        ("64:ff9b::c0a8:101", False),
        ("2002:c0a8:101::", False),
        ("192.168.1.1", False),
        ("100.64.0.1", False),
        ("224.0.0.1", False),
        ("0.0.0.0", False),
        ("fe80::1", False),
        ("::1", False),
    ],
)
def test_public_addresses(address, public):
    assert is_public(ipaddress.ip_address(address)) is public


def test_fetches_in_flight_are_bounded(tmp_path, monkeypatch):
    running, most = [0], [0]
    lock = threading.Lock()

    def slow_fetch(url, policy):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return b"x"

    monkeypatch.setattr("app.ingest.fetch.fetch_url", slow_fetch)
    fetcher = Fetcher(FetchPolicy(max_concurrent=2))
    threads = [threading.Thread(target=fetcher.fetch, args=("http://x/",)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert most[0] == 2


def test_local_paths_are_confined_and_capped(tmp_path):
    base = tmp_path / "upload"
    base.mkdir()
    (base / "a.jpg").write_bytes(b"abc")
    (tmp_path / "outside.jpg").write_bytes(b"abc")
    (base / "big.jpg").write_bytes(b"x" * 11)
    assert read_local("a.jpg", base, max_bytes=10, confine=True) == b"abc"
    assert read_local("../outside.jpg", base, max_bytes=10, confine=False) == b"abc"
    with pytest.raises(FetchError, match="outside the upload"):
        read_local("../outside.jpg", base, max_bytes=10, confine=True)
    with pytest.raises(FetchError, match="outside the upload"):
        read_local(str(tmp_path / "outside.jpg"), base, max_bytes=10, confine=True)
    with pytest.raises(FetchError, match="file not found"):
        read_local("nope.jpg", base, max_bytes=10, confine=True)
    with pytest.raises(FetchError, match="11 bytes; the limit is 10"):
        read_local("big.jpg", base, max_bytes=10, confine=True)
