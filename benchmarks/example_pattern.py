"""The Adafruit video-stream example's pattern, re-implemented for the benchmarks (CPython and MicroPython).

What ``examples/httpserver_video_stream.py`` in Adafruit_CircuitPython_HTTPServer does: a
``multipart/x-mixed-replace`` ``Response`` subclass per viewer kept in a list; a task that sleeps,
takes a frame and, for each viewer in turn, sends ``bytes(frame)`` (a copy per viewer) with the
library's blocking ``_send_bytes`` (boundary line, part header, JPEG, CRLF), catching only
``BrokenPipeError`` (in the VM ``camhub_node.unixport`` supplies the class, as CircuitPython has it;
its pool raises ``OSError(EPIPE)``, which that clause does not catch); and a task that calls
``server.poll()`` (default 1 s socket timeout). Written in the subset both interpreters run (no
annotations), so the two runtimes measure the same code.
"""

import random


def example_response_class():
    from adafruit_httpserver import Response

    class ExampleStyleStream(Response):
        """One viewer, as the example keeps it: headers on _send, then send_frame per frame."""

        def __init__(self, request):
            super().__init__(request)
            letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
            # The example puts "--" inside the boundary parameter and writes the parameter as the
            # delimiter line (RFC 2046 wants "--" + parameter): kept, it is part of the pattern.
            self.boundary = "--" + "".join(random.choice(letters) for _ in range(16))
            self._headers.setdefault("Content-Type", "multipart/x-mixed-replace; boundary=" + self.boundary)

        def _send(self):
            self._send_headers()

        def send_frame(self, frame):
            data = bytes(frame)  # the per-viewer copy
            conn = self._request.connection
            self._send_bytes(conn, (self.boundary + "\r\n").encode())
            self._send_bytes(conn, b"Content-Type: image/jpeg\r\n\r\n")
            self._send_bytes(conn, data)
            self._send_bytes(conn, b"\r\n")

        def close(self):
            self._close_connection()

    return ExampleStyleStream


def serve_example(pool, camera, port, fps):
    """The example's server loop on ``pool`` (CPython's socket module, or the VM's socket pool)."""
    import asyncio

    from adafruit_httpserver import Server

    stream_class = example_response_class()
    server = Server(pool)
    viewers = []

    @server.route("/stream")
    def stream(request):
        response = stream_class(request)
        viewers.append(response)
        return response

    async def send_frames():
        while True:
            await asyncio.sleep(1 / fps)
            frame = camera.take()
            for viewer in list(viewers):
                try:
                    viewer.send_frame(frame)
                except BrokenPipeError:
                    viewer.close()
                    viewers.remove(viewer)

    async def handle_requests():
        server.start("127.0.0.1", port)
        while True:
            await asyncio.sleep(0)
            server.poll()

    async def main():
        await asyncio.gather(asyncio.create_task(send_frames()), asyncio.create_task(handle_requests()))

    asyncio.run(main())
