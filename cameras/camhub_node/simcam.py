"""A simulated camera for the PC: real JPEG frames of the configured size, pre-rendered once.

It stands in for ``espcamera.Camera`` (hardware that cannot exist on a PC) and follows its
documented behaviour where the node relies on it: ``take()`` returns a memoryview into a driver
buffer that is reused by the next ``take()`` (espcamera hands its frame buffer back to the driver
then), ``frame_size``/``quality`` can be changed at run time, and no JPEG is larger than the
driver's buffer (width * height / 5, as esp32-camera allocates it). The picture is a moving test
pattern with the node id, the frame number within the loop and the loop time drawn in, on a noisy
background so the JPEG sizes resemble a real sensor's. A loop of frames is encoded once per
configuration, so serving it costs almost no CPU. PC only (Pillow).
"""

import io

from PIL import Image, ImageDraw, ImageFont

from camhub_node.config import FRAME_SIZES, QUALITY_MAX, QUALITY_MIN
from camhub_node.frames import jpeg_capacity

LOOP_FRAMES = 30


def pillow_quality(esp_quality):
    """Map espcamera's 2 (best) .. 55 (smallest) onto Pillow's 95 .. 10."""
    return max(10, min(95, round(95 - (esp_quality - QUALITY_MIN) * 85 / (QUALITY_MAX - QUALITY_MIN))))


def _font(size):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the small bitmap font
        return ImageFont.load_default()


def render_loop(node_id, frame_size, esp_quality, count=LOOP_FRAMES, fps=10):
    """``count`` JPEGs (bytes) of a moving test pattern, none larger than the driver buffer."""
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
        q = quality
        while True:
            out = io.BytesIO()
            img.save(out, "JPEG", quality=q)
            data = out.getvalue()
            if len(data) <= limit or q <= 10:
                break
            q -= 5
        frames.append(data[:limit])
    return frames


class SimCamera:
    """What the node uses of ``espcamera.Camera``: ``take``, ``frame_size``, ``quality``, sizes."""

    sensor_name = "sim-ov5640"

    def __init__(self, node_id, frame_size, quality, fps=10):
        self.node_id = node_id
        self._fps = fps
        self._frame_size = None
        self._quality = quality
        self._index = 0
        self.taken = 0
        self._apply(frame_size, quality)

    def _apply(self, frame_size, quality):
        self._loop = render_loop(self.node_id, frame_size, quality, fps=self._fps)
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

    def reconfigure(self, frame_size=None, quality=None):
        """Change size and/or quality (re-renders the loop: ~0.1-1 s depending on size)."""
        frame_size = frame_size or self._frame_size
        quality = self._quality if quality is None else quality
        if frame_size != self._frame_size or quality != self._quality:
            self._apply(frame_size, quality)

    def take(self, timeout=None):
        """The next frame as a memoryview into the driver buffer (valid until the next take)."""
        data = self._loop[self._index]
        self._index = (self._index + 1) % len(self._loop)
        n = len(data)
        self._view[:n] = data  # the sensor's DMA into the frame buffer
        self.taken += 1
        return self._view[:n]

    def deinit(self):
        self._loop = []
