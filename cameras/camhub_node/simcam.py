"""A simulated camera for the PC: real JPEG frames of the configured size, pre-rendered once.

It stands in for ``espcamera.Camera`` (hardware that cannot exist on a PC) and follows its
documented behaviour where the node relies on it: ``take()`` returns a memoryview into a driver
buffer that is reused by the next ``take()`` (espcamera hands its frame buffer back to the driver
then), ``frame_size``/``quality`` can be changed at run time, and no JPEG is larger than the
driver's buffer (width * height / 5, as esp32-camera allocates it).

What it shows is a scene (``scene.py``): by default a still view with sensor noise that someone
crosses now and then and whose light changes now and then; or (``busy``) a test pattern whose box
moves on every frame. Either way the camera's name, the frame's number in its clip and the clip's
time are drawn in, as a camera's overlay. The frames are encoded once per configuration, so
serving them costs almost no CPU. PC only (Pillow).
"""

import io
import random
import time

from PIL import Image, ImageChops, ImageDraw, ImageFont

from camhub_node import scene as scenes
from camhub_node.config import FRAME_SIZES, QUALITY_MAX, QUALITY_MIN
from camhub_node.frames import jpeg_capacity

LOOP_FRAMES = 30  # the busy scene's loop
NOISE_SIGMA = 5  # the sensor's noise, grey levels (per pixel and colour, fresh in every frame)
DIM = 0.45  # the dim light's share of the day's


def pillow_quality(esp_quality):
    """Map espcamera's 2 (best) .. 55 (smallest) onto Pillow's 95 .. 10."""
    return max(10, min(95, round(95 - (esp_quality - QUALITY_MIN) * 85 / (QUALITY_MAX - QUALITY_MIN))))


def _font(size):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the small bitmap font
        return ImageFont.load_default()


def _encode(img, quality, limit):
    """JPEG bytes of ``img``, at a lower quality if need be to fit the driver's buffer."""
    q = quality
    while True:
        out = io.BytesIO()
        img.save(out, "JPEG", quality=q)
        data = out.getvalue()
        if len(data) <= limit or q <= 10:
            return data[:limit]
        q -= 5


def render_loop(node_id, frame_size, esp_quality, count=LOOP_FRAMES, fps=10):
    """``count`` JPEGs (bytes) of a moving test pattern, none larger than the driver buffer (busy)."""
    width, height = FRAME_SIZES[frame_size]
    limit = jpeg_capacity(width, height)
    background = Image.blend(
        Image.linear_gradient("L").resize((width, height)).convert("RGB"),
        Image.effect_noise((width, height), 28).convert("RGB"), 0.25)
    bars = ImageDraw.Draw(background)
    colours = [(192, 192, 192), (192, 192, 0), (0, 192, 192), (0, 192, 0), (192, 0, 192), (192, 0, 0), (0, 0, 192)]
    bar_w = max(1, width // len(colours))
    for i, colour in enumerate(colours):
        bars.rectangle((i * bar_w, 0, (i + 1) * bar_w - 1, height // 3), fill=colour)
    font = _font(max(10, height // 12))
    small = _font(max(9, height // 18))
    quality = pillow_quality(esp_quality)
    frames = []
    for i in range(count):
        img = background.copy()
        draw = ImageDraw.Draw(img)
        x = (i * width) // count
        box = max(8, height // 6)
        draw.rectangle((x, height // 2, x + box, height // 2 + box), fill=(255, 255, 255), outline=(0, 0, 0))
        draw.text((max(4, width // 40), height // 3 + 4), node_id, fill=(255, 255, 0), font=font)
        label = "frame %02d/%d  t+%.2fs  %dx%d" % (i, count, i / fps, width, height)
        draw.text((max(4, width // 40), height - height // 6), label, fill=(255, 255, 255), font=small)
        frames.append(_encode(img, quality, limit))
    return frames


def _view(node_id, width, height):
    """A still outdoor view, its layout varied by the camera's id: sky, a house, a path, a fence."""
    rnd = random.Random(scenes.seed_of(node_id))
    img = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(img)
    horizon = height * rnd.randint(38, 46) // 100
    for y in range(horizon):  # the sky, lighter towards the horizon
        shade = 150 + 80 * y // max(1, horizon)
        draw.line((0, y, width, y), fill=(shade - 40, shade - 10, min(255, shade + 25)))
    for y in range(horizon, height):  # the lawn, lighter nearer the camera
        shade = 110 + 50 * (y - horizon) // max(1, height - horizon)
        draw.line((0, y, width, y), fill=(shade - 40, shade + 10, shade - 60))
    wall = rnd.choice([(206, 180, 150), (190, 190, 196), (214, 200, 170), (178, 160, 150)])
    left = width * rnd.randint(5, 40) // 100
    right = left + width * rnd.randint(40, 55) // 100
    top = height * 18 // 100
    draw.rectangle((left, top, right, horizon + height // 10), fill=wall)
    draw.polygon([(left - width // 30, top), ((left + right) // 2, top - height // 8), (right + width // 30, top)],
                 fill=(140, 90, 80))
    door_w, door_h = width // 14, height // 4
    door_x = left + (right - left) * rnd.randint(15, 70) // 100
    draw.rectangle((door_x, horizon + height // 10 - door_h, door_x + door_w, horizon + height // 10),
                   fill=(120, 84, 60))
    win_x = door_x + door_w * 2 if door_x + door_w * 4 < right else left + door_w
    draw.rectangle((win_x, top + height // 12, win_x + door_w * 3 // 2, top + height // 12 + door_h // 2),
                   fill=(150, 176, 190), outline=(240, 240, 240), width=max(1, width // 200))
    path = [(door_x, horizon + height // 10), (door_x + door_w, horizon + height // 10),
            (door_x + door_w * 3, height), (door_x - door_w * 2, height)]
    draw.polygon(path, fill=(170, 160, 140))
    fence_y = height * rnd.randint(70, 80) // 100
    step = max(6, width // 24)
    for x in range(rnd.randint(0, step), width, step):
        draw.rectangle((x, fence_y - height // 10, x + step // 4, fence_y), fill=(176, 150, 110))
    draw.rectangle((0, fence_y - height // 14, width, fence_y - height // 14 + max(1, height // 80)),
                   fill=(176, 150, 110))
    return img


def _walker(draw, x, width, height, step):
    """Someone walking, ``x`` their left edge: dark clothes, a face, legs apart on every other step."""
    body_w, body_h = max(4, width // 14), max(8, height * 2 // 5)
    foot = height * 88 // 100
    head = max(3, body_w * 3 // 5)
    top = foot - body_h
    legs = body_h * 2 // 5
    spread = body_w // 3 if step % 2 else body_w // 8
    draw.ellipse((x + (body_w - head) // 2, top, x + (body_w + head) // 2, top + head), fill=(196, 150, 120))
    draw.rounded_rectangle((x, top + head, x + body_w, foot - legs), radius=max(1, body_w // 4), fill=(40, 48, 70))
    leg = max(2, body_w // 3)
    draw.polygon([(x + body_w // 2 - leg, foot - legs), (x + body_w // 2, foot - legs),
                  (x + body_w // 2 - spread, foot), (x + body_w // 2 - spread - leg, foot)], fill=(30, 30, 36))
    draw.polygon([(x + body_w // 2, foot - legs), (x + body_w // 2 + leg, foot - legs),
                  (x + body_w // 2 + spread + leg, foot), (x + body_w // 2 + spread, foot)], fill=(30, 30, 36))
    return body_w


class _Sensor:
    """Fresh-looking Gaussian noise per colour in each frame, as a sensor adds it.

    Three noise planes are made once (``effect_noise`` costs ~13 ms a VGA plane); each frame takes
    them shifted by its own offsets, so no two frames share their noise where it matters.
    """

    def __init__(self, size):
        self.size = size
        self._planes = [Image.effect_noise(size, NOISE_SIGMA) for _ in range(3)]
        self._rnd = random.Random(size[0] * size[1])

    def expose(self, img):
        w, h = self.size
        noise = Image.merge("RGB", [ImageChops.offset(plane, self._rnd.randrange(w), self._rnd.randrange(h))
                                    for plane in self._planes])
        return ImageChops.add(img, noise, 1.0, -128)  # effect_noise is centred on 128


def render_realistic(node_id, frame_size, esp_quality, fps=10):
    """The realistic scene's frames as ``scene.Scene`` expects them: for day, then dim light,
    ``STILL_FRAMES`` still frames and then the crossing's frames."""
    width, height = FRAME_SIZES[frame_size]
    limit = jpeg_capacity(width, height)
    quality = pillow_quality(esp_quality)
    view = _view(node_id, width, height)
    crossing = scenes.crossing_frames(fps)
    sensor = _Sensor((width, height))
    font = _font(max(8, height // 20))
    margin = max(3, width // 80)
    text_h = font.getbbox("Ag0")[3]
    frames = []
    for light in (1.0, DIM):
        clips = [("still", None)] * scenes.STILL_FRAMES + [("crossing", i) for i in range(crossing)]
        for n, (clip, step) in enumerate(clips):
            img = view.copy()
            if step is not None:
                body_w = max(4, width // 14)
                x = -body_w + (width + body_w) * step // max(1, crossing - 1)
                _walker(ImageDraw.Draw(img), x, width, height, step)
            if light != 1.0:
                img = img.point(lambda v, light=light: int(v * light))
            img = sensor.expose(img)
            # the overlay, burnt in by the camera: not dimmed with the scene
            draw = ImageDraw.Draw(img)
            index = n if clip == "still" else n - scenes.STILL_FRAMES
            count = scenes.STILL_FRAMES if clip == "still" else crossing
            draw.text((margin, margin), node_id, fill=(255, 255, 255), font=font, stroke_width=1,
                      stroke_fill=(0, 0, 0))
            label = "%s %02d/%d  t+%.1fs" % (clip, index, count, index / fps)
            draw.text((margin, height - margin - text_h), label, fill=(255, 255, 255), font=font, stroke_width=1,
                      stroke_fill=(0, 0, 0))
            frames.append(_encode(img, quality, limit))
    return frames, scenes.STILL_FRAMES, crossing


def render_scene(kind, node_id, frame_size, esp_quality, fps=10):
    """``(frames, still, crossing)``: a scene's JPEGs and the counts ``scene.Scene`` takes."""
    if kind == scenes.BUSY:
        frames = render_loop(node_id, frame_size, esp_quality, fps=fps)
        return frames, len(frames), 0
    return render_realistic(node_id, frame_size, esp_quality, fps)


def wall_ms():
    """Wall-clock time in integer milliseconds (the scene's schedule is in wall-clock time)."""
    return time.time_ns() // 1000000


class SimCamera:
    """What the node uses of ``espcamera.Camera``: ``take``, ``frame_size``, ``quality``, sizes.

    ``scene`` is ``scene.REALISTIC`` or ``scene.BUSY``; ``period_ms`` the realistic scene's period;
    ``clock`` the wall clock in integer milliseconds (the scene's schedule).
    """

    sensor_name = "sim-ov5640"

    def __init__(self, node_id, frame_size, quality, fps=10, scene=scenes.DEFAULT_SCENE,
                 period_ms=scenes.PERIOD_S * 1000, clock=wall_ms):
        self.node_id = node_id
        self._fps = fps
        self._frame_size = None
        self._quality = quality
        self._kind = scene
        self._period_ms = period_ms
        self._clock = clock
        self.taken = 0
        self._apply(frame_size, quality)

    def _apply(self, frame_size, quality):
        self._loop, still, crossing = render_scene(self._kind, self.node_id, frame_size, quality, fps=self._fps)
        schedule = scenes.Schedule(self.node_id, self._period_ms) if self._kind == scenes.REALISTIC else None
        self.scene = scenes.Scene(self._kind, still, crossing, schedule)
        self._frame_size = frame_size
        self._quality = quality
        self.width, self.height = FRAME_SIZES[frame_size]
        # The driver's frame buffer; like espcamera's, its content changes on the next take().
        self._driver = bytearray(jpeg_capacity(self.width, self.height))
        self._view = memoryview(self._driver)

    @property
    def frame_size(self):
        return self._frame_size

    @property
    def quality(self):
        return self._quality

    def skip_to(self, taken):
        """Go on as if ``taken`` pictures had been taken (``scene.Scene.skip_to``)."""
        self.scene.skip_to(taken)

    def reconfigure(self, frame_size=None, quality=None):
        """Change size and/or quality (re-renders the scene: ~0.1-2 s depending on size)."""
        frame_size = frame_size or self._frame_size
        quality = self._quality if quality is None else quality
        if frame_size != self._frame_size or quality != self._quality:
            self._apply(frame_size, quality)

    def take(self, timeout=None):
        """The next frame as a memoryview into the driver buffer (valid until the next take)."""
        data = self._loop[self.scene.index(self._clock())]
        n = len(data)
        self._view[:n] = data  # the sensor's DMA into the frame buffer
        self.taken += 1
        return self._view[:n]

    def deinit(self):
        self._loop = []
