"""Overlays prepared off the GUI thread: display-grid size, colour mapping, lungs-only, outline, thumbnails,
and the analysis worker handing them to the window with the result."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tests.ui.tiny_analyzer import ScriptedAnalyzer, lung_box_mask

TIMEOUT = 15_000


def test_display_shape_keeps_aspect_and_never_enlarges():
    from cxrviewer.ui.overlay_data import display_shape

    assert display_shape((2500, 2048), 1024) == (1024, 839)
    assert display_shape((300, 200), 1024) == (300, 200)


def test_heatmap_is_reduced_colour_mapped_and_lungs_only():
    from cxrviewer.ui.overlay_data import heatmap_lut, prepare_heatmap

    h, w = 2500, 2048
    yy, xx = np.mgrid[0:h, 0:w]
    heat = np.clip(1.0 - np.hypot(xx - 600, yy - 1250) / 1200.0, 0, 1).astype(np.float32)
    heat[0, 0] = np.nan
    mask = lung_box_mask((h, w))
    original = heat.copy()
    d = prepare_heatmap(heat, mask, max_side=1024)
    np.testing.assert_array_equal(heat, original)  # the result's own map is untouched
    assert d.values.shape == d.values_lungs.shape == (1024, 839) and d.rgba.shape == (1024, 839, 4)
    assert d.values.dtype == np.float32 and d.values.min() >= 0.0 and d.values.max() <= 1.0
    small_mask = cv2.resize(mask.astype(np.uint8), (839, 1024), interpolation=cv2.INTER_NEAREST) > 0
    assert np.all(d.values_lungs[~small_mask] == 0) and d.values_lungs[small_mask].max() > 0.5
    lut = heatmap_lut()
    idx = (d.values * 255 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(d.rgba, lut[idx])
    assert np.all(d.rgba_lungs[~small_mask] == lut[0])
    assert abs(float(d.values[512, 246]) - float(heat[1250, 600])) < 0.02  # the peak stays where it was


def test_mask_outline_at_full_resolution_and_fill_on_display_grid():
    from cxrviewer.ui.overlay_data import MASK_FILL_ALPHA, prepare_mask

    mask = np.zeros((2000, 1600), bool)
    mask[400:1600, 200:700] = True
    d = prepare_mask(mask, max_side=500)
    r = d.outline.boundingRect()
    assert (r.left(), r.top(), r.right(), r.bottom()) == pytest.approx((200.5, 400.5, 699.5, 1599.5))
    assert d.fill.shape == (500, 400, 4)
    assert d.fill[250, 100, 3] == MASK_FILL_ALPHA and d.fill[10, 10, 3] == 0


def test_thumbnail_image_decodes_and_scales():
    from cxrviewer.ui.overlay_data import thumbnail_image

    ok, png = cv2.imencode(".png", np.full((300, 150), 128, np.uint8))
    img = thumbnail_image(png.tobytes(), 96)
    assert (img.width(), img.height()) == (48, 96)
    assert thumbnail_image(None) is None and thumbnail_image(b"not a png") is None


def test_view_results_arrive_with_prepared_overlays(qtbot, make_window, png_files):
    ok, png = cv2.imencode(".png", np.full((64, 64), 200, np.uint8))
    analyzer = ScriptedAnalyzer(thumbnail_png=png.tobytes())
    w = make_window(analyzer.factory)
    got = []
    w.analysis.result_ready.connect(lambda tag, result, prepared: got.append((tag[0], result, prepared)))
    with qtbot.waitSignal(w.analysis_shown, timeout=TIMEOUT):
        w.open_paths(png_files)  # the first is shown, all three make the worklist
    channel, result, prepared = got[-1]
    assert channel == "view" and prepared is not None
    assert prepared.heatmap_source is result.heatmap and prepared.mask_source is result.lung_mask
    assert w.view.heatmap.prepared is prepared.heatmap  # drawn as prepared, not recomputed
    assert w.view.mask.outline.path() == prepared.mask.outline
    assert len(prepared.thumbnails) == 4 and w.similar.list.item(0).icon().availableSizes()
    w.worklist.analyse_button.click()  # a worklist item: no display data is made for it
    qtbot.waitUntil(lambda: any(c == "batch" for c, _, _ in got), timeout=TIMEOUT)
    assert all(p is None for c, _, p in got if c == "batch")
