"""The dashboard in a real browser: headless Debian chromium, the real hub, eight simulated nodes.

One story on one page load (the page is never reloaded, which a marker on ``window`` proves):
every camera is listed by name → all eight pictures render and keep changing at once, over
snapshots (no MJPEG connection held by the grid) → the camera view plays the real stream and lists
this very browser among the viewers → leaving records the disconnect → a node killed with SIGKILL
turns its tile offline → the hub going away is shown, and its return is picked up by itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

import camhub
from tests.support.browser import assert_no_serious_axe_violations, chromium, page, require_chromium
from tests.support.mqtt import Client
from tests.support.procs import HubProcess, Mosquitto, SimNode
from tests.support.waiting import get_json, wait_until

FPS = 4  # small frames at a low rate: eight nodes, a hub and a browser share two cores
FRAME_SIZE = "QQVGA"  # 160 x 120
CAMERAS = [("front-door", "Front door"), ("garden", "Garden"), ("garage", "Garage"), ("driveway", "Driveway"),
           ("porch", "Porch"), ("workshop", "Workshop"), ("hallway", "Hallway"), ("backyard", "Backyard")]
MARK = "window.__camhubNoReload"

# One row per tile: id, the visible picture's natural width, and a checksum of its pixels.
PICTURES_JS = """() => [...document.querySelectorAll('#grid .tile')].map((tile) => {
  const img = tile.querySelector('img.frame.live');
  if (!img || !img.complete || !img.naturalWidth) return [tile.dataset.id, 0, null];
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const ctx = canvas.getContext('2d');
  ctx.drawImage(img, 0, 0);
  const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  let sum = 0;
  for (let i = 0; i < px.length; i += 4) sum = (Math.imul(sum, 31) + px[i] + 7 * px[i + 1] + 13 * px[i + 2]) >>> 0;
  return [tile.dataset.id, img.naturalWidth, sum];
})"""






@dataclass
class World:
    broker: Mosquitto
    nodes: dict[str, SimNode]
    hub: HubProcess
    state_dir: Path
    page: Any

    def wait_js(self, expression: str, what: str, timeout: float = 15.0, arg: Any = None) -> Any:
        """Wait (bounded) for a JS predicate in the page; on timeout say what and show the hub's log tail."""
        # Playwright passes ``arg`` only to a function, so the expression becomes one.
        try:
            return self.page.wait_for_function(f"(arg) => ({expression})", arg=arg, timeout=timeout * 1000,
                                               polling=100)
        except Exception as exc:
            seen = self.page.evaluate("({link: document.querySelector('#h-link').dataset.mode, hash: location.hash,"
                                      " banner: document.querySelector('#banner').innerText, tiles: [...document"
                                      ".querySelectorAll('#grid .tile')].map(t => [t.dataset.id, t.dataset.state,"
                                      " t.dataset.frames]).join(' ')})")
            raise AssertionError(f"{what}: not seen within {timeout}s\npage: {seen}\n--- hub log ---\n"
                                 f"{self.hub.output()[-3000:]}") from exc


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    require_chromium()
    broker = Mosquitto()
    state_dir = tmp_path_factory.mktemp("hub-state")
    # All processes start at once; the waits below overlap their start-up times.
    nodes = {node_id: SimNode(node_id, broker.port, fps=FPS, frame_size=FRAME_SIZE,
                              env={"CAMHUB_NODE_NAME": name}) for node_id, name in CAMERAS}
    hub = HubProcess(broker.port, state_dir)
    holder = World(broker, nodes, hub, state_dir, page=None)
    try:
        for node in nodes.values():
            node.wait_ready()
        hub.wait_ready()
        wait_until(lambda: sum(c["state"] == "streaming" for c in get_json(hub.url + "/api/cameras")) == len(CAMERAS),
                   30, "all cameras streaming at the hub")
        with chromium() as browser, page(browser) as pg:
            holder.page = pg
            pg.goto(hub.url + "/")
            pg.evaluate(f"{MARK} = true")
            yield holder
    finally:
        for node in nodes.values():
            node.stop()
        holder.hub.stop()
        broker.stop()


def test_grid_lists_every_camera_by_name_with_hub_health(world: World) -> None:
    world.wait_js(f"document.querySelectorAll('#grid .tile').length === {len(CAMERAS)}", "a tile per camera")
    names = world.page.locator("#grid .tile .tile-name").all_inner_texts()
    assert sorted(names) == sorted(name for _, name in CAMERAS)
    ids = world.page.locator("#grid .tile .tile-id").all_inner_texts()
    assert sorted(ids) == sorted(node_id for node_id, _ in CAMERAS)
    world.wait_js("document.querySelectorAll('#grid .tile[data-state=\"streaming\"]').length === 8",
                  "every tile's badge says streaming")
    world.wait_js("document.querySelector('#h-cams').textContent.includes('8/8 online')", "8/8 online in the header")
    assert world.page.get_attribute("#h-mqtt", "data-ok") == "true"
    assert world.page.get_attribute("#h-link", "data-mode") == "live"  # server-sent events, not polling
    tile = world.page.locator('.tile[data-id="garage"]')
    assert "160×120" in tile.inner_text()
    assert tile.locator(".tile-board").inner_text() == "simulated"


def test_a_rejected_announce_shows_in_the_header_and_makes_no_tile(world: World) -> None:
    # The pill shows only when the hub reports rejections (a count in /api/hub, not in the documented API).
    assert not world.page.is_visible("#h-rejected")
    sender = Client(world.broker.port)
    try:
        sender.publish("camhub/nodes/bogus/announce", b"{not json")
    finally:
        sender.close()
    world.wait_js("!document.querySelector('#h-rejected').hidden", "the rejected-announces pill")
    assert world.page.inner_text("#h-rejected .pill-text") == "1 rejected"
    assert world.page.locator("#grid .tile").count() == len(CAMERAS)


def test_a_tile_says_its_camera_name_first_and_shows_its_picture_above_it(world: World) -> None:
    """A screen reader (and voice control) gets the camera's name before anything else on the tile."""
    tile = world.page.locator('.tile[data-id="garage"]')
    world.wait_js("document.querySelector('.tile[data-id=\"garage\"] img.frame.live')", "the garage's picture")
    expect(tile).to_have_accessible_name(re.compile(r"^Garage\b"))
    expect(tile).to_have_accessible_name(re.compile(r"Latest picture from Garage"))  # still described
    picture, name = tile.locator(".tile-media").bounding_box(), tile.locator(".tile-name").bounding_box()
    assert picture and name and picture["y"] + picture["height"] <= name["y"], "the picture should be on top"


def test_eight_pictures_render_at_once_and_keep_changing(world: World) -> None:
    world.wait_js(f"({PICTURES_JS})().filter(([, width]) => width > 0).length === {len(CAMERAS)}",
                  "all eight tile pictures decoded", timeout=20)
    first = {node_id: checksum for node_id, width, checksum in world.page.evaluate(PICTURES_JS)}
    assert all(width == 160 for _, width, _ in world.page.evaluate(PICTURES_JS))
    # Every picture moves on (the simulated camera draws a moving box and a frame counter).
    world.wait_js(f"({PICTURES_JS})().every(([id, width, sum]) => width > 0 && sum !== arg[id])",
                  "every tile's picture changed", timeout=15, arg=first)
    # One evaluation: a tile may swap its pictures between two separate calls.
    alts = world.page.evaluate("[...document.querySelectorAll('#grid img.frame.live')].map(i => i.alt)")
    assert sorted(alts) == sorted(f"Latest picture from {name}" for _, name in CAMERAS)
    # The grid refreshes from snapshots: it holds no stream open, so eight (or eighty) tiles never
    # run into the browser's six-connections-per-host limit.
    assert get_json(world.hub.url + "/api/hub")["viewers"] == 0


def test_camera_view_plays_the_stream_and_lists_this_browser(world: World) -> None:
    pg = world.page
    pg.locator('.tile[data-id="garage"]').focus()
    pg.keyboard.press("Enter")  # tiles are links: keyboard users open them like anyone else
    world.wait_js("location.hash === '#/camera/garage'", "the camera route")
    world.wait_js("document.querySelector('.stream-box').dataset.stream === 'playing'"
                  " && document.querySelector('#stream').naturalWidth === 160", "the MJPEG stream playing")
    assert pg.inner_text("#camera-title") == "Garage"
    assert pg.get_attribute("#stream", "src") == "/cameras/garage/stream"
    user_agent = pg.evaluate("navigator.userAgent")
    world.wait_js("[...document.querySelectorAll('#viewers-body tr')].some(tr => tr.textContent.includes(arg))",
                  "this browser's user agent in the viewers table", arg=user_agent)
    me = pg.locator("#viewers-body tr.is-me")
    assert me.count() == 1
    assert me.locator("td").first.inner_text().startswith("127.0.0.1:")
    assert "this browser" in me.inner_text()
    hub_view = get_json(world.hub.url + "/api/cameras/garage")
    assert [c["user_agent"] for c in hub_view["clients"]] == [user_agent]
    # Frames-sent for this browser grows while we watch: the table is live.
    sent = int(me.locator("td").nth(3).inner_text().replace(",", ""))
    world.wait_js("+document.querySelector('#viewers-body tr.is-me td:nth-child(4)').textContent.replace(/,/g, '')"
                  " > arg", "frames sent growing in the viewers table", arg=sent)

    details = pg.inner_text("#camera-details")
    assert "160 × 120" in details and "simulated" in details
    assert pg.input_value("#url-stream") == f"{world.hub.url}/cameras/garage/stream"
    assert pg.input_value("#url-snapshot") == f"{world.hub.url}/cameras/garage/snapshot.jpg"

    # Esc goes back to the grid, closes the stream, and gives the focus back to the tile.
    pg.keyboard.press("Escape")
    world.wait_js("location.hash === '#/' || location.hash === ''", "back on the grid")
    # the route changes first, the views follow on the next frame: wait for them, bounded
    pg.wait_for_selector("#grid-view", state="visible", timeout=5000)
    pg.wait_for_selector("#camera-view", state="hidden", timeout=5000)
    world.wait_js("document.activeElement && document.activeElement.dataset.id === 'garage'",
                  "the focus back on the tile")
    wait_until(lambda: get_json(world.hub.url + "/api/cameras/garage")["clients"] == [], 10,
               "the hub's viewer closed after leaving the camera view")

    # Coming back shows that disconnect, with its reason, among the recent disconnects.
    pg.locator('.tile[data-id="garage"]').click()
    world.wait_js("[...document.querySelectorAll('#disconnects-body tr')].some(tr => "
                  "tr.querySelector('td.ua').title === arg && /closed|reset/.test(tr.textContent))",
                  "our earlier visit in the recent disconnects", arg=user_agent)
    pg.keyboard.press("Escape")
    world.wait_js("!document.querySelector('#grid-view').hidden", "back on the grid")


def test_killed_node_turns_offline_without_a_reload(world: World) -> None:
    world.nodes["porch"].kill()  # SIGKILL: no clean "offline", only the connection dropping
    world.wait_js("document.querySelector('.tile[data-id=\"porch\"]').dataset.state === 'offline'",
                  "the killed node's tile offline", timeout=20)
    tile = world.page.locator('.tile[data-id="porch"]')
    assert "is-offline" in tile.get_attribute("class")
    assert tile.locator(".last-seen").inner_text().startswith("last seen")
    assert tile.locator(".badge").inner_text().lower() == "offline"
    # Its last picture stays (greyed), the others keep streaming.
    assert world.page.evaluate("document.querySelector('.tile[data-id=\"porch\"] img.frame.live').naturalWidth") == 160
    world.wait_js("document.querySelector('#h-cams').textContent.includes('7/8 online')"
                  " && document.querySelectorAll('#grid .tile[data-state=\"streaming\"]').length === 7",
                  "7/8 online, seven tiles streaming")
    assert world.page.evaluate(MARK) is True


# How grey a tile's picture is drawn: 1 for grayscale(1) or saturate(0) in its computed filter, else 0.
GREYNESS_JS = """(id) => {
  const img = document.querySelector(`.tile[data-id="${id}"] img.frame.live`);
  const filter = getComputedStyle(img).filter;
  const grey = /grayscale\\(\\s*(1|100%)\\s*\\)/.test(filter) || /saturate\\(\\s*0%?\\s*\\)/.test(filter);
  return [grey ? 1 : 0, filter];
}"""


def test_an_offline_tiles_picture_is_greyed(world: World) -> None:
    """The killed node's last picture stays, drawn grey; a streaming camera's keeps its colours."""
    world.wait_js("document.querySelector('.tile[data-id=\"porch\"]').dataset.state === 'offline'",
                  "the killed node's tile offline", timeout=20)
    grey, filter_ = world.page.evaluate(GREYNESS_JS, "porch")
    assert grey == 1, f"the offline tile's picture is drawn with filter {filter_!r}"
    grey, filter_ = world.page.evaluate(GREYNESS_JS, "garden")
    assert grey == 0, f"a streaming tile's picture is drawn with filter {filter_!r}"


def test_grid_and_camera_page_have_no_serious_accessibility_violations(world: World) -> None:
    """axe-core in the page as a user has it: the grid (streaming tiles, an offline one), then a camera."""
    world.wait_js("document.querySelector('.tile[data-id=\"porch\"]').dataset.state === 'offline'"
                  " && document.querySelectorAll('#grid .tile[data-state=\"streaming\"]').length === 7",
                  "the grid with an offline tile", timeout=20)
    assert_no_serious_axe_violations(world.page, "the grid")
    world.page.locator('.tile[data-id="garden"]').click()
    world.wait_js("document.querySelector('.stream-box').dataset.stream === 'playing'"
                  " && document.querySelector('#viewers-body tr.is-me')", "the camera page with this browser listed")
    assert_no_serious_axe_violations(world.page, "the camera page")
    world.page.keyboard.press("Escape")
    world.wait_js("!document.querySelector('#grid-view').hidden", "back on the grid")


# Every control a keyboard user should reach on the current view (a native control taken out of the tab
# order counts too): [id, how it looks unfocused] for each.
# How an element and its parent look where a focus ring is drawn: outline, shadow, border.
LOOK_JS = """(el) => [el, el.parentElement].map((n) => { const s = getComputedStyle(n);
    return [s.outlineStyle, s.outlineWidth, s.outlineColor, s.boxShadow, s.borderColor].join(' '); }).join(' / ')"""
# A control's key survives the page re-rendering it (a list rebuilt on a server event puts new elements in
# place of the old ones; marking elements lost those and failed the test under load): what it is and says,
# and which of the identical ones in document order (a link is known by its address: a tile's text holds
# its fps and age).
KEYS_JS = """() => { const seen = new Map();
  return [...document.querySelectorAll('a[href], button, input, select, textarea, [tabindex]')]
    .filter((el) => (el.matches('a[href], button, input, select, textarea') || el.tabIndex >= 0) && !el.disabled
                    && el.getClientRects().length && getComputedStyle(el).visibility !== 'hidden')
    .map((el) => { const what = [el.tagName, el.id, el.dataset.id, el.getAttribute('href'),
                                 el.getAttribute('aria-label'), el.getAttribute('name'),
                                 el.matches('button') ? el.textContent.trim().slice(0, 60) : ''].join('|');
                   const n = (seen.get(what) || 0) + 1; seen.set(what, n); return [what + '#' + n, el]; }); }"""
CONTROLS_JS = """() => {
  const look = LOOK;
  document.activeElement && document.activeElement.blur();
  return (KEYS)().map(([key, el]) => [key, look(el)]);
}""".replace("LOOK", LOOK_JS).replace("KEYS", KEYS_JS)
FOCUSED_JS = """() => { const el = document.activeElement;
  const found = (KEYS)().find(([, candidate]) => candidate === el);
  return found ? [found[0], (LOOK)(el), el.outerHTML.slice(0, 120)] : null; }""".replace("LOOK", LOOK_JS).replace(
    "KEYS", KEYS_JS)


def _tab_through(world: World, where: str) -> None:
    """Tab reaches every visible control of the view, and each one looks different while it has the focus."""
    controls = dict(world.page.evaluate(CONTROLS_JS))
    reached: dict[str, tuple[str, str]] = {}
    for _ in range(2 * len(controls) + 10):
        world.page.keyboard.press("Tab")
        focused = world.page.evaluate(FOCUSED_JS)
        if focused:
            reached[focused[0]] = (focused[1], focused[2])
        if reached.keys() >= controls.keys():
            break
    assert controls.keys() - reached.keys() == set(), f"{where}: controls Tab never reaches"
    unmarked = [html for key, (look, html) in reached.items() if look == controls[key]]
    assert unmarked == [], f"{where}: focus not visible on {unmarked}"


def test_every_control_is_reachable_by_keyboard_and_shows_its_focus(world: World) -> None:
    _tab_through(world, "the grid")
    world.page.locator('.tile[data-id="garden"]').focus()
    world.page.keyboard.press("Enter")
    world.wait_js("document.querySelector('.stream-box').dataset.stream === 'playing'", "the camera page")
    _tab_through(world, "the camera page")
    world.page.keyboard.press("Escape")
    world.wait_js("!document.querySelector('#grid-view').hidden", "back on the grid")


def test_footer_shows_the_version(world: World) -> None:
    world.wait_js(f"document.querySelector('#f-version').textContent === 'camhub {camhub.__version__}'",
                  "the version in the footer")


def test_hub_going_away_is_shown_and_recovers_by_itself(world: World) -> None:
    pg = world.page
    # On the grid, whatever the test before left open (its tiles' pictures are what is watched below).
    pg.evaluate("location.hash = '#/'")
    world.wait_js("!document.querySelector('#grid-view').hidden", "the grid")
    port = world.hub.port
    world.hub.stop()
    world.wait_js("document.querySelector('#h-link').dataset.mode === 'lost'"
                  " && !document.querySelector('#banner').hidden", "the lost-connection state", timeout=15)
    assert "Connection to hub lost" in pg.inner_text("#banner")
    frames_before = pg.evaluate("+document.querySelector('.tile[data-id=\"garden\"]').dataset.frames")

    world.hub = HubProcess(world.broker.port, world.state_dir, port=port)
    world.hub.wait_ready()
    world.wait_js("document.querySelector('#h-link').dataset.mode === 'live'"
                  " && document.querySelector('#banner').hidden", "reconnected to the restarted hub", timeout=20)
    # The nodes still running are streaming again and their pictures move; the killed one is still
    # listed (the hub remembers it in its state dir) and still offline.
    world.wait_js("document.querySelectorAll('#grid .tile[data-state=\"streaming\"]').length === 7",
                  "seven cameras streaming after the restart", timeout=20)
    world.wait_js("+document.querySelector('.tile[data-id=\"garden\"]').dataset.frames > arg + 2",
                  "the pictures refreshing again", arg=frames_before)
    assert pg.get_attribute('.tile[data-id="porch"]', "data-state") == "offline"
    assert pg.evaluate(MARK) is True
