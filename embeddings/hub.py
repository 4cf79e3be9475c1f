"""The model hub, reached only when it answers: a hub tag whose weights are not cached, with the hub out of
reach, fails at once with what to do, instead of a minute of retries and a traceback."""

import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

log = logging.getLogger(__name__)
HUB_HOST = "huggingface.co"


def hub_reachable(timeout_s: float) -> bool:
    """Whether the hub (or the mirror HF_ENDPOINT names) accepts a connection within `timeout_s`; False at once
    when HF_HUB_OFFLINE is set. Said in one log line when it does not."""
    import huggingface_hub.constants as hub

    if hub.HF_HUB_OFFLINE:
        return False
    endpoint = urlsplit(hub.ENDPOINT)
    host, port = endpoint.hostname or HUB_HOST, endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
        return True
    except OSError as exc:
        log.warning("model hub %s not reachable (%s): using locally cached weights only", host, exc)
        return False


@contextmanager
def offline() -> Iterator[None]:
    """Within the block, huggingface_hub answers from its cache only (no network, no retries)."""
    import huggingface_hub.constants as hub

    was = hub.HF_HUB_OFFLINE
    hub.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hub.HF_HUB_OFFLINE = was
