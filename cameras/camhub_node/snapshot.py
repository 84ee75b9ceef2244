"""Snapshot mode (``CAMHUB_MODE = "snapshot"``): a battery camera wakes, pushes one picture and sleeps.

One wake, from the top of ``code.py`` to the deep sleep, in this order (README "Battery cameras"):

1. Why it woke: ``alarm.wake_alarm`` (a ``TimeAlarm``: ``timer``, a ``PinAlarm``: ``pin``, ``None``:
   ``boot``) and what the last wake left in ``alarm.sleep_memory`` (``SleepState``).
2. Wi-Fi (the platform's ``start``; bounded in snapshot mode), then MQTT with a clean session and
   no last will: a sleeping node is not an offline node, and a node that dies asleep sends no will
   anyway; the hub judges it missing when it misses its wakes.
3. One SUBSCRIBE to ``set`` and ``availability``, then ``online`` (retained): a settings change waits
   for the node as a *retained* ``set`` (the hub keeps it there until the node applies it). A broker
   sends a subscription's retained messages as it takes the SUBSCRIBE, before it takes the next
   packet, so once our own ``online`` is back, any ``set`` has arrived. It is applied, kept in sleep
   memory for the wakes to come, and cleared (an empty retained message) before the announce says
   the new values.
4. The camera (only now: after Wi-Fi, circuitpython#9241, and with the new settings), a few frames
   thrown away while the exposure settles (``CAMHUB_WARMUP_FRAMES``), then one JPEG.
5. ``announce`` (retained: ``mode``, ``interval_s``, ``wake``, ``battery_v``), ``stats`` (what this
   wake took so far, and the whole of the last one), and last the picture on ``snapshot`` (retained,
   QoS 1) straight from the camera's buffer: its PUBACK says the broker has everything, in order.
6. DISCONNECT, the sleep memory, and ``alarm.exit_and_deep_sleep_until_alarms`` with a
   ``TimeAlarm`` ``CAMHUB_SNAPSHOT_INTERVAL_S`` ahead and, if ``CAMHUB_WAKE_PIN`` is set, a
   ``PinAlarm``. The ESP32-S3 wakes on a pin *level*, so a pin still at its wake level (a PIR sensor
   holds its output high for seconds) is not armed: the board sleeps ``PIN_HOLDOFF_S`` on the timer
   instead of waking again at once.

Any failure (no Wi-Fi, no broker, no picture) is logged and counted in sleep memory, and the node
sleeps until its next wake all the same: a battery camera never stays up retrying. Synchronous code,
no asyncio: one thing at a time is all a wake does. Runs on CircuitPython and CPython alike (the PC
platforms hand it ``simalarm``, a stand-in for the ``alarm`` module).
"""

import json
import time

from adafruit_ticks import ticks_add, ticks_diff

from camhub_node import __version__
from camhub_node.config import CONTROLS, FRAME_SIZES, ConfigError, read_set
from camhub_node.presence import new_client, read_set_message

SETTLE_MS = 2000  # our own retained "online" must be back this soon after subscribing
PIN_HOLDOFF_S = 30  # a wake pin still active at sleep time: sleep this long on the timer instead
CAPTURE_TRIES = 3
TAKE_TIMEOUT_S = 1.0


def _u32(data, at):
    return (data[at] << 24) | (data[at + 1] << 16) | (data[at + 2] << 8) | data[at + 3]


def _put_u32(data, at, value):
    value &= 0xFFFFFFFF
    for i in range(4):
        data[at + i] = (value >> (24 - 8 * i)) & 0xFF


class SleepState:
    """What one wake leaves the next in ``alarm.sleep_memory`` (zeroed on power-on, kept across deep
    sleep): the wake count, how long the last wake took, failed wakes in a row, and the settings a
    ``set`` changed. Layout (bytes): 0-2 ``ch1``, 3-6 wakes, 7-10 the last wake's ms, 11 failures in a
    row, 12 fps, 13 JPEG quality, 14 the frame size's name length, 15-30 its name (0: not changed)."""

    MAGIC = b"ch1"
    SIZE = 31

    def __init__(self, memory):
        self.memory = memory
        data = bytes(memory[0:self.SIZE])
        valid = data[0:3] == self.MAGIC
        self.wakes = _u32(data, 3) if valid else 0
        self.last_awake_ms = _u32(data, 7) if valid else None
        self.failures = data[11] if valid else 0
        self.fps = data[12] if valid and data[12] else None
        self.quality = data[13] if valid and data[13] else None
        n = data[14] if valid else 0
        self.frame_size = data[15:15 + n].decode() if 0 < n <= 16 else None

    def apply(self, cfg):
        """The settings a ``set`` changed on an earlier wake, over settings.toml's."""
        if self.fps:
            cfg.fps = self.fps
        if self.quality:
            cfg.jpeg_quality = self.quality
        if self.frame_size in FRAME_SIZES:
            cfg.frame_size = self.frame_size

    def save(self):
        data = bytearray(self.SIZE)
        data[0:3] = self.MAGIC
        _put_u32(data, 3, self.wakes)
        _put_u32(data, 7, self.last_awake_ms or 0)
        data[11] = min(self.failures, 255)
        data[12] = self.fps or 0
        data[13] = self.quality or 0
        name = (self.frame_size or "").encode()[:16]
        data[14] = len(name)
        data[15:15 + len(name)] = name
        self.memory[0:self.SIZE] = data


def wake_reason(alarm):
    """``timer``, ``pin`` or ``boot`` (power-on, reset, a new code.py): what ``alarm.wake_alarm`` says."""
    woke = alarm.wake_alarm
    if woke is None:
        return "boot"
    if isinstance(woke, alarm.pin.PinAlarm):
        return "pin"
    return "timer"


def publish_view(client, topic, view, retain, clock):
    """Publish ``view`` (a JPEG in the camera's buffer) at QoS 1 and wait for its PUBACK, without
    copying it: minimqtt's ``publish()`` takes only ``bytes``. The packet is the one ``publish()``
    writes (MQTT 3.1.1 section 3.3: fixed header, remaining length, topic, packet id, payload), and
    the PUBACK wait is its loop, bounded by the client's ``recv_timeout``."""
    topic_bytes = topic.encode("utf-8")
    header = bytearray([0x32 | (1 if retain else 0)])  # PUBLISH, QoS 1
    left = 2 + len(topic_bytes) + 2 + len(view)
    while True:
        byte = left % 128
        left //= 128
        header.append((byte | 0x80) if left else byte)
        if not left:
            break
    pid = client._pid + 1 if client._pid < 0xFFFF else 1
    client._pid = pid
    header.append(len(topic_bytes) >> 8)
    header.append(len(topic_bytes) & 0xFF)
    header.extend(topic_bytes)
    header.append(pid >> 8)
    header.append(pid & 0xFF)
    client._send_bytes(header)
    client._send_bytes(view)
    deadline = ticks_add(clock(), int(client._recv_timeout * 1000))
    while True:
        op = client._wait_for_msg()
        if op == 0x40:
            client._sock_exact_recv(1)  # the remaining length: 2
            ack = client._sock_exact_recv(2)
            if (ack[0] << 8 | ack[1]) == pid:
                return
        elif op is None and ticks_diff(clock(), deadline) > 0:
            raise OSError("no PUBACK for the picture within %g s" % client._recv_timeout)


def no_delay(sock, pool):
    """Nagle's algorithm off for a wake's few small packets: with it, each packet minimqtt writes in
    pieces (SUBSCRIBE, the picture's header and body) waits for the ACK of the piece before, which the
    broker delays (40 ms on Linux, more on lwIP). Measured on the MicroPython VM: the MQTT part of a
    wake went from about 90 ms to about 10 ms (benchmarks/battery_wake.py)."""
    try:
        sock.setsockopt(getattr(pool, "IPPROTO_TCP", 6), getattr(pool, "TCP_NODELAY", 1), 1)
    except (AttributeError, OSError, TypeError, ValueError):
        pass  # a stack without the option: slower, not wrong


class Wake:
    """One wake of a battery camera; ``run()`` ends in deep sleep and does not return."""

    def __init__(self, platform, cfg):
        self.platform = platform
        self.cfg = cfg
        self.clock = platform.ticks_ms
        self.began = self.clock()
        self.alarm = platform.alarm()
        self.reason = wake_reason(self.alarm)
        self.state = SleepState(self.alarm.sleep_memory)
        self.state.apply(cfg)
        self.phases = {}  # name -> ms, in order
        self._mark = self.began
        self.client = None
        self.camera = None
        self.battery_v = None
        self.set_applied = 0
        self.set_rejected = 0
        self._set = None  # the last set message that arrived
        self._own_online = False
        self.sent = 0  # payload bytes published (the picture's included)

    # ---- logging and timing ----------------------------------------------------------------

    def log(self, message):
        self.platform.log(self.cfg.node_id, message)

    def _phase(self, name):
        now = self.clock()
        self.phases[name] = ticks_diff(now, self._mark)
        self._mark = now

    def awake_ms(self):
        return ticks_diff(self.clock(), self.began)

    # ---- the wake --------------------------------------------------------------------------

    def run(self):
        cfg = self.cfg
        self.state.wakes += 1
        self.battery_v = self.platform.battery_v()  # before Wi-Fi: the resting voltage, no radio load
        self.log("awake (%s, wake %d); one %s picture, then sleep %d s"
                 % (self.reason, self.state.wakes, cfg.frame_size, cfg.snapshot_interval_s))
        try:
            self._wake()
            self.state.failures = 0
        except Exception as error:  # whatever went wrong, the battery must not drain retrying it
            self.state.failures += 1
            self.platform.log_exception(cfg.node_id, "this wake failed (%d in a row); sleeping all the same"
                                        % self.state.failures, error)
        finally:
            self._goodbye()
        self.state.last_awake_ms = self.awake_ms()
        self.state.save()
        self._sleep()

    def _wake(self):
        cfg = self.cfg
        if not cfg.mqtt_host:
            raise RuntimeError("CAMHUB_MQTT_HOST is not set: a snapshot camera has nowhere to send its picture")
        self.platform.start(cfg)  # Wi-Fi (on a board)
        self._phase("network")
        self._connect()
        self._phase("mqtt")
        self.camera = self.platform.camera(cfg)
        for _ in range(cfg.warmup_frames):  # exposure and white balance settle over the first frames
            self.camera.take(TAKE_TIMEOUT_S)
        self._phase("warmup")
        view = None
        for _ in range(CAPTURE_TRIES):
            view = self.camera.take(TAKE_TIMEOUT_S)
            if view is not None and len(view):
                break
        if view is None or not len(view):
            raise RuntimeError("the camera gave no picture in %d tries" % CAPTURE_TRIES)
        self._phase("capture")
        client = self.client
        announce = json.dumps(self.announce())
        client.publish(cfg.topic("announce"), announce, retain=True, qos=0)
        stats = json.dumps(self.stats(len(view)))
        client.publish(cfg.topic("stats"), stats, qos=0)
        publish_view(client, cfg.topic("snapshot"), view, True, self.clock)  # last: its PUBACK covers the rest
        self.sent += len(announce) + len(stats) + len(view)
        self._phase("publish")
        self.log("picture sent (%d bytes); awake %d ms" % (len(view), self.awake_ms()))

    def _connect(self):
        cfg = self.cfg
        client = new_client(cfg, self.platform.pool)
        client.on_message = self._on_message
        self.client = client
        client.connect(clean_session=True, session_id="camhub-" + cfg.node_id)
        no_delay(client._sock, self.platform.pool)
        client.subscribe([(cfg.topic("set"), 1), (cfg.topic("availability"), 1)])
        # After the SUBACK: the broker has queued the retained set (if any) before it takes this, so our
        # "online" comes back after it. Sent now, it also carries the ACK the broker's Nagle waits for.
        client.publish(cfg.topic("availability"), "online", retain=True, qos=0)
        self.sent += 6
        deadline = ticks_add(self.clock(), SETTLE_MS)
        while not self._own_online and ticks_diff(deadline, self.clock()) > 0:
            client._wait_for_msg()  # one packet, or nothing within the socket timeout
        if not self._own_online:
            self.log("our own retained availability did not come back within %d ms: a pending set may "
                     "wait for the next wake" % SETTLE_MS)
        if self._set is not None:
            self._apply_set(self._set)
            client.publish(cfg.topic("set"), "", retain=True, qos=0)  # taken: the hub sees it in the announce

    def _on_message(self, client, topic, message):
        cfg = self.cfg
        if topic == cfg.topic("availability"):
            if bytes(message) == b"online":
                self._own_online = True
        elif topic == cfg.topic("set") and len(message):
            self._set = bytes(message)

    def _apply_set(self, message):
        cfg = self.cfg
        request, error = read_set_message(message)
        if error is None:
            try:
                fps, quality, size = read_set(request, cfg.fps, cfg.jpeg_quality, cfg.frame_size)
            except ConfigError as problem:
                error = str(problem)
        if error is not None:
            self.set_rejected += 1
            self.log("set ignored (%s)" % error)
            return
        cfg.fps, cfg.jpeg_quality, cfg.frame_size = fps, quality, size
        state = self.state
        state.fps, state.quality, state.frame_size = fps, quality, size
        self.set_applied += 1
        self.log("set applied: %s" % message.decode("utf-8", "replace")[:200])

    def _goodbye(self):
        client = self.client
        self.client = None
        if client is None:
            return
        try:
            client.disconnect()  # clean: no will, the retained "online" stays
        except Exception as error:
            self.log("MQTT goodbye failed: %s" % error)

    def _sleep(self):
        """Deep sleep until the interval has passed or the wake pin fires (does not return)."""
        cfg = self.cfg
        alarm = self.alarm
        seconds = cfg.snapshot_interval_s
        alarms = []
        pin = self.platform.wake_pin(cfg) if cfg.wake_pin is not None else None
        if pin is not None:
            if self.platform.pin_level(pin) == cfg.wake_value:
                seconds = min(seconds, PIN_HOLDOFF_S)  # a level wake would fire at once
                self.log("the wake pin is still active: not armed; sleeping %d s on the timer" % seconds)
            else:
                alarms.append(alarm.pin.PinAlarm(pin, value=cfg.wake_value, pull=not cfg.wake_value))
        # The alarm API counts in time.monotonic() seconds: fine right after a boot, where the float is exact.
        alarms.insert(0, alarm.time.TimeAlarm(monotonic_time=time.monotonic() + seconds))
        self.log("deep sleep for %d s%s" % (seconds, " or until the wake pin" if len(alarms) > 1 else ""))
        keep = self.platform.before_deep_sleep(self.camera)
        alarm.exit_and_deep_sleep_until_alarms(*alarms, preserve_dios=keep)

    # ---- what it says ----------------------------------------------------------------------

    def announce(self):
        cfg = self.cfg
        return {
            "id": cfg.node_id, "name": cfg.name, "mode": "snapshot", "interval_s": cfg.snapshot_interval_s,
            "wake": self.reason, "wake_pin": cfg.wake_pin is not None, "battery_v": self.battery_v,
            "board": self.platform.board_name, "sensor": self.camera.sensor_name if self.camera else None,
            "frame_size": cfg.frame_size, "width": cfg.width, "height": cfg.height,
            "fps": cfg.fps, "jpeg_quality": cfg.jpeg_quality, "firmware": __version__,
            "ip": cfg.advertise_host or self.platform.address(), "controls": CONTROLS,
        }

    def stats(self, picture_bytes):
        return {
            "uptime_s": self.awake_ms() // 1000, "frames": 1, "fps": 0, "clients": 0, "dropped": 0,
            "free_heap": self.platform.free_heap(), "rssi": self.platform.rssi(),
            "awake_ms": self.awake_ms(), "phases_ms": self.phases, "last_awake_ms": self.state.last_awake_ms,
            "wakes": self.state.wakes, "failed_wakes": self.state.failures, "picture_bytes": picture_bytes,
            "set_applied": self.set_applied, "set_rejected": self.set_rejected,
        }


def wake(platform, cfg):
    """Run one wake on ``platform`` and deep-sleep (``start.main()`` calls this in snapshot mode)."""
    Wake(platform, cfg).run()
