"""Procedural scene rendering (PIL): a place, who is there, hazards, time of day.

The cues are drawn so that a small CNN can detect them, with random placement,
sizes and colours so that memorising pixels does not work:

* ``night``: dark blue sky or window, moon and stars, the whole scene dimmed
  (light sources such as fire, lamps and windows stay bright);
* ``child``: a small figure with a large head and a bright yellow shirt, and a red ball;
* ``elderly``: a person in a wheelchair (a big spoked wheel) with white hair and a purple cardigan;
* ``crowd``: a dense cluster of twelve to nineteen small background figures;
* ``traffic``: a road with lane markings and a car;
* ``fire``: red, orange and yellow flames with smoke;
* ``water``: a blue pond, flood or spill with white wave lines;
* the place: kitchen, street, classroom, park, living room, office, store backdrops.

Two styles: ``synthetic`` (flat colours, PNG) and ``photo`` (muted palette,
surface texture, sensor noise, lens blur, vignette and a perspective warp,
JPEG), the stand-in for the paper's real-image (Visual Genome) check.
Image-QC flags add the paper's artifact classes: ``minor`` (a local smear),
``lighting`` (exposure, colour cast or banding) and ``severe`` (the scene
scrambled beyond recognition).

Every image is a pure function of its :class:`SceneSpec` (its own seed), so the
output is identical whatever the number of worker processes.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from mmscale_core.simulator.lexicon import OUTDOOR_PLACES

STYLES = ("synthetic", "photo")
MAX_IMAGE_SIZE = 336


@dataclass(frozen=True)
class SceneSpec:
    """Everything an image depends on."""

    image_id: str
    place: str
    cues: tuple[str, ...]
    qc: str
    seed: int
    stream: tuple[int, ...]

    def rng(self) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=self.stream))


Color = tuple[int, int, int]


def _jitter(rng: np.random.Generator, color: Color, amount: int = 18) -> Color:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in color)


class Canvas:
    """Relative-coordinate drawing on a square image (all positions in [0, 1])."""

    def __init__(self, size: int, rng: np.random.Generator):
        self.size = size
        self.rng = rng
        self.image = Image.new("RGB", (size, size))
        self.draw = ImageDraw.Draw(self.image)

    def box(self, x0, y0, x1, y1) -> list[float]:
        s = self.size
        return [x0 * s, y0 * s, max(x0, x1) * s, max(y0, y1) * s]

    def rect(self, x0, y0, x1, y1, fill, outline=None) -> None:
        self.draw.rectangle(self.box(x0, y0, x1, y1), fill=fill, outline=outline)

    def ellipse(self, x0, y0, x1, y1, fill, outline=None) -> None:
        self.draw.ellipse(self.box(x0, y0, x1, y1), fill=fill, outline=outline)

    def circle(self, x, y, r, fill) -> None:
        self.ellipse(x - r, y - r, x + r, y + r, fill)

    def polygon(self, points, fill) -> None:
        self.draw.polygon([(x * self.size, y * self.size) for x, y in points], fill=fill)

    def line(self, points, fill, width: float) -> None:
        self.draw.line([(x * self.size, y * self.size) for x, y in points], fill=fill,
                       width=max(1, int(round(width * self.size))))

    def gradient(self, y0, y1, top: Color, bottom: Color) -> None:
        s = self.size
        a, b = int(y0 * s), max(int(y0 * s) + 1, int(y1 * s))
        for y in range(a, b):
            t = (y - a) / max(1, b - a - 1)
            self.draw.line([(0, y), (s, y)], fill=tuple(int(top[i] + (bottom[i] - top[i]) * t) for i in range(3)))


# --------------------------------------------------------------------------- backdrops

SKY_DAY = ((120, 180, 235), (190, 225, 250))
SKY_NIGHT = ((8, 12, 40), (30, 38, 85))


def _sky(c: Canvas, y1: float, night: bool) -> None:
    top, bottom = SKY_NIGHT if night else SKY_DAY
    c.gradient(0, y1, top, bottom)
    if not night and c.rng.random() < 0.7:
        for _ in range(c.rng.integers(1, 4)):
            x, y, w = c.rng.uniform(0.05, 0.85), c.rng.uniform(0.04, y1 * 0.6), c.rng.uniform(0.08, 0.18)
            for dx in (0.0, w * 0.35, w * 0.7):
                c.ellipse(x + dx, y, x + dx + w * 0.5, y + w * 0.3, (245, 245, 250))


def _window(c: Canvas, x: float, y: float, w: float, h: float, night: bool) -> tuple[float, float, float, float]:
    c.rect(x - 0.01, y - 0.01, x + w + 0.01, y + h + 0.01, (235, 235, 230))
    top, bottom = SKY_NIGHT if night else SKY_DAY
    s = c.size
    for yy in range(int(y * s), int((y + h) * s)):
        t = (yy - y * s) / max(1.0, h * s)
        c.draw.line([(x * s, yy), ((x + w) * s, yy)],
                    fill=tuple(int(top[i] + (bottom[i] - top[i]) * t) for i in range(3)))
    c.line([(x + w / 2, y), (x + w / 2, y + h)], (235, 235, 230), 0.012)
    return x, y, w, h


def _street(c: Canvas, horizon: float, night: bool) -> None:
    _sky(c, horizon, night)
    x = -0.05
    while x < 1.0:
        w = c.rng.uniform(0.14, 0.26)
        top = c.rng.uniform(0.08, horizon - 0.1)
        color = _jitter(c.rng, (150, 120, 110) if c.rng.random() < 0.5 else (170, 170, 180), 25)
        c.rect(x, top, x + w, horizon, color)
        for wy in np.arange(top + 0.03, horizon - 0.05, 0.07):
            for wx in np.arange(x + 0.02, x + w - 0.04, 0.06):
                c.rect(wx, wy, wx + 0.03, wy + 0.035, (80, 100, 130))
        x += w + c.rng.uniform(0.0, 0.03)
    c.rect(0, horizon, 1, 1, _jitter(c.rng, (175, 175, 170), 10))
    c.line([(0, horizon + 0.03), (1, horizon + 0.03)], (140, 140, 135), 0.006)


def _park(c: Canvas, horizon: float, night: bool) -> None:
    _sky(c, horizon, night)
    c.rect(0, horizon, 1, 1, _jitter(c.rng, (95, 170, 75), 15))
    for _ in range(c.rng.integers(2, 5)):
        x = c.rng.uniform(0.02, 0.95)
        y = horizon + c.rng.uniform(0.0, 0.08)
        r = c.rng.uniform(0.06, 0.11)
        c.rect(x - 0.012, y - r, x + 0.012, y + 0.06, (110, 75, 40))
        c.circle(x, y - r * 1.3, r, _jitter(c.rng, (45, 120, 50), 20))
    if c.rng.random() < 0.6:
        bx, by = c.rng.uniform(0.05, 0.7), horizon + c.rng.uniform(0.12, 0.2)
        c.rect(bx, by, bx + 0.18, by + 0.025, (130, 90, 50))
        c.rect(bx, by - 0.04, bx + 0.18, by - 0.025, (130, 90, 50))


def _wall_and_floor(c: Canvas, floor: float, wall: Color, floor_color: Color) -> None:
    c.rect(0, 0, 1, floor, _jitter(c.rng, wall, 12))
    c.rect(0, floor, 1, 1, _jitter(c.rng, floor_color, 12))


def _kitchen(c: Canvas, floor: float, night: bool) -> dict:
    _wall_and_floor(c, floor, (235, 228, 205), (200, 185, 160))
    for gy in np.arange(0.05, floor, 0.055):
        c.line([(0, gy), (1, gy)], (215, 208, 190), 0.004)
    _window(c, c.rng.uniform(0.55, 0.7), 0.08, 0.22, 0.2, night)
    counter = floor - 0.04
    c.rect(0, counter - 0.18, 1, counter, _jitter(c.rng, (140, 95, 60), 15))
    c.rect(0, counter - 0.2, 1, counter - 0.18, (90, 90, 95))
    for cx in np.arange(0.02, 0.5, 0.16):
        c.rect(cx, 0.06, cx + 0.14, 0.24, _jitter(c.rng, (160, 110, 70), 15), outline=(100, 70, 40))
    stove_x = c.rng.uniform(0.05, 0.6)
    c.rect(stove_x, counter - 0.26, stove_x + 0.26, counter - 0.18, (40, 40, 45))
    for bx in (stove_x + 0.06, stove_x + 0.18):
        c.ellipse(bx - 0.04, counter - 0.245, bx + 0.04, counter - 0.2, (80, 80, 85))
    return {"fire_at": (stove_x + 0.13, counter - 0.24)}


def _classroom(c: Canvas, floor: float, night: bool) -> dict:
    _wall_and_floor(c, floor, (240, 230, 170), (170, 120, 80))
    bx = c.rng.uniform(0.05, 0.3)
    c.rect(bx - 0.015, 0.07, bx + 0.5, 0.35, (120, 90, 60))
    c.rect(bx, 0.085, bx + 0.485, 0.335, _jitter(c.rng, (40, 90, 60), 10))
    for _ in range(c.rng.integers(3, 7)):
        x0, y0 = bx + c.rng.uniform(0.02, 0.35), c.rng.uniform(0.11, 0.3)
        c.line([(x0, y0), (x0 + c.rng.uniform(0.04, 0.12), y0 + c.rng.uniform(-0.02, 0.02))], (235, 235, 235), 0.006)
    _window(c, c.rng.uniform(0.65, 0.78), 0.1, 0.18, 0.22, night)
    for row, y in enumerate((floor + 0.08, floor + 0.2)):
        for x in np.arange(0.03 + 0.05 * row, 0.95, 0.24):
            c.rect(x, y, x + 0.16, y + 0.03, (150, 100, 55))
            c.line([(x + 0.01, y + 0.03), (x + 0.01, y + 0.09)], (90, 90, 90), 0.008)
            c.line([(x + 0.15, y + 0.03), (x + 0.15, y + 0.09)], (90, 90, 90), 0.008)
    return {}


def _living_room(c: Canvas, floor: float, night: bool) -> dict:
    wall = _jitter(c.rng, (190, 160, 170) if c.rng.random() < 0.5 else (170, 190, 200), 15)
    _wall_and_floor(c, floor, wall, (150, 110, 80))
    for sx in np.arange(0.0, 1.0, 0.08):
        c.rect(sx, 0, sx + 0.02, floor, tuple(max(0, v - 12) for v in wall))
    _window(c, c.rng.uniform(0.05, 0.2), 0.08, 0.24, 0.24, night)
    c.ellipse(0.15, floor + 0.12, 0.85, floor + 0.3, _jitter(c.rng, (170, 60, 60), 30))
    sx = c.rng.uniform(0.35, 0.55)
    sofa = _jitter(c.rng, (70, 90, 150), 35)
    c.rect(sx, floor - 0.16, sx + 0.4, floor + 0.04, sofa)
    c.rect(sx - 0.03, floor - 0.08, sx + 0.43, floor + 0.06, tuple(max(0, v - 20) for v in sofa))
    c.rect(0.82, 0.12, 0.94, 0.24, (110, 80, 50))
    c.rect(0.835, 0.135, 0.925, 0.225, _jitter(c.rng, (200, 180, 120), 40))
    return {"fire_at": (c.rng.uniform(0.1, 0.3), floor + 0.02)}


def _office(c: Canvas, floor: float, night: bool) -> dict:
    _wall_and_floor(c, floor, (185, 195, 205), (120, 125, 130))
    _window(c, c.rng.uniform(0.6, 0.75), 0.08, 0.22, 0.2, night)
    for x in np.arange(0.02, 0.9, c.rng.uniform(0.3, 0.4)):
        y = floor + c.rng.uniform(-0.04, 0.06)
        c.rect(x, y - 0.16, x + 0.01, y + 0.02, (150, 150, 155))
        c.rect(x, y - 0.02, x + 0.26, y + 0.01, (170, 140, 100))
        c.rect(x + 0.07, y - 0.12, x + 0.19, y - 0.04, (30, 30, 35))
        c.rect(x + 0.08, y - 0.11, x + 0.18, y - 0.05, (90, 150, 220))
    return {}


def _store(c: Canvas, floor: float, night: bool) -> dict:
    _wall_and_floor(c, floor, (235, 235, 235), (210, 210, 200))
    x0, x1 = c.rng.uniform(0.0, 0.1), c.rng.uniform(0.8, 1.0)
    for y in np.linspace(0.1, floor - 0.05, 4):
        c.rect(x0, y, x1, y + 0.02, (140, 140, 150))
        x = x0 + 0.01
        while x < x1 - 0.04:
            w = c.rng.uniform(0.025, 0.05)
            h = c.rng.uniform(0.04, 0.08)
            c.rect(x, y - h, x + w, y, tuple(int(v) for v in c.rng.integers(40, 240, 3)))
            x += w + 0.006
    return {}


BACKDROPS = {"kitchen": _kitchen, "classroom": _classroom, "living_room": _living_room,
             "office": _office, "store": _store}


# --------------------------------------------------------------------------- hazards and people

def _road(c: Canvas, y: float, night: bool) -> None:
    c.rect(0, y, 1, y + 0.17, (60, 60, 66))
    for x in np.arange(c.rng.uniform(0, 0.1), 1.0, 0.14):
        c.rect(x, y + 0.08, x + 0.07, y + 0.092, (240, 240, 240))
    cx = c.rng.uniform(0.0, 0.72)
    body = tuple(int(v) for v in c.rng.integers(40, 230, 3))
    cy = y + c.rng.uniform(0.04, 0.08)
    c.rect(cx, cy, cx + 0.26, cy + 0.07, body)
    c.polygon([(cx + 0.05, cy), (cx + 0.08, cy - 0.05), (cx + 0.18, cy - 0.05), (cx + 0.21, cy)], body)
    c.rect(cx + 0.09, cy - 0.04, cx + 0.17, cy - 0.005, (170, 210, 235))
    for wx in (cx + 0.055, cx + 0.205):
        c.circle(wx, cy + 0.07, 0.025, (20, 20, 20))


def _water(c: Canvas, y: float, outdoor: bool) -> None:
    if outdoor:
        x0, x1 = c.rng.uniform(-0.2, 0.3), c.rng.uniform(0.7, 1.2)
        y1 = min(0.99, y + c.rng.uniform(0.18, 0.3))
    else:
        x0, x1 = c.rng.uniform(0.0, 0.4), c.rng.uniform(0.6, 1.0)
        y1 = min(0.99, y + c.rng.uniform(0.1, 0.18))
    c.ellipse(x0, y, x1, y1, _jitter(c.rng, (45, 110, 200), 15))
    for k in range(3):
        wy = y + (y1 - y) * (0.3 + 0.2 * k)
        pts = [(x0 + (x1 - x0) * (0.2 + 0.6 * t), wy + 0.012 * math.sin(t * 12 + k)) for t in np.linspace(0, 1, 12)]
        c.line(pts, (225, 240, 255), 0.008)


def _fire(c: Canvas, x: float, y: float, scale: float) -> None:
    for color, shrink in (((215, 40, 20), 1.0), ((250, 140, 20), 0.7), ((255, 225, 70), 0.42)):
        for _ in range(3):
            dx = c.rng.uniform(-0.05, 0.05) * scale
            h = c.rng.uniform(0.12, 0.2) * scale * shrink
            w = c.rng.uniform(0.035, 0.055) * scale * shrink
            c.polygon([(x + dx - w, y), (x + dx + w, y), (x + dx + w * 0.3, y - h * 0.6),
                       (x + dx, y - h), (x + dx - w * 0.3, y - h * 0.6)], color)


def _smoke(c: Canvas, x: float, y: float, scale: float) -> None:
    for k in range(3):
        c.circle(x + c.rng.uniform(-0.03, 0.03), y - (0.22 + 0.07 * k) * scale, 0.04 * scale * (1 + 0.4 * k),
                 (120, 120, 125))


SKIN = ((240, 200, 170), (200, 150, 110), (140, 95, 60), (95, 65, 45))
# Clothes: everyone but the child and the elderly person wears these, so that a bright yellow
# shirt (child) and a lavender cardigan (elderly) stay distinctive.
CLOTHES = ((60, 90, 160), (40, 130, 90), (170, 50, 50), (90, 90, 95), (30, 60, 80), (150, 80, 40),
           (200, 200, 210), (20, 20, 30), (100, 150, 200), (80, 40, 60))
CHILD_SHIRT = (250, 210, 30)
ELDERLY_CARDIGAN = (140, 60, 165)


def _clothes(rng: np.random.Generator) -> Color:
    return _jitter(rng, CLOTHES[int(rng.integers(0, len(CLOTHES)))], 12)


def _figure(c: Canvas, x: float, feet: float, height: float, shirt: Color, *, kind: str = "adult") -> None:
    """A standing person; ``kind`` adult / child (big head) / elderly (stooped, white hair, cane)."""
    skin = SKIN[int(c.rng.integers(0, len(SKIN)))]
    head_r = height * (0.14 if kind == "child" else 0.09)
    leg = height * (0.35 if kind == "child" else 0.45)
    torso_top = feet - height + 2 * head_r
    hip = feet - leg
    lean = height * 0.25 if kind == "elderly" else 0.0
    width = height * {"child": 0.22, "elderly": 0.2}.get(kind, 0.14)
    trouser = (60, 60, 90) if kind != "child" else _jitter(c.rng, (60, 100, 170), 30)
    c.line([(x - width * 0.3, hip), (x - width * 0.35, feet)], trouser, width * 0.35)
    c.line([(x + width * 0.3, hip), (x + width * 0.35, feet)], trouser, width * 0.35)
    c.polygon([(x - width / 2, hip), (x + width / 2, hip), (x + width / 2 + lean, torso_top),
               (x - width / 2 + lean, torso_top)], shirt)
    hx, hy = x + lean * 1.1, torso_top - head_r * 0.9
    c.circle(hx, hy, head_r, skin)
    hair = (235, 235, 235) if kind == "elderly" else tuple(int(v) for v in c.rng.integers(20, 120, 3))
    c.ellipse(hx - head_r, hy - head_r * 1.05, hx + head_r, hy - head_r * 0.2, hair)
    if kind == "elderly":  # white hair over the whole head, and a cane
        c.ellipse(hx - head_r * 1.15, hy - head_r * 1.2, hx + head_r * 1.15, hy + head_r * 0.1, (245, 245, 245))
        c.line([(x + width * 1.1 + lean * 0.6, hip - height * 0.12), (x + width * 1.3 + lean * 0.4, feet)],
               (70, 40, 15), width * 0.3)
        c.line([(x + width * 0.5 + lean * 0.8, hip - height * 0.14), (x + width * 1.1 + lean * 0.6, hip - height * 0.12)],
               ELDERLY_CARDIGAN, width * 0.25)


def _elderly(c: Canvas, x: float, feet: float, size: float) -> None:
    """An elderly person in a wheelchair: a big spoked wheel, white hair, a purple cardigan."""
    s = c.size
    r = 0.36 * size
    wx, wy = x, feet - r
    skin = SKIN[int(c.rng.integers(0, len(SKIN)))]
    seat = feet - r * 1.1
    c.rect(x - r * 0.9, seat - 0.55 * size, x - r * 0.75, seat, (70, 70, 80))          # backrest
    c.polygon([(x - r * 0.8, seat - 0.5 * size), (x + r * 0.2, seat - 0.5 * size),     # torso
               (x + r * 0.35, seat), (x - r * 0.8, seat)], _jitter(c.rng, ELDERLY_CARDIGAN, 10))
    c.line([(x + r * 0.2, seat), (x + r * 1.1, seat), (x + r * 1.1, feet)], (60, 60, 90), 0.09 * size)  # legs
    hx, hy, hr = x - r * 0.2, seat - 0.5 * size - 0.12 * size, 0.12 * size
    c.circle(hx, hy, hr, skin)
    c.ellipse(hx - hr * 1.15, hy - hr * 1.25, hx + hr * 1.15, hy + hr * 0.1, (245, 245, 245))  # white hair
    c.draw.ellipse(c.box(wx - r, wy - r, wx + r, wy + r), outline=(25, 25, 30), width=max(1, int(0.05 * size * s)))
    c.line([(wx - r * 0.7, wy - r * 0.7), (wx + r * 0.7, wy + r * 0.7)], (150, 150, 160), 0.02 * size)
    c.line([(wx - r * 0.7, wy + r * 0.7), (wx + r * 0.7, wy - r * 0.7)], (150, 150, 160), 0.02 * size)
    c.circle(wx, wy, 0.12 * r, (150, 150, 160))
    c.circle(x + r * 1.25, feet - 0.1 * r * 2, 0.2 * r, (25, 25, 30))                 # front caster


def _crowd(c: Canvas, ground: float) -> None:
    """A dense cluster of small figures (a texture of heads and bodies a CNN picks up locally)."""
    x0 = c.rng.uniform(0.0, 0.3)
    width = c.rng.uniform(0.45, 0.7)
    for _ in range(c.rng.integers(12, 20)):
        x = x0 + c.rng.uniform(0.0, width)
        feet = ground + c.rng.uniform(0.03, 0.14)
        _figure(c, x, feet, c.rng.uniform(0.12, 0.17), _clothes(c.rng))


# --------------------------------------------------------------------------- compose

def _scene(spec: SceneSpec, size: int, rng: np.random.Generator, style: str) -> Image.Image:
    c = Canvas(size, rng)
    cues = set(spec.cues)
    night = "night" in cues
    outdoor = spec.place in OUTDOOR_PLACES
    ground = rng.uniform(0.42, 0.52) if outdoor else rng.uniform(0.55, 0.66)
    info: dict = {}
    if spec.place == "street":
        _street(c, ground, night)
    elif spec.place == "park":
        _park(c, ground, night)
    else:
        info = BACKDROPS[spec.place](c, ground, night)

    if "water" in cues:
        _water(c, ground + rng.uniform(0.02, 0.12), outdoor)
    if "traffic" in cues:
        _road(c, rng.uniform(max(ground, 0.62), 0.8), night)
    if "crowd" in cues:
        _crowd(c, ground)
    # the actor, and the people the cues name, placed left to right with jitter
    slots = rng.permutation(np.linspace(0.13, 0.8, 4) + rng.uniform(-0.05, 0.05, 4))
    _figure(c, slots[0], rng.uniform(0.86, 0.97), rng.uniform(0.3, 0.36), _clothes(rng))
    if "elderly" in cues:
        _elderly(c, slots[1], rng.uniform(0.88, 0.97), rng.uniform(0.3, 0.36))
    if "child" in cues:
        feet = rng.uniform(0.88, 0.98)
        _figure(c, slots[2], feet, rng.uniform(0.19, 0.23), _jitter(rng, CHILD_SHIRT, 12), kind="child")
        bx = slots[2] + rng.choice([-1, 1]) * 0.07                     # a ball: children play
        c.circle(bx, feet - 0.03, 0.028, (230, 40, 40))
        c.line([(bx - 0.028, feet - 0.03), (bx + 0.028, feet - 0.03)], (250, 250, 250), 0.008)

    img = c.image
    if night:
        arr = np.asarray(img, dtype=np.float32)
        arr = arr * np.array([0.38, 0.4, 0.55], dtype=np.float32) + np.array([0, 0, 10], dtype=np.float32)
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
        c.image, c.draw = img, ImageDraw.Draw(img)
        if outdoor:
            c.circle(rng.uniform(0.1, 0.9), rng.uniform(0.06, 0.14), 0.04, (245, 240, 200))
            for _ in range(12):
                c.circle(rng.uniform(0, 1), rng.uniform(0, ground * 0.8), 0.004, (230, 230, 240))
        else:
            lx = rng.uniform(0.1, 0.9)
            c.line([(lx, 0), (lx, 0.08)], (60, 60, 60), 0.006)
            c.circle(lx, 0.1, 0.03, (255, 230, 150))
    if "fire" in cues:
        fx, fy = info.get("fire_at", (rng.uniform(0.15, 0.85), ground + rng.uniform(0.08, 0.2)))
        scale = rng.uniform(0.8, 1.2)
        _smoke(c, fx, fy, scale)
        _fire(c, fx, fy, scale)
    return c.image


# --------------------------------------------------------------------------- styles and artifacts

@lru_cache(maxsize=8)
def _vignette(size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    return (1.0 - 0.9 * (xx ** 2 + yy ** 2))[..., None]


_MUTE = (0.62 * np.eye(3) + 0.38 / 3).astype(np.float32)          # blend 38 % toward grey
_TINT = np.array([1.06, 1.0, 0.9], dtype=np.float32)                # warm tint


def _photo_style(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Muted warm palette, surface texture, vignette, perspective warp, lens blur, sensor noise."""
    s = img.width
    arr = np.asarray(img, dtype=np.float32) @ (_MUTE * _TINT)
    n = max(2, s // 16)
    tex = rng.standard_normal((n, n), dtype=np.float32) * 9.0
    arr += np.asarray(Image.fromarray(tex).resize((s, s), Image.BICUBIC))[..., None]
    arr *= _vignette(s)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    d = 0.08 * s
    # source quad corners in PIL's order: upper-left, lower-left, lower-right, upper-right
    corners = [(rng.uniform(0, d), rng.uniform(0, d)), (rng.uniform(0, d), s - rng.uniform(0, d)),
               (s - rng.uniform(0, d), s - rng.uniform(0, d)), (s - rng.uniform(0, d), rng.uniform(0, d))]
    img = img.transform((s, s), Image.QUAD, [v for xy in corners for v in xy], Image.BILINEAR)
    img = img.filter(ImageFilter.BoxBlur(radius=0.6 * s / 224))
    noise = rng.standard_normal((s, s, 3), dtype=np.float32) * 5.0
    arr = np.asarray(img, dtype=np.float32) + noise
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _artifact(img: Image.Image, qc: str, rng: np.random.Generator) -> Image.Image:
    s = img.width
    if qc == "minor":                       # a local smear, like a distorted limb or texture
        w = int(s * rng.uniform(0.2, 0.35))
        x, y = int(rng.integers(0, s - w)), int(rng.integers(0, s - w))
        patch = img.crop((x, y, x + w, y + w)).filter(ImageFilter.GaussianBlur(radius=max(1, s // 80)))
        arr = np.asarray(patch).copy()
        for row in range(arr.shape[0]):
            arr[row] = np.roll(arr[row], int(3 * math.sin(row / 4.0)), axis=0)
        img = img.copy()
        img.paste(Image.fromarray(arr), (x, y))
        return img
    if qc == "lighting":                    # exposure, colour cast or banding
        arr = np.asarray(img, dtype=np.float32)
        mode = int(rng.integers(0, 3))
        if mode == 0:
            arr = arr * 1.35 + 35
        elif mode == 1:
            arr = arr * np.array(rng.uniform(0.6, 1.3, 3), dtype=np.float32)
        else:
            arr = np.floor(arr / 64) * 64 + 32
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    if qc == "severe":                      # scrambled beyond recognition
        tiles = 8
        t = s // tiles
        arr = np.asarray(img)[: t * tiles, : t * tiles]
        blocks = arr.reshape(tiles, t, tiles, t, 3).swapaxes(1, 2).reshape(tiles * tiles, t, t, 3)
        blocks = blocks[rng.permutation(tiles * tiles)]
        arr = blocks.reshape(tiles, tiles, t, t, 3).swapaxes(1, 2).reshape(t * tiles, t * tiles, 3)
        img = Image.fromarray(np.ascontiguousarray(arr)).resize((s, s)).filter(
            ImageFilter.GaussianBlur(radius=max(2, s // 40)))
        arr = np.asarray(img, dtype=np.float32) + rng.normal(0, 25, (s, s, 3)).astype(np.float32)
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
        return img.filter(ImageFilter.GaussianBlur(radius=1))
    return img


def render(spec: SceneSpec, size: int = 224, style: str = "synthetic") -> Image.Image:
    """The image of one scene (deterministic in ``spec``)."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}")
    rng = spec.rng()
    img = _scene(spec, size, rng, style)
    if style == "photo":
        img = _photo_style(img, rng)
    return _artifact(img, spec.qc, rng)


def image_suffix(style: str) -> str:
    return ".jpg" if style == "photo" else ".png"


def _render_chunk(args: tuple[list[SceneSpec], str, int, str]) -> int:
    specs, out_dir, size, style = args
    for spec in specs:
        img = render(spec, size, style)
        path = Path(out_dir) / f"{spec.image_id}{image_suffix(style)}"
        tmp = path.with_name(f".{path.name}.tmp")
        if style == "photo":
            img.save(tmp, format="JPEG", quality=90)
        else:
            img.save(tmp, format="PNG", optimize=False, compress_level=1)
        os.replace(tmp, path)
    return len(specs)


def render_all(specs: list[SceneSpec], out_dir: str | os.PathLike, size: int = 224, style: str = "synthetic",
               workers: int | None = None, progress: bool = False) -> None:
    """Render and save every scene under ``out_dir`` (a process pool over ``workers`` cores)."""
    if not 16 <= size <= MAX_IMAGE_SIZE:
        raise ValueError(f"image size must be between 16 and {MAX_IMAGE_SIZE} pixels")
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    workers = workers or min(2, os.cpu_count() or 1)
    chunk = max(1, min(200, len(specs) // (4 * workers) + 1))
    jobs = [(specs[i:i + chunk], str(out_dir), size, style) for i in range(0, len(specs), chunk)]
    from tqdm import tqdm

    bar = tqdm(total=len(specs), desc=f"render {style}", unit="img", disable=not progress)
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            bar.update(_render_chunk(job))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for n in pool.map(_render_chunk, jobs):
                bar.update(n)
    bar.close()
