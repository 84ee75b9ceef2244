"""The node's frame fan-out: non-blocking sockets, ``select.poll`` and ``subscriber.Subscriber``.

The stream handler sends only the response head and hands the socket over (``add``). From then on
this module owns it: every viewer has at most one frame in flight, sent straight from the frame
pool's buffer with non-blocking ``send`` calls that continue from an offset; a viewer is given the
newest frame only when its previous one is fully sent (``Subscriber`` counts the frames in between
as dropped). So one slow viewer never holds up the others: a socket that cannot take bytes is simply
not written to until ``poll`` says it is writable. Every ``OSError`` is handled: EAGAIN means wait,
anything else ends the viewer with a reason (``reset``/``closed``), as do end-of-file on read and no
progress for ``write_timeout`` milliseconds (``write_timeout``; times are ``ticks_ms`` integers).
While the camera is quiet the last frame is re-sent now and then, so a dead peer surfaces. The send
path allocates nothing frame-sized: a part is a memoryview slice of a preallocated buffer. Runs on
CircuitPython and CPython alike.
"""

import errno
import select

from camhub_node import subscriber
from camhub_node.subscriber import Subscriber

KEEPALIVE_MS = 2000  # re-send the last frame when the camera has been quiet this long
HISTORY = 16  # recent disconnects kept for /status

_EAGAIN = (errno.EAGAIN, getattr(errno, "EWOULDBLOCK", errno.EAGAIN))
# Errors that mean the peer went away in an orderly way (or the socket is already gone).
_CLOSED = (getattr(errno, "EPIPE", 32), errno.ENOTCONN, getattr(errno, "EBADF", 9))
_POLLIN = select.POLLIN
_POLLOUT = select.POLLOUT
_POLLGONE = select.POLLHUP | select.POLLERR


def reason_for(error):
    """The DESIGN.md disconnect reason for an OSError raised by send/recv."""
    code = error.errno if error.args else None
    if code in _CLOSED:
        return subscriber.CLOSED
    return subscriber.RESET


class _Client:
    """A viewer's socket and poll keys next to its shared ``Subscriber`` state."""

    def __init__(self, sock, sub):
        self.sock = sock
        self.sub = sub
        self.fd = sock.fileno() if hasattr(sock, "fileno") else None
        self.closed = False
        self.errno = None
        self.bytes_in = 0


class Fanout:
    """All stream viewers of this node; ``publish`` a frame, call ``pump`` often."""

    def __init__(self, max_clients, write_timeout_ms, clock, log=None, prepare=None, uptime_s=None):
        self.max_clients = max_clients
        self.prepare = prepare  # the platform's per-socket setup (e.g. its send buffer size)
        self.write_timeout = write_timeout_ms
        self.clock = clock  # integer ms ticks (adafruit_ticks.ticks_ms)
        self.uptime_s = uptime_s  # the node's uptime in whole seconds, for the disconnect history
        self.log = log
        self.latest = None
        self.disconnects = []  # newest last, at most HISTORY
        self.connections = 0
        self.departed_dropped = 0
        self._clients = []
        self._by_key = {}  # fd (CPython's poll) and socket object (CircuitPython's poll) -> client
        self._poll = select.poll()
        self._scratch = bytearray(256)  # read and discarded: viewers have nothing to say
        self._next_id = 1

    # ---- viewers ---------------------------------------------------------------------------

    @property
    def count(self):
        return len(self._clients)

    def full(self):
        return len(self._clients) >= self.max_clients

    def add(self, sock, peer, user_agent="", max_fps=0):
        """Take over ``sock`` (response head already sent); it gets the latest frame at once."""
        now = self.clock()
        sock.setblocking(False)
        if self.prepare is not None:
            self.prepare(sock)
        sub = Subscriber("v%d" % self._next_id, peer, user_agent, now, max_fps)
        self._next_id += 1
        self.connections += 1
        client = _Client(sock, sub)
        self._poll.register(sock, _POLLIN)
        self._by_key[sock] = client
        if client.fd is not None:
            self._by_key[client.fd] = client
        self._clients.append(client)
        if self.log:
            self.log("viewer %s connected from %s (%s)" % (sub.id, peer, user_agent or "-"))
        latest = self.latest
        if latest is not None and sub.publish(latest.seq, now):
            self._start(client, latest, now)
        return sub

    def close_all(self, reason):
        """End every viewer with ``reason`` (e.g. server_shutdown)."""
        for client in self._clients:
            if not client.closed:
                self._drop(client, reason, self.clock())
        self._clients = []

    # ---- frames ----------------------------------------------------------------------------

    def publish(self, frame):
        """``frame`` (a frames.Frame) is the newest; idle viewers start on it right away."""
        self.latest = frame
        now = self.clock()
        for client in self._clients:
            if not client.closed and client.sub.publish(frame.seq, now):
                self._start(client, frame, now)

    def pump(self):
        """Send what the sockets take, notice departures and stalls; True while frames are in flight."""
        if not self._clients:
            return False
        now = self.clock()
        for event in self._poll.poll(0):
            client = self._by_key.get(event[0])
            if client is None or client.closed:
                continue
            flags = event[1]
            if flags & _POLLOUT and client.sub.frame is not None:
                self._send(client, now)
            if not client.closed and flags & (_POLLIN | _POLLGONE):
                self._read(client, flags, now)
        busy = False
        gone = False
        latest = self.latest
        for client in self._clients:
            if client.closed:
                gone = True
                continue
            sub = client.sub
            if sub.frame is None:
                if latest is not None and (sub.ready(now) or sub.keepalive_due(now, KEEPALIVE_MS)):
                    self._start(client, latest, now)
            elif sub.stalled(now, self.write_timeout):
                self._drop(client, subscriber.WRITE_TIMEOUT, now)
                gone = True
            if not client.closed and sub.frame is not None:
                busy = True
        if gone:
            self._clients = [c for c in self._clients if not c.closed]
        return busy

    # ---- I/O -------------------------------------------------------------------------------

    def _start(self, client, frame, now):
        frame.refs += 1
        client.sub.begin(frame, frame.seq, frame.end - frame.start, now)
        self._poll.modify(client.sock, _POLLIN | _POLLOUT)
        self._send(client, now)

    def _send(self, client, now):
        sub = client.sub
        frame = sub.frame
        while frame is not None:
            start = frame.start + sub.offset
            try:
                sent = client.sock.send(frame.view[start:frame.end])
            except OSError as error:
                if error.errno in _EAGAIN:
                    return
                client.errno = error.errno
                self._drop(client, reason_for(error), now)
                return
            if not sent or sent < 0:
                return
            partial = sent < frame.end - start
            if not sub.advance(sent, now):
                if partial:
                    return  # the socket buffer is full: wait until poll says writable
                continue
            frame.refs -= 1
            latest = self.latest
            if latest is not None and sub.ready(now):
                frame = latest
                frame.refs += 1
                sub.begin(frame, frame.seq, frame.end - frame.start, now)
            else:
                frame = None
                self._poll.modify(client.sock, _POLLIN)

    def _read(self, client, flags, now):
        try:
            n = client.sock.recv_into(self._scratch, len(self._scratch))
        except OSError as error:
            if error.errno in _EAGAIN:
                if flags & _POLLGONE:
                    self._drop(client, subscriber.RESET, now)
                return
            client.errno = error.errno
            self._drop(client, reason_for(error), now)
            return
        if n == 0:
            self._drop(client, subscriber.CLOSED, now)
        else:
            client.bytes_in += n

    def _drop(self, client, reason, now):
        if client.closed:
            return
        client.closed = True
        sub = client.sub
        if sub.frame is not None:
            sub.frame.refs -= 1
        sub.close(reason)
        try:
            self._poll.unregister(client.sock)
        except (OSError, KeyError, ValueError):
            pass
        try:
            client.sock.close()
        except OSError:
            pass
        self._by_key.pop(client.sock, None)
        if client.fd is not None:
            self._by_key.pop(client.fd, None)
        self.departed_dropped += sub.frames_dropped
        record = sub.as_dict(now)
        if self.uptime_s is not None:
            record["closed_at_uptime_s"] = self.uptime_s()
        if client.errno is not None:
            record["errno"] = client.errno
        self.disconnects.append(record)
        if len(self.disconnects) > HISTORY:
            self.disconnects.pop(0)
        if self.log:
            self.log("viewer %s (%s) left: %s after %d frames, %d dropped"
                     % (sub.id, sub.peer, reason, sub.frames_sent, sub.frames_dropped))

    # ---- reporting -------------------------------------------------------------------------

    def dropped_total(self):
        return self.departed_dropped + sum(c.sub.frames_dropped for c in self._clients)

    def viewers(self):
        now = self.clock()
        return [c.sub.as_dict(now) for c in self._clients if not c.closed]
