"""Fetching a manifest's images: byte caps while streaming, an overall deadline, redirects, the public-address
check (IPv4 wrapped in IPv6 included), the allow-list by host and port, DNS pinned between check and connect,
bounded concurrency, local paths."""

import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
from jobtools import image_server, served

from app.ingest import fetch
from app.ingest.fetch import (
    Fetcher,
    FetchError,
    FetchPolicy,
    Target,
    check_url,
    embedded_ipv4,
    fetch_url,
    is_public,
    read_local,
)


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


# A route answers (status, headers, body), or is a function that handles the request itself.
Route = tuple[int, dict[str, str], bytes] | Callable[[BaseHTTPRequestHandler], None]


@contextmanager
def local_site(routes: dict[str, Route], tls: ssl.SSLContext | None = None) -> Iterator[SimpleNamespace]:
    """A server on 127.0.0.1 answering `routes` by path (query included) and recording, per request, the path,
    Host and User-Agent it saw. HTTP/1.0, so a body without a Content-Length ends when the connection closes."""
    requests: list[dict[str, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append({"path": self.path, "host": self.headers["Host"], "agent": self.headers["User-Agent"]})
            route = routes.get(self.path)
            if route is None:
                self.send_error(404)
            elif callable(route):
                route(self)
            else:
                status, headers, body = route
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                with suppress(OSError):  # the client hung up after the headers: a cap refused the body
                    self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        yield SimpleNamespace(port=server.server_address[1], requests=requests)
    finally:
        server.shutdown()
        server.server_close()


def fake_dns(monkeypatch: pytest.MonkeyPatch, names: dict[str, str]) -> None:
    """Resolve `names` to the given IPv4 addresses; address literals resolve as usual; nothing else resolves."""
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in names:
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (names[host], port))]
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def named_policy(port: int, *hosts: str, **overrides) -> FetchPolicy:
    return FetchPolicy(**{"allow_hosts": tuple(f"{host}:{port}" for host in hosts), "timeout_s": 2.0, **overrides})


def test_each_hop_goes_to_the_pinned_address_naming_its_host_and_our_user_agent(monkeypatch):
    fake_dns(monkeypatch, {"images.test": "127.0.0.1", "cdn.test": "127.0.0.1"})
    routes: dict[str, Route] = {"/img/a.jpg?size=2": (200, {"Content-Length": "3"}, b"abc")}
    with local_site(routes) as site:
        routes["/start"] = (302, {"Location": f"http://cdn.test:{site.port}/img/a.jpg?size=2"}, b"")
        assert fetch_url(f"http://images.test:{site.port}/start", named_policy(site.port, "images.test", "cdn.test"))
    assert site.requests == [
        {"path": "/start", "host": f"images.test:{site.port}", "agent": "SourceLens/0.1"},
        {"path": "/img/a.jpg?size=2", "host": f"cdn.test:{site.port}", "agent": "SourceLens/0.1"},
    ]


def test_relative_redirects_resolve_against_the_current_hop_and_count_toward_the_limit(monkeypatch):
    fake_dns(monkeypatch, {"images.test": "127.0.0.1"})
    routes: dict[str, Route] = {
        "/a/b/start": (302, {"Location": "../img.jpg?size=2"}, b""),  # /a/img.jpg?size=2
        "/a/img.jpg?size=2": (301, {"Location": "/final.jpg"}, b""),
        "/final.jpg": (200, {"Content-Length": "2"}, b"ok"),
    }
    with local_site(routes) as site:
        url = f"http://images.test:{site.port}/a/b/start"
        assert fetch_url(url, named_policy(site.port, "images.test", max_redirects=2)) == b"ok"
        assert [request["path"] for request in site.requests] == ["/a/b/start", "/a/img.jpg?size=2", "/final.jpg"]
        with pytest.raises(FetchError) as caught:
            fetch_url(url, named_policy(site.port, "images.test", max_redirects=1))
    assert str(caught.value) == "more than 1 redirects"


def test_a_refusing_status_names_the_hop_that_answered_it(monkeypatch):
    fake_dns(monkeypatch, {"images.test": "127.0.0.1", "cdn.test": "127.0.0.1"})
    routes: dict[str, Route] = {"/gone": (410, {"Content-Length": "0"}, b"")}
    with local_site(routes) as site:
        routes["/moved"] = (302, {"Location": f"http://cdn.test:{site.port}/gone"}, b"")
        with pytest.raises(FetchError) as caught:
            fetch_url(f"http://images.test:{site.port}/moved", named_policy(site.port, "images.test", "cdn.test"))
    assert str(caught.value) == f"HTTP 410 from http://cdn.test:{site.port}/gone"


def test_a_3xx_without_a_location_is_a_refusing_status_not_a_redirect_loop(monkeypatch):
    fake_dns(monkeypatch, {"images.test": "127.0.0.1"})
    with local_site({"/choices": (300, {"Content-Length": "0"}, b"")}) as site, pytest.raises(FetchError) as caught:
        fetch_url(f"http://images.test:{site.port}/choices", named_policy(site.port, "images.test"))
    assert str(caught.value) == f"HTTP 300 from http://images.test:{site.port}/choices"
    assert len(site.requests) == 1  # asked once, not max_redirects + 1 times


def test_a_closed_port_is_reported_as_not_fetched():
    with socket.socket() as probe:  # a port that was free a moment ago and that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/a.jpg"
    with pytest.raises(FetchError, match=rf"^could not fetch {url}: .+"):
        fetch_url(url, named_policy(port, "127.0.0.1"))


@pytest.mark.parametrize("declared", [True, False])
def test_a_body_of_exactly_the_cap_is_fetched_and_one_byte_more_is_refused(declared):
    def body(size: int) -> Route:
        return (200, {"Content-Length": str(size)} if declared else {}, b"x" * size)

    with local_site({"/exact": body(1000), "/over": body(1001)}) as site:
        policy = named_policy(site.port, "127.0.0.1", max_bytes=1000)
        assert fetch_url(f"http://127.0.0.1:{site.port}/exact", policy) == b"x" * 1000
        with pytest.raises(FetchError) as caught:
            fetch_url(f"http://127.0.0.1:{site.port}/over", policy)
    refusal = "response is 1,001 bytes; the limit is 1,000" if declared else "response exceeds the 1,000-byte limit"
    assert str(caught.value) == refusal


def test_a_server_that_stalls_before_answering_times_out_at_the_per_read_timeout():
    release = threading.Event()
    with local_site({"/stall": lambda handler: release.wait(5)}) as site:
        url = f"http://127.0.0.1:{site.port}/stall"
        started = time.monotonic()
        try:
            with pytest.raises(FetchError) as caught:
                fetch_url(url, named_policy(site.port, "127.0.0.1", timeout_s=0.3, deadline_s=3.0))
        finally:
            release.set()
    assert str(caught.value) == f"timed out after 0.3s fetching {url}"
    assert time.monotonic() - started < 2


def test_the_deadline_is_checked_while_the_body_streams(monkeypatch):
    """Past the deadline once the headers are in (the clock jumps), the body is refused, not returned."""
    started = time.monotonic()
    readings = iter([started])  # the first reading sets the deadline; every later one is a minute past it
    monkeypatch.setattr(fetch, "time", SimpleNamespace(monotonic=lambda: next(readings, started + 61.0)))
    with (
        local_site({"/a.jpg": (200, {"Content-Length": "3"}, b"abc")}) as site,
        pytest.raises(FetchError) as caught,
    ):
        fetch_url(f"http://127.0.0.1:{site.port}/a.jpg", named_policy(site.port, "127.0.0.1", deadline_s=60.0))
    assert str(caught.value) == "took longer than 60s in all; refused"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> SimpleNamespace:
    """A self-signed certificate for images.test, to serve and to trust."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
            *("-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=images.test"),
            *("-addext", "subjectAltName=DNS:images.test"),
        ],
        check=True,
        capture_output=True,
    )
    return SimpleNamespace(cert=cert, key=key)


def test_https_to_the_pinned_address_sends_the_host_name_for_sni_and_checks_the_certificate_for_it(
    certificate, monkeypatch
):
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate.cert))  # httpx trusts it (trust_env)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    fake_dns(monkeypatch, {"images.test": "127.0.0.1", "other.test": "127.0.0.1"})
    server_names: list[str | None] = []
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(certificate.cert, certificate.key)
    tls.sni_callback = lambda sock, name, context: server_names.append(name)
    with local_site({"/a.jpg": (200, {"Content-Length": "3"}, b"abc")}, tls=tls) as site:
        policy = named_policy(site.port, "images.test", "other.test")
        assert fetch_url(f"https://images.test:{site.port}/a.jpg", policy) == b"abc"
        with pytest.raises(
            FetchError, match=rf"^could not fetch https://other\.test:{site.port}/a\.jpg: .*CERTIFICATE"
        ):
            fetch_url(f"https://other.test:{site.port}/a.jpg", policy)  # the certificate names another host
    assert server_names == ["images.test", "other.test"]
    assert site.requests == [{"path": "/a.jpg", "host": f"images.test:{site.port}", "agent": "SourceLens/0.1"}]


def test_a_scoped_link_local_answer_is_refused_and_named_without_its_zone(monkeypatch):
    def scoped(host, port, **kwargs):
        return [(socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("fe80::1%eth0", port, 0, 2))]

    monkeypatch.setattr(socket, "getaddrinfo", scoped)
    with pytest.raises(FetchError) as caught:
        check_url("http://printer.test/", allow_hosts=[])
    assert str(caught.value) == "host 'printer.test' resolves to non-public address fe80::1; refused"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://no-such-host.test/a.jpg", "cannot resolve host 'no-such-host.test'"),
        (f"http://{'a' * 64}.test/", f"cannot resolve host '{'a' * 64}.test'"),  # a label IDNA cannot encode
        ("gopher://images.test/", "only http and https URLs are fetched, not 'gopher'"),
        ("//images.test/a.jpg", "only http and https URLs are fetched, not 'a bare path'"),
        ("http://:80/a.jpg", "URL 'http://:80/a.jpg' has no host"),
        ("http://images.test:99999/", "URL 'http://images.test:99999/' has a bad port"),
    ],
)
def test_refusals_say_exactly_why(url, message, monkeypatch):
    fake_dns(monkeypatch, {})
    with pytest.raises(FetchError) as caught:
        check_url(url, allow_hosts=[])
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("address", "embedded"),
    [
        ("::a00:1", "10.0.0.1"),  # IPv4-compatible: ::/96 only
        ("::ffff:ffff", "255.255.255.255"),
        ("::1:0:0", None),  # just above ::/96: not IPv4-compatible
        ("::1:a00:1", None),
        ("::8000:0:0", None),
        ("::1", None),  # loopback, not 0.0.0.1
        ("::", None),
        ("::ffff:a00:1", "10.0.0.1"),  # mapped
        ("64:ff9b::a00:1", "10.0.0.1"),  # NAT64
        ("64:ff9b:1::a00:1", "10.0.0.1"),  # local-use NAT64
        ("2002:a00:1::", "10.0.0.1"),  # 6to4
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "10.0.0.1"),  # Teredo: the client's address
        ("2001:4860:4860::8888", None),
    ],
)
def test_the_ipv4_address_an_ipv6_address_carries(address, embedded):
    found = embedded_ipv4(ipaddress.IPv6Address(address))
    assert found == (None if embedded is None else ipaddress.IPv4Address(embedded))


@pytest.mark.parametrize("address", ["fec0::1", "4000::1", "::ffff:0:a00:1"])
def test_reserved_ipv6_addresses_are_not_public(address):
    assert is_public(ipaddress.IPv6Address(address)) is False


def test_local_file_refusals_say_exactly_why_and_a_file_of_exactly_the_limit_is_read(tmp_path):
    base = tmp_path / "upload"
    (base / "sub").mkdir(parents=True)
    (base / "sub" / "exact.jpg").write_bytes(b"x" * 1000)
    (base / "big.jpg").write_bytes(b"x" * 1001)
    (tmp_path / "outside.jpg").write_bytes(b"abc")
    assert read_local("sub/exact.jpg", base, max_bytes=1000, confine=True) == b"x" * 1000
    assert read_local(str(base / "sub" / "exact.jpg"), base, max_bytes=1000, confine=True) == b"x" * 1000
    assert read_local("sub/../sub/exact.jpg", base, max_bytes=1000, confine=True) == b"x" * 1000
    refusals = {
        "big.jpg": "file is 1,001 bytes; the limit is 1,000",
        "../outside.jpg": "path '../outside.jpg' points outside the upload",
        "sub/../../outside.jpg": "path 'sub/../../outside.jpg' points outside the upload",
        "nope.jpg": "file not found: nope.jpg",
        "sub": "file not found: sub",  # a folder is not a file
    }
    for image, message in refusals.items():
        with pytest.raises(FetchError) as caught:
            read_local(image, base, max_bytes=1000, confine=True)
        assert str(caught.value) == message
