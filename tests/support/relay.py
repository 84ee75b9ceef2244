"""A TCP relay on a free loopback port to a server: a proxy or another name in front of it, in effect."""

from __future__ import annotations

import contextlib
import socket
import threading


def pipe(source: socket.socket, sink: socket.socket) -> None:
    """Copy ``source`` to ``sink`` until ``source`` ends, then end ``sink``'s sending side."""
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


class Relay:
    """Relays every connection to ``127.0.0.1:port`` to ``target_port``; ``client_to_target`` and
    ``target_to_client`` (each direction's copy loop) may be overridden."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()

    def client_to_target(self, client: socket.socket, target: socket.socket) -> None:
        pipe(client, target)

    def target_to_client(self, target: socket.socket, client: socket.socket) -> None:
        pipe(target, client)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
                target = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                return
            self._sockets += [client, target]
            threading.Thread(target=self.client_to_target, args=(client, target), daemon=True).start()
            threading.Thread(target=self.target_to_client, args=(target, client), daemon=True).start()
