"""The listening socket and the package's public surface."""

from __future__ import annotations

import socket

import pytest

import conveyor.server
from conveyor.core.errors import InfrastructureError
from conveyor.server.serve import listen


def test_exports_are_explicit_and_sorted() -> None:
    assert conveyor.server.__all__ == sorted(conveyor.server.__all__)
    assert conveyor.server.__all__ == ["create_app", "serve"]
    for name in conveyor.server.__all__:
        assert callable(getattr(conveyor.server, name))


def test_listening_socket_and_its_connections_have_nodelay() -> None:
    with listen("127.0.0.1", 0) as server:
        assert server.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        port = server.getsockname()[1]
        assert port > 0
        with socket.create_connection(("127.0.0.1", port)) as _client:
            accepted, _ = server.accept()
            with accepted:
                # Accepted sockets inherit the option: no Nagle stall on small responses.
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_port_in_use_is_an_infrastructure_error() -> None:
    with listen("127.0.0.1", 0) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(InfrastructureError, match=f"cannot listen on 127.0.0.1:{port}"):
            listen("127.0.0.1", port).close()


def test_unknown_host_is_an_infrastructure_error() -> None:
    with pytest.raises(InfrastructureError, match=r"cannot listen on no-such-host\.invalid"):
        listen("no-such-host.invalid", 0).close()
