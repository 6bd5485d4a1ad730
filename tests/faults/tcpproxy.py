"""A TCP proxy that can kill, pause or delay the connection to a server (fault injection).

One thread, one selector. `kill()` closes every connection and the listening socket (clients get
"connection refused", as from a dead server); `revive()` listens again on the same port. `pause()` stops
moving bytes and accepting (clients connect into the backlog and wait, as with a hung server whose kernel
still answers TCP); `resume()` moves them again. `delay(seconds)` holds every chunk that long.
Used by the fault-injection tests and `make bench-faults`; it only ever stops itself.
"""
from __future__ import annotations

import collections
import contextlib
import selectors
import socket
import threading
import time

_CHUNK = 65536


class _Pipe:
    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.peer = {client: upstream, upstream: client}
        self.pending: dict[socket.socket, collections.deque[tuple[float, bytes]]] = {
            client: collections.deque(),
            upstream: collections.deque(),
        }  # socket → chunks to write to it, with when they may go


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int, *, port: int = 0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._pipes: dict[socket.socket, _Pipe] = {}
        self._paused = False
        self._delay = 0.0
        self._stopping = False
        self._actions: list = []
        self._listener: socket.socket | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self.port = port
        self._listen()
        self._thread = threading.Thread(target=self._run, name=f"tcpproxy-{self.port}", daemon=True)
        self._thread.start()

    # --- control (any thread) ----------------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def kill(self) -> None:
        """Refuse connections and drop the open ones, like a dead server."""
        self._call(self._kill)

    def revive(self) -> None:
        self._call(self._listen)

    def pause(self) -> None:
        """Stop moving bytes (and accepting): clients hang, like on a hung server."""
        self._call(lambda: setattr(self, "_paused", True))

    def resume(self) -> None:
        self._call(lambda: setattr(self, "_paused", False))

    def delay(self, seconds: float) -> None:
        self._call(lambda: setattr(self, "_delay", seconds))

    def heal(self) -> None:
        """Back to normal: listening, moving bytes, no delay."""
        self._call(self._heal)

    def close(self) -> None:
        self._call(self._kill)
        self._stopping = True
        self._wake_w.send(b"x")
        self._thread.join(timeout=5)

    # --- the loop ------------------------------------------------------------------------------------

    def _call(self, action) -> None:
        done = threading.Event()
        with self._lock:
            self._actions.append((action, done))
        self._wake_w.send(b"x")
        if not done.wait(timeout=5):
            raise RuntimeError("the proxy's loop did not answer")

    def _heal(self) -> None:
        self._paused, self._delay = False, 0.0
        if self._listener is None:
            self._listen()

    def _listen(self) -> None:
        if self._listener is not None:
            return
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(256)
        listener.setblocking(False)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._selector.register(listener, selectors.EVENT_READ, "accept")

    def _kill(self) -> None:
        if self._listener is not None:
            self._selector.unregister(self._listener)
            self._listener.close()
            self._listener = None
        for sock in list(self._pipes):
            self._drop(sock)

    def _drop(self, sock: socket.socket) -> None:
        pipe = self._pipes.pop(sock, None)
        if pipe is None:
            return
        for end in pipe.peer:
            self._pipes.pop(end, None)
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(end)
            with contextlib.suppress(OSError):
                end.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            end.close()  # with SO_LINGER 0: a reset, as from a host that lost the connection

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        try:
            upstream = socket.create_connection(self.upstream, timeout=2)
        except OSError:
            client.close()
            return
        for end in (client, upstream):
            end.setblocking(False)
            end.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pipe = _Pipe(client, upstream)
        for end in (client, upstream):
            self._pipes[end] = pipe
            self._selector.register(end, selectors.EVENT_READ, "data")

    def _run(self) -> None:
        while not self._stopping:
            timeout = 0.01 if (self._delay or any(p.pending[s] for s, p in self._pipes.items())) else 0.5
            for key, _ in self._selector.select(timeout):
                if key.data == "wake":
                    key.fileobj.recv(4096)
                elif self._paused:
                    continue  # bytes stay in the kernel's buffers; nothing is accepted
                elif key.data == "accept":
                    self._accept()
                else:
                    self._read(key.fileobj)
            with self._lock:
                actions, self._actions = self._actions, []
            for action, done in actions:
                action()
                done.set()
            if not self._paused:
                self._flush()
            if self._paused:
                time.sleep(0.005)  # the selector keeps reporting readable sockets

    def _read(self, sock: socket.socket) -> None:
        pipe = self._pipes.get(sock)
        if pipe is None:
            return
        try:
            data = sock.recv(_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(sock)
            return
        pipe.pending[pipe.peer[sock]].append((time.monotonic() + self._delay, data))

    def _flush(self) -> None:
        now = time.monotonic()
        for sock, pipe in list(self._pipes.items()):
            queue = pipe.pending.get(sock)
            while queue and queue[0][0] <= now:
                _, data = queue[0]
                try:
                    sent = sock.send(data)
                except BlockingIOError:
                    break
                except OSError:
                    self._drop(sock)
                    break
                if sent < len(data):
                    queue[0] = (queue[0][0], data[sent:])
                    break
                queue.popleft()
