"""Fetching a manifest's images: byte caps while streaming, redirects, the public-address check, local paths."""

import ipaddress

import pytest
from jobtools import image_server, served

from app.ingest.fetch import FetchError, FetchPolicy, check_url, fetch_url, is_public, read_local


def policy(**overrides) -> FetchPolicy:
    return FetchPolicy(**{"allow_hosts": ("127.0.0.1",), "timeout_s": 2.0, "max_bytes": 100_000, **overrides})


def test_an_endless_body_is_cut_off_at_the_byte_cap_while_streaming(tmp_path):
    with image_server(tmp_path) as base:
        served["huge"] = 0
        with pytest.raises(FetchError, match="exceeds the 100,000-byte limit"):
            fetch_url(f"{base}/huge", policy())
    assert served["huge"] < 64 * 65536  # the client stopped reading long before the end


def test_a_declared_length_over_the_cap_is_refused_before_reading(tmp_path):
    with image_server(tmp_path) as base, pytest.raises(FetchError, match="response is 50,000,000 bytes"):
        fetch_url(f"{base}/declared", policy())


def test_a_file_within_the_cap_and_redirects_within_the_limit_are_fetched(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x" * 99_000)
    with image_server(tmp_path) as base:
        assert fetch_url(f"{base}/a.jpg", policy()) == b"x" * 99_000
        hops = f"{base}/redirect?to={base}/a.jpg"
        assert len(fetch_url(hops, policy(max_redirects=1))) == 99_000
        with pytest.raises(FetchError, match="more than 0 redirects"):
            fetch_url(hops, policy(max_redirects=0))
        with pytest.raises(FetchError, match="more than 3 redirects"):
            fetch_url(f"{base}/loop", policy())
        with pytest.raises(FetchError, match="HTTP 404"):
            fetch_url(f"{base}/absent.jpg", policy())


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/a.jpg", "only http and https"),
        ("http:///a.jpg", "has no host"),
        ("http://127.0.0.1:1/a.jpg", "non-public address 127.0.0.1"),
        ("http://10.1.2.3/a.jpg", "non-public address 10.1.2.3"),
        ("http://[::ffff:169.254.169.254]/latest", "non-public address"),
        ("http://no-such-host.invalid/a.jpg", "cannot resolve"),
    ],
)
def test_urls_that_are_not_public_http_are_refused(url, message):
    with pytest.raises(FetchError, match=message):
        check_url(url, allow_hosts=[])


def test_the_allow_list_exempts_a_host_from_the_address_check():
    check_url("http://127.0.0.1:1/a.jpg", allow_hosts=["127.0.0.1"])  # no error


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
        ("::ffff:10.0.0.1", False),
        ("::ffff:8.8.8.8", True),
        ("192.168.1.1", False),
        ("100.64.0.1", False),
        ("224.0.0.1", False),
        ("0.0.0.0", False),
        ("fe80::1", False),
    ],
)
def test_public_addresses(address, public):
    assert is_public(ipaddress.ip_address(address)) is public


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
