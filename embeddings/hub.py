"""The model hub, reached only when it answers: a hub tag whose weights are not cached, with the hub out of
reach, fails at once with what to do, instead of a minute of retries and a traceback."""

import socket
from collections.abc import Iterator
from contextlib import contextmanager

HUB_HOST = "huggingface.co"


def hub_reachable(timeout_s: float) -> bool:
    try:
        socket.create_connection((HUB_HOST, 443), timeout=timeout_s).close()
        return True
    except OSError:
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
