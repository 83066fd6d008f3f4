"""A TCP proxy that can partition the network between a dialer process and a provider.

While partitioned it accepts connections and moves no bytes either way, as a cut link would.
When healed, each held connection is judged as TCP would judge it: one its client closed
normally (FIN: the kernel would still be retransmitting the request and its FIN) is delivered;
one its client aborted (RST, SO_LINGER 0) is dropped, since the data it had not yet got
through dies with the connection. On loopback the proxy's kernel has already taken those bytes,
so the proxy reads each connection's TCP state (TCP_INFO) to tell the two apart.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

TCP_ESTABLISHED, TCP_CLOSE_WAIT = 1, 8


def tcp_state(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]


class PartitionProxy:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.partitioned = threading.Event()
        self.healed = threading.Condition()
        self.dropped = 0
        self.delivered_late = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closing = False

    def partition(self) -> None:
        self.partitioned.set()

    def heal(self) -> None:
        with self.healed:
            self.partitioned.clear()
            self.healed.notify_all()

    def serve(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        held = self.partitioned.is_set()
        with self.healed:
            while self.partitioned.is_set() and not self._closing:
                self.healed.wait(0.2)
        if held:
            if tcp_state(client) not in (TCP_ESTABLISHED, TCP_CLOSE_WAIT):
                self.dropped += 1  # aborted by its client while the link was cut: lost
                client.close()
                return
            self.delivered_late += 1
        try:
            upstream = socket.create_connection(self.target)
        except OSError:
            client.close()
            return
        threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
        threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        """Copy one direction; a request chunk read while partitioned waits for the heal, and
        is dropped if its client aborted meanwhile."""
        try:
            while chunk := source.recv(65536):
                if from_client and self.partitioned.is_set():
                    with self.healed:
                        while self.partitioned.is_set() and not self._closing:
                            self.healed.wait(0.2)
                    if tcp_state(source) not in (TCP_ESTABLISHED, TCP_CLOSE_WAIT):
                        self.dropped += 1
                        break
                sink.sendall(chunk)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            if from_client:
                for sock in (source, sink):
                    sock.close()

    def close(self) -> None:
        self._closing = True
        self.heal()
        self._listener.close()


@contextmanager
def partition_proxy(target_url: str) -> Iterator[PartitionProxy]:
    host, _, port = target_url.removeprefix("http://").partition(":")
    proxy = PartitionProxy((host, int(port)))
    thread = threading.Thread(target=proxy.serve, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.close()
