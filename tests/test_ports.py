"""dialer.ports: a port for a server is picked where no outgoing connection can be given it."""

from __future__ import annotations

import socket

from dialer import ports


def test_a_free_port_lies_below_the_range_for_outgoing_connections() -> None:
    low = ports._outgoing_low()
    picked = {ports.free_port() for _ in range(20)}
    assert all(low - 12_000 <= port < low for port in picked), (low, picked)
    assert len(picked) > 1  # picked at random, so that parallel tests rarely meet
    for port in picked:
        with socket.socket() as server:
            server.bind(("127.0.0.1", port))  # and nothing listens on it


def test_outgoing_connections_take_ports_from_that_range() -> None:
    """What the choice rests on: a client socket's port comes from the outgoing range."""
    low = ports._outgoing_low()
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname()) as client:
            assert client.getsockname()[1] >= low


def test_a_range_that_starts_low_leaves_the_choice_to_the_kernel(monkeypatch) -> None:
    monkeypatch.setattr(ports, "_outgoing_low", lambda: 1024)
    port = ports.free_port()
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))
