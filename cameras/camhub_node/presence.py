"""MQTT presence with adafruit_minimqtt: announce, availability, stats, and the ``set`` topic.

minimqtt has no asyncio support and its calls block (``loop(timeout)`` for at least the socket
timeout, a QoS 1 publish until the PUBACK). So the task calls ``loop()`` only when ``select.poll``
says the MQTT socket is readable, with a small socket timeout, and otherwise just publishes: MQTT
never holds the stream for long. Stats go out with QoS 1 at least every keep_alive / 2: the PUBACK
proves the broker is still there (a half-open connection is noticed) and the traffic doubles as
the keep-alive, so minimqtt's blocking ``ping()`` is never needed. ``availability`` is ``online``
(retained) with the last will ``offline``, and an explicit ``offline`` on clean shutdown. A
connection that fails is closed without DISCONNECT (so the broker publishes the will) and retried
with capped exponential backoff; the stream keeps serving meanwhile. Runs on CircuitPython and
CPython alike.

The node owns its retained ``announce`` and ``availability``: it subscribes to both, and when
another client overwrites them (a cleared announce, a spoofed ``offline``) it publishes its own
again, at most once every REASSERT_MS so that two nodes configured with one id cannot flood the
broker. The broker's ACL should stop such writes in the first place (docs/mqtt-acl.md).
"""

import json
import random
import select

import adafruit_minimqtt.adafruit_minimqtt as minimqtt
from adafruit_ticks import ticks_add, ticks_diff

BACKOFF_MAX_S = 30
MAX_SET_PAYLOAD = 512
REASSERT_MS = 2000
CONFIRM_MS = 2000  # our own retained announce and "online" must come back this soon after subscribing


def new_client(cfg, pool):
    """A minimqtt client for this node (not connected yet): its fixed client id, short socket timeouts."""
    timeout = cfg.mqtt_timeout_s
    return minimqtt.MQTT(
        broker=cfg.mqtt_host, port=cfg.mqtt_port, username=cfg.mqtt_user, password=cfg.mqtt_password,
        client_id="camhub-" + cfg.node_id, keep_alive=cfg.mqtt_keepalive_s, socket_pool=pool,
        socket_timeout=timeout,
        # Also how long a dead socket can spin in minimqtt's exact-read loop: keep it short.
        recv_timeout=max(0.5, 4 * timeout), connect_retries=1, use_binary_mode=True)


def read_set_message(message):
    """A ``set`` message's payload (untrusted bytes): ``(request, None)``, or ``(None, why not)``."""
    if len(message) > MAX_SET_PAYLOAD:
        return None, "payload larger than %d bytes" % MAX_SET_PAYLOAD
    try:
        return json.loads(bytes(message).decode("utf-8")), None
    except (ValueError, UnicodeError):
        return None, "not JSON"


def _release(client):
    """Close the client's socket without DISCONNECT (the public disconnect() cancels the will)."""
    try:
        client._close_socket()
    except Exception:
        pass
    client._is_connected = False


class Presence:
    """One node's MQTT session; ``run()`` is its task, ``shutdown()`` says goodbye."""

    def __init__(self, node):
        self.node = node
        cfg = node.cfg
        self.cfg = cfg
        self.client = None
        self.connected = False
        self.connects = 0
        self.failures = 0
        self.set_applied = 0
        self.set_rejected = 0
        self.last_error = None
        self._announce_due = False
        self._announced = None  # the announce payload last published (bytes)
        self._overwritten = False  # another client wrote our announce or availability
        self._reasserted_at = None
        self._confirm_by = None  # ticks by which our own retained topics must have come back
        self._own_seen = 0  # bit 1: our announce came back, bit 2: our "online" did
        self._leaving = False
        self.reasserts = 0
        self._availability = cfg.topic("availability")
        self._announce = cfg.topic("announce")
        self._stats = cfg.topic("stats")
        self._set = cfg.topic("set")
        # Stats double as the keep-alive (see the module docstring); milliseconds.
        self._stats_every = min(cfg.stats_interval_s * 1000, cfg.mqtt_keepalive_s * 500)

    # ---- connection ------------------------------------------------------------------------

    def _connect(self):
        cfg = self.cfg
        client = new_client(cfg, self.node.platform.pool)
        client.will_set(self._availability, "offline", qos=1, retain=True)
        client.on_message = self._on_message
        self.client = client
        # A fixed client id: a node that restarts takes its old session over, so the broker
        # publishes the old session's will before this one says "online", never after.
        client.connect(session_id="camhub-" + cfg.node_id)
        client.subscribe(self._set, qos=1)
        client.publish(self._availability, "online", retain=True, qos=1)
        self._publish_announce()
        # Our own retained topics: overwritten by someone else, they are re-asserted (_on_message).
        # A retained *empty* payload deletes rather than replaces, so one sent between our publish and
        # this subscribe leaves nothing to deliver: what does not come back in time counts as overwritten.
        self._own_seen = 0
        client.subscribe([(self._announce, 1), (self._availability, 1)])
        self._confirm_by = ticks_add(self.node.clock(), CONFIRM_MS)
        self.connected = True
        self.connects += 1
        self.node.log("MQTT connected to %s:%d" % (cfg.mqtt_host, cfg.mqtt_port))

    def _drop(self):
        self.connected = False
        if self.client is not None:
            _release(self.client)
            self.client = None

    def _publish_announce(self):
        payload = json.dumps(self.node.announce())
        self._announced = payload.encode()
        self.client.publish(self._announce, payload, retain=True, qos=1)
        self._announce_due = False

    def _publish_stats(self):
        self.client.publish(self._stats, json.dumps(self.node.stats()), qos=1)

    # ---- the set topic ---------------------------------------------------------------------

    def _on_message(self, client, topic, message):
        if topic == self._announce:
            if bytes(message) != self._announced:
                self._overwritten = True
            else:
                self._own_seen |= 1
            return
        if topic == self._availability:
            if bytes(message) == b"online":
                self._own_seen |= 2
            elif not self._leaving:
                self._overwritten = True
            return
        if topic != self._set:
            return
        request, error = read_set_message(message)
        if error is None:
            error = self.node.apply_settings(request)
        if error is None:
            self.set_applied += 1
            self._announce_due = True
            self.node.log("set applied: %s" % bytes(message).decode("utf-8", "replace")[:200])
        else:
            self.set_rejected += 1
            self.node.log("set ignored (%s)" % error)

    # ---- the task --------------------------------------------------------------------------

    async def run(self):
        """Connect, serve, and reconnect with capped exponential backoff until the node stops."""
        node = self.node
        backoff = 1
        while not node.stopping:
            if not node.platform.network_ready():
                await node.nap(1000)
                continue
            try:
                self._connect()
                backoff = 1
                await self._serve()
            except Exception as error:  # minimqtt raises MMQTTException, OSError, RuntimeError ...
                self.failures += 1
                self.last_error = "%s: %s" % (type(error).__name__, error)
                node.log("MQTT connection to %s:%d failed (%s); retrying in about %d s"
                         % (self.cfg.mqtt_host, self.cfg.mqtt_port, self.last_error, backoff))
                self._drop()
            if node.stopping:
                break  # the connection stays open for shutdown() to say offline and DISCONNECT on it
            self._drop()
            await node.nap(backoff * 1000 + random.getrandbits(10))  # up to ~1 s of jitter
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _serve(self):
        node = self.node
        client = self.client
        poller = select.poll()
        poller.register(client._sock, select.POLLIN)  # minimqtt exposes no public socket accessor
        timeout = self.cfg.mqtt_timeout_s
        next_stats = ticks_add(node.clock(), min(1000, self._stats_every))
        while not node.stopping:
            if poller.poll(0):
                client.loop(timeout=timeout)
            if self._announce_due:
                self._publish_announce()
            now = node.clock()
            if self._confirm_by is not None and (self._own_seen == 3 or ticks_diff(now, self._confirm_by) >= 0):
                if self._own_seen != 3:
                    self._overwritten = True
                self._confirm_by = None
            if self._overwritten:
                self._reassert(now)
            if ticks_diff(now, next_stats) >= 0:
                self._publish_stats()
                next_stats = ticks_add(next_stats, self._stats_every)
                if ticks_diff(next_stats, now) < 0:
                    next_stats = ticks_add(now, self._stats_every)
            await node.nap(50, slice_ms=50)

    def _reassert(self, now):
        """Publish our announce and ``online`` again (called from the task, never from a callback)."""
        if self._reasserted_at is not None and ticks_diff(now, self._reasserted_at) < REASSERT_MS:
            return
        self._overwritten = False
        self._reasserted_at = now
        self.reasserts += 1
        self.client.publish(self._availability, "online", retain=True, qos=1)
        self._publish_announce()
        self.node.log("announce or availability overwritten by another client; re-asserted")

    def shutdown(self):
        """Publish ``offline`` and disconnect cleanly (best effort)."""
        client = self.client
        if client is None or not self.connected:
            return
        self._leaving = True
        try:
            client.publish(self._availability, "offline", retain=True, qos=1)
            client.disconnect()
        except Exception as error:
            self.node.log("MQTT goodbye failed: %s" % error)
            _release(client)
        self.client = None
        self.connected = False
