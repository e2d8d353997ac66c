"""The RIMs activation raster reads on TensorBoard's white card: active cells dark, a legend in the image."""
from __future__ import annotations

import numpy as np

from agents.rims_logging import MIN_RASTER_WIDTH, RASTER_CELL, activation_raster

K, T = 4, 128


def _mask() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    mask = np.zeros((T, K), dtype=bool)
    for t in range(T):
        mask[t, rng.choice(K, 2, replace=False)] = True
    starts = np.zeros(T, dtype=bool)
    starts[[0, 50]] = True
    return mask, starts


def _cell(image: np.ndarray, rim: int, step: int, columns: int) -> float:
    """The brightness (mean of R, G, B) in the middle of one cell."""
    return float(image[rim * RASTER_CELL[0] + RASTER_CELL[0] // 2, step * columns + columns // 2].mean())


def test_active_cells_are_darker_than_inactive_ones_and_starts_are_red():
    mask, starts = _mask()
    image = activation_raster(mask, starts)
    assert image.dtype == np.uint8 and image.shape[1] == T * RASTER_CELL[1]
    for step in range(T):
        for rim in range(K):
            other = next(r for r in range(K) if mask[step, r] != mask[step, rim])  # k=2 of 4: both kinds each step
            if mask[step, rim]:
                assert _cell(image, rim, step, RASTER_CELL[1]) < _cell(image, other, step, RASTER_CELL[1]) - 100
    for rim in range(K):  # step 0 starts an episode: red cells, the active ones darker
        red, green, blue = (int(v) for v in image[rim * RASTER_CELL[0] + 4, 0])
        assert red > green + 50 and red > blue + 50
    dark = [_cell(image, r, 0, RASTER_CELL[1]) for r in range(K) if mask[0, r]]
    light = [_cell(image, r, 0, RASTER_CELL[1]) for r in range(K) if not mask[0, r]]
    assert max(dark) < min(light)


def test_the_legend_band_lies_below_the_rims_and_holds_text():
    mask, starts = _mask()
    image = activation_raster(mask, starts)
    rows = K * RASTER_CELL[0]
    band = image[rows:]
    assert band.shape[0] >= 12  # at least one line of text
    assert (band.mean(axis=2) > 240).mean() > 0.7  # a light band ...
    assert (band.mean(axis=2) < 100).sum() > 100  # ... with dark text in it
    assert activation_raster(mask[:, :3], starts).shape[0] == 3 * RASTER_CELL[0] + band.shape[0]  # one row per RIM


def test_a_short_rollout_gets_wide_columns_and_a_long_one_two_pixels_per_step():
    mask, starts = _mask()
    short = activation_raster(mask[:16], starts[:16])
    assert short.shape[1] == MIN_RASTER_WIDTH  # 16 steps x 16 px: room for the legend
    for step in range(16):
        cells = [_cell(short, rim, step, 16) for rim in range(K)]
        assert [c < 128 for c in cells] == list(mask[step])  # each step's column drawn from its own mask
    assert activation_raster(np.repeat(mask, 3, axis=0), np.repeat(starts, 3)).shape[1] == 3 * T * RASTER_CELL[1]
