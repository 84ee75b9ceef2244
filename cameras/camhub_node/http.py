"""The node's HTTP front: ``/stream``, ``/snapshot.jpg`` and ``/status`` with adafruit_httpserver.

``Server.poll()`` accepts without blocking but then handles one whole request synchronously, with
the server's socket timeout on every receive. So this module bounds what a request may cost the
node: a small socket timeout (a client that connects and says nothing costs that once), a cap on
the request head (431) and a deadline for the whole head (408), no request bodies (413), garbage
gets 400, unknown paths 404 (the library's own answer) -- each counted by reason. ``/stream`` sends
only the response head and hands the socket to the fan-out, so the server never loops in a handler
(the library's ``SSEResponse`` keeps a connection open the same way). While a request is slow to
arrive, the node's capture and fan-out keep running (``NodeServer.idle``), so a silent or trickling
client does not freeze the stream. Runs on CircuitPython and CPython alike.
"""

import errno
import json
import select

from adafruit_httpserver import GET, JSONResponse, Request, Response, Server
from adafruit_ticks import ticks_add, ticks_diff

from camhub_node import mjpeg

MAX_HEAD = 4096  # bytes of request line + headers; browsers send well under 2 KB to a camera
RETRY_AFTER_S = 5
DRAIN_MAX = 65536  # bytes read and discarded after a rejection
IDLE_SLICE_MS = 5
_TIMEOUTS = (errno.ETIMEDOUT, errno.EAGAIN, getattr(errno, "EWOULDBLOCK", errno.EAGAIN))
_STREAM_HEAD = mjpeg.response_head(b"Access-Control-Allow-Origin: *\r\n")
_REASONS = {400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
            413: "Content Too Large",
            431: "Request Header Fields Too Large", 500: "Internal Server Error", 503: "Service Unavailable"}


class Rejected(Exception):
    """A request answered with a 4xx before routing; ``reason`` names why (for the counters)."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def _is_timeout(error):
    return isinstance(error, OSError) and (type(error).__name__ == "TimeoutError" or error.errno in _TIMEOUTS)


class NodeServer(Server):
    """``adafruit_httpserver.Server`` with a bounded request reader."""

    def __init__(self, socket_source, timeout_s, clock, on_reject, idle=None):
        super().__init__(socket_source)
        self.socket_timeout = timeout_s  # the library's, in seconds
        self._timeout_ms = int(timeout_s * 1000 + 0.5)
        self._clock = clock  # integer ms ticks
        self._on_reject = on_reject
        self.idle = idle  # called every few ms while a request is slow to arrive
        # The whole head must arrive within a few socket timeouts: a client trickling bytes
        # would otherwise hold poll() (and so the whole node) for as long as it likes.
        self._deadline_ms = max(4 * self._timeout_ms, 500)

    def _reject(self, sock, status, reason, drain=False):
        body = ('{"error": "%s"}' % reason).encode()
        head = "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % (
            status, _REASONS.get(status, "Error"), len(body))
        try:
            sock.send(head.encode() + body)
            if drain:
                self._drain(sock)
        except OSError:
            pass
        raise Rejected(reason)

    def _drain(self, sock):
        """Read what the client already sent (bounded), so closing sends FIN, not RST: with unread
        input the kernel resets the connection and the client may never see the answer."""
        buf = self._buffer
        got = 0
        started = self._clock()
        while got < DRAIN_MAX and ticks_diff(self._clock(), started) < self._deadline_ms:
            try:
                n = sock.recv_into(buf, len(buf))
            except OSError:
                return
            if n == 0:
                return
            got += n

    def _wait_readable(self, sock):
        """Wait up to the socket timeout for request bytes, keeping the node's I/O going meanwhile.

        poll() handles a request synchronously, so without this a client that connects and says
        nothing (or trickles) would freeze capture and fan-out for that long.
        """
        if self.idle is None:
            return True  # the blocking recv with the socket timeout does the waiting
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        end = ticks_add(self._clock(), self._timeout_ms)
        while not poller.poll(IDLE_SLICE_MS):
            try:
                self.idle()
            except Exception:
                pass  # the node's own tasks report their errors; a request must not fail here
            if ticks_diff(self._clock(), end) >= 0:
                return False
        return True

    def _read_head(self, sock):
        buf = self._buffer
        data = b""
        started = self._clock()
        while True:
            try:
                if not self._wait_readable(sock):
                    raise OSError(errno.ETIMEDOUT, "timed out")
                n = sock.recv_into(buf, len(buf))
            except OSError as error:
                if not _is_timeout(error):
                    raise
                if not data:
                    return None  # said nothing within the socket timeout: just close
                self._reject(sock, 408, "request_timeout")
            if n == 0:
                return None  # closed before finishing the request
            data += bytes(buf[:n])
            end = data.find(b"\r\n\r\n")
            if end >= 0:
                return data
            if len(data) > MAX_HEAD:
                self._reject(sock, 431, "head_too_large", True)
            if ticks_diff(self._clock(), started) > self._deadline_ms:
                self._reject(sock, 408, "request_timeout")

    def _receive_request(self, sock, client_address):
        data = self._read_head(sock)
        if data is None:
            return None
        if data.find(b"\r\n\r\n") > MAX_HEAD:
            self._reject(sock, 431, "head_too_large", True)
        end = data.find(b"\r\n\r\n")
        if data.find(b"\r\n") == end:
            # A request line without headers (valid HTTP/1.0): the library cannot parse that.
            data = data[:end] + b"\r\nX-No-Headers: 1" + data[end:]
        try:
            request = Request(self, sock, client_address, data)
        except Exception:
            self._reject(sock, 400, "bad_request")
        length = request.headers.get("Content-Length")
        if (length and length.strip() != "0") or request.headers.get("Transfer-Encoding"):
            self._reject(sock, 413, "body_not_accepted", True)
        return request

    def _find_handler(self, method, path):
        handler = super()._find_handler(method, path)
        if handler is not None:
            return handler
        known = any(route.matches(GET, path)[0] for route in self._routes)
        status, reason = (405, "method_not_allowed") if known else (404, "not_found")

        def refuse(request):
            self._on_reject(reason)
            return _error(request, status, reason, {"Allow": "GET"} if known else None)
        return refuse


class _StreamStart(Response):
    """Sends the MJPEG response head, then gives the socket to the fan-out (never closes it)."""

    def __init__(self, request, fanout, max_fps):
        super().__init__(request)
        self._fanout = fanout
        self._max_fps = max_fps

    def _send(self):
        request = self._request
        conn = request.connection
        # The head is ~200 bytes: it fits an empty socket buffer, so this blocking send is instant.
        self._send_bytes(conn, _STREAM_HEAD)
        agent = request.headers.get("User-Agent") or ""
        peer = "%s:%s" % (request.client_address[0], request.client_address[1])
        self._fanout.add(conn, peer, agent[:100], self._max_fps)


def _error(request, status, reason, headers=None):
    return Response(request, json.dumps({"error": reason}), status=(status, _REASONS.get(status, "Error")),
                    headers=headers, content_type="application/json")


class HttpFront:
    """Routes and the poll loop's bookkeeping; ``node`` supplies frames, status and counters."""

    def __init__(self, node, socket_source, timeout_s):
        self.node = node
        self.server = NodeServer(socket_source, timeout_s, node.clock, self.count, node.service_io)
        self.rejected = {}  # reason -> count
        self.requests = 0
        self.errors = 0
        self._add_routes()

    def count(self, reason):
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        self.node.log("HTTP request rejected: %s" % reason)

    def _guard(self, handler):
        def guarded(request):
            self.requests += 1
            try:
                return handler(request)
            except Exception as error:  # a handler bug answers 500 and is logged, never kills the node
                self.errors += 1
                self.node.log_error("HTTP handler for %s failed" % request.path, error)
                return _error(request, 500, "internal_error")
        return guarded

    def _add_routes(self):
        server = self.server
        server.route("/stream", GET)(self._guard(self._stream))
        server.route("/snapshot.jpg", GET)(self._guard(self._snapshot))
        server.route("/status", GET)(self._guard(self._status))
        server.route("/", GET)(self._guard(self._index))

    def _stream(self, request):
        fanout = self.node.fanout
        if fanout.full():
            self.count("over_capacity")
            return _error(request, 503, "this node serves at most %d stream viewers" % fanout.max_clients,
                          {"Retry-After": str(RETRY_AFTER_S)})
        max_fps = 0
        raw = request.query_params.get("fps")
        if raw:
            try:
                max_fps = max(0, min(int(raw), 60))
            except ValueError:
                self.count("bad_query")
                return _error(request, 400, "fps must be a whole number")
        return _StreamStart(request, fanout, max_fps)

    def _snapshot(self, request):
        frame = self.node.pool.latest
        if frame is None:
            return _error(request, 503, "no frame captured yet", {"Retry-After": "1"})
        # The body is a view into the pool buffer: poll() sends it before the camera task can
        # run again, and the latest frame's buffer is never reused while it is the latest.
        return Response(request, frame.jpeg(), content_type="image/jpeg", headers={
            "Cache-Control": "no-cache, no-store", "X-Frame-Seq": str(frame.seq),
            "X-Timestamp": "%d.%06d" % (frame.ts_s, frame.ts_us), "Access-Control-Allow-Origin": "*"})

    def _status(self, request):
        return JSONResponse(request, self.node.status(), headers={"Cache-Control": "no-cache"})

    def _index(self, request):
        return JSONResponse(request, {"id": self.node.cfg.node_id, "stream": "/stream",
                                      "snapshot": "/snapshot.jpg", "status": "/status"})

    def start(self, host, port):
        try:
            self.server.start(host, port)
        except OSError as error:
            # MicroPython-family ports (a board's, the Unix ports) name only the code: "[Errno 98] EADDRINUSE".
            if error.args and error.args[0] == errno.EADDRINUSE:
                raise OSError(errno.EADDRINUSE, "port %d is in use (CAMHUB_HTTP_PORT)" % port) from None
            raise

    def poll(self):
        """One ``Server.poll()``; True if a connection was handled. Never raises."""
        try:
            result = self.server.poll()
        except Rejected as rejected:
            self.count(rejected.reason)
            return True
        except OSError:
            # The client went away or stopped reading mid-answer (poll() already closed it).
            self.count("client_io_error")
            return True
        except Exception as error:
            self.errors += 1
            self.node.log_error("HTTP request failed", error)
            return True
        if result == "connection_timed_out":
            self.count("silent_client")  # connected, then closed or said nothing in time
        return result != "no_request"

    def stop(self):
        try:
            self.server.stop()
        except Exception:
            pass
