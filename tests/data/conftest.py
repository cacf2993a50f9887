"""Fixtures of the data tests: downloads that cannot reach the network, whether or not this
machine has one."""

import socket

import pytest


def send_downloads_to(monkeypatch, proxy: str) -> None:
    """Points every HTTP(S) request of this process and its children at `proxy`, as the proxy
    variables TFDS's downloads honour do: the test then means the same with or without network."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, proxy)
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def no_network(monkeypatch):
    """Downloads go to a local port that refuses connections at once (bound, never listening);
    yields that proxy's host:port."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        proxy = f"127.0.0.1:{closed.getsockname()[1]}"
        send_downloads_to(monkeypatch, f"http://{proxy}")
        yield proxy
