"""Tray icon images, drawn with Pillow: one colour per state, with a letter so colour is not the only cue."""

from __future__ import annotations

from functools import cache

from PIL import Image, ImageDraw, ImageFont

from tray.state import Light

COLOURS: dict[Light, tuple[int, int, int]] = {
    Light.OK: (27, 110, 58),
    Light.ATTENTION: (230, 145, 0),
    Light.ERROR: (179, 38, 30),
    Light.OFFLINE: (128, 128, 128),
}
_MARKS = {Light.OK: "R", Light.ATTENTION: "!", Light.ERROR: "X", Light.OFFLINE: "?"}  # ASCII: the default font has it


@cache
def icon_image(light: Light, size: int = 64) -> Image.Image:
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.ellipse((2, 2, size - 3, size - 3), fill=COLOURS[light] + (255,))
    mark = _MARKS[light]
    font = ImageFont.load_default(size=int(size * 0.62))
    box = draw.textbbox((0, 0), mark, font=font)
    width, height = box[2] - box[0], box[3] - box[1]
    draw.text(((size - width) / 2 - box[0], (size - height) / 2 - box[1]), mark, font=font, fill=(255, 255, 255, 255))
    return image
