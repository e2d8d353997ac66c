"""A band of text wrapped at words, drawn with OpenCV: the RIMs raster's legend and a recorded episode's mission."""
from __future__ import annotations

import numpy as np

FONT_SCALE = 0.35  # OpenCV's Hershey simplex font: about 7 px per character, 12 px per line


def text_band(text: str, width: int, line_height: int, background: tuple[int, int, int],
              colour: tuple[int, int, int]) -> np.ndarray:
    """RGB band ``[lines * line_height + 4, width, 3]`` (at least one line) with ``text`` wrapped at words
    to ``width``.

    :param line_height: pixels per line of text
    :param background: the band's colour (RGB)
    :param colour: the text's colour (RGB)
    """
    import cv2  # only where a band is drawn: the training process that never draws one does not load it

    lines: list[str] = []
    for word in text.split():
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and cv2.getTextSize(candidate, cv2.FONT_HERSHEY_SIMPLEX, FONT_SCALE, 1)[0][0] <= width - 4:
            lines[-1] = candidate
        else:
            lines.append(word)
    band = np.full((max(len(lines), 1) * line_height + 4, width, 3), background, dtype=np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(band, line, (2, (i + 1) * line_height), cv2.FONT_HERSHEY_SIMPLEX, FONT_SCALE, colour, 1,
                    cv2.LINE_AA)
    return band
