"""A TCP man-in-the-middle for a board's serial socket that damages the byte stream on purpose.

    with FaultProxy(board_url, to_board=drop_every(3000), to_host=garbage_every(2000)) as url:
        with SerialLink(url) as link: ...

Every byte really travels host → proxy → board (and back) through sockets; a fault function sees each
chunk read from one side and returns what is forwarded instead (fewer bytes, extra bytes). The faults
are deterministic (byte counters, a seeded RNG), so a failing test replays.
"""

from __future__ import annotations

import random
import select
import socket
import threading
from collections.abc import Callable

Fault = Callable[[bytes], bytes]


def drop_every(period: int, count: int = 1, start: int = 0) -> Fault:
    """Drops ``count`` bytes every ``period`` bytes (from byte ``start`` on)."""
    seen = 0

    def f(data: bytes) -> bytes:
        nonlocal seen
        out = bytearray()
        for b in data:
            k = seen - start
            seen += 1
            if k >= 0 and k % period < count:
                continue
            out.append(b)
        return bytes(out)

    return f


def garbage_every(period: int, length: int = 7, seed: int = 0) -> Fault:
    """Inserts ``length`` random bytes (0x00 delimiters included) every ``period`` bytes."""
    rng = random.Random(seed)
    seen = 0

    def f(data: bytes) -> bytes:
        nonlocal seen
        out = bytearray()
        for b in data:
            if seen and seen % period == 0:
                out += bytes(rng.choice((0, rng.randrange(256))) for _ in range(length))
            out.append(b)
            seen += 1
        return bytes(out)

    return f


class FaultProxy:
    def __init__(self, upstream_url: str, *, to_board: Fault | None = None, to_host: Fault | None = None) -> None:
        host, port = upstream_url.removeprefix("socket://").rsplit(":", 1)
        self.upstream = (host, int(port))
        self.to_board = to_board
        self.to_host = to_host
        self._srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._srv.bind(("127.0.0.1", 0))
        self._srv.listen(1)
        self.url = f"socket://127.0.0.1:{self._srv.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.bytes_in = {"to_board": 0, "to_host": 0}
        self.bytes_out = {"to_board": 0, "to_host": 0}

    def _run(self) -> None:
        self._srv.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            board = socket.create_connection(self.upstream)
            for s in (client, board):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._pump(client, board)
            client.close()
            board.close()

    def _pump(self, client: socket.socket, board: socket.socket) -> None:
        route = {client: (board, self.to_board, "to_board"), board: (client, self.to_host, "to_host")}
        while not self._stop.is_set():
            ready, _, _ = select.select([client, board], [], [], 0.1)
            for s in ready:
                try:
                    data = s.recv(65536)
                except OSError:
                    return
                if not data:
                    return  # one side closed: end this connection (the next open gets a new one)
                dst, fault, name = route[s]
                self.bytes_in[name] += len(data)
                out = fault(data) if fault is not None else data
                self.bytes_out[name] += len(out)
                if out:
                    try:
                        dst.sendall(out)
                    except OSError:
                        return

    def __enter__(self) -> str:
        self._thread.start()
        return self.url

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._srv.close()
        self._thread.join(5)
