"""``engine.tiling``: the tile grid, box-local masks, and the merging of tiles' detections, on hand-made
detections whose right answer is known."""

import pytest
import torch

from maskrcnn.data.mask_codec import masks_to_rles
from maskrcnn.engine.tiling import (
    TileCap,
    TileOptions,
    TooManyTiles,
    as_tile_options,
    axis_starts,
    cap_note,
    concat_pools,
    cut_flags,
    local_masks,
    local_masks_to_dense,
    local_masks_to_rles,
    merge_detections,
    overlap_note,
    shift_to_image,
    tile_cap,
    tile_grid,
    top_detections,
)
from maskrcnn.ops.paste import paste_masks_in_image

# ------------------------------------------------------------------------------------------------
# grid


@pytest.mark.parametrize("length, size, overlap", [(1000, 256, 0.2), (1001, 256, 0.0), (257, 256, 0.5),
                                                   (4000, 1024, 0.25), (300, 100, 0.9)])
def test_axis_starts_cover_with_the_overlap_and_meet_both_edges(length, size, overlap):
    starts = axis_starts(length, size, overlap)
    assert starts[0] == 0 and starts[-1] == length - size  # aligned to both edges, never beyond
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert all(0 < g <= size - round(size * overlap) for g in gaps)  # overlap at least the requested
    assert max(gaps) - min(gaps) <= 1  # spread evenly
    covered = torch.zeros(length, dtype=torch.int64)
    for s in starts:
        covered[s : s + size] += 1
    assert covered.min() >= 1


def test_tile_grid_covers_the_image_with_equal_tiles_inside_it():
    windows = tile_grid(700, 1000, 256, 0.2)  # (T, 4) xyxy
    assert windows.shape == (len(axis_starts(700, 256, 0.2)) * len(axis_starts(1000, 256, 0.2)), 4)
    assert ((windows[:, 2] - windows[:, 0]) == 256).all() and ((windows[:, 3] - windows[:, 1]) == 256).all()
    assert windows[:, :2].min() == 0 and windows[:, 2].max() == 1000 and windows[:, 3].max() == 700
    covered = torch.zeros(700, 1000, dtype=torch.int64)
    for x0, y0, x1, y1 in windows.tolist():
        covered[y0:y1, x0:x1] += 1
    assert covered.min() >= 1
    assert covered.max() == 4  # overlaps of 2 x 2 tiles at the corners


def test_an_image_smaller_than_a_tile_is_one_tile():
    assert tile_grid(90, 120, 256, 0.2).tolist() == [[0, 0, 120, 90]]
    assert tile_grid(100, 600, 256, 0.0).tolist() == [
        [0, 0, 256, 100], [172, 0, 428, 100], [344, 0, 600, 100]]  # spread evenly, the last at the edge


def test_tile_options_refuse_bad_values():
    with pytest.raises(ValueError, match="tile size must be an integer >= 32"):
        TileOptions(size=16)
    with pytest.raises(ValueError, match="tile overlap must be a fraction in"):
        TileOptions(size=256, overlap=1.0)
    with pytest.raises(ValueError, match="tile scale must be a positive number"):
        TileOptions(size=256, scale=0)
    with pytest.raises(TypeError, match="tile must be None, a tile size"):
        as_tile_options("big")
    assert as_tile_options(512) == TileOptions(size=512, overlap=0.2, full_image=True)


def test_cut_flags_only_for_interior_tile_edges():
    boxes = torch.tensor([[0.0, 10, 20, 30],  # touches the image's left border: not cut
                          [50, 10, 99, 30],  # reaches the tile's right edge (interior): cut
                          [40, 40, 60, 60],  # inside: not cut
                          [30, 97, 40, 100]])  # bottom edge of the tile is the image's border: not cut
    assert cut_flags(boxes, [0, 0, 100, 100], (100, 300), margin=2).tolist() == [False, True, False, False]


# ------------------------------------------------------------------------------------------------
# box-local masks


@pytest.mark.parametrize("method", ["torchvision", "grid_sample"])
def test_local_masks_equal_the_pasted_masks(method):
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(6, 1, 28, 28, generator=g)
    boxes = torch.tensor([[5.0, 7, 40, 30], [-10, -5, 20, 25], [50, 40, 90, 75], [60, 10, 61, 11],
                          [30, 30, 30, 30], [70, 60, 130, 110]])  # partly outside, tiny, empty, outside
    dense = paste_masks_in_image(probs, boxes, (80, 100), method=method, threshold=0.5)  # (D, H, W)
    origins, bitmaps = local_masks(probs, boxes, (80, 100), method=method, threshold=0.5)
    assert bitmaps[4].shape == (0, 0)
    assert all(b.shape[0] * b.shape[1] < 80 * 100 for b in bitmaps)  # each only its own extent
    assert torch.equal(local_masks_to_dense(origins, bitmaps, (80, 100)), dense)
    assert local_masks_to_rles(origins, bitmaps, (80, 100)) == masks_to_rles(dense)


# ------------------------------------------------------------------------------------------------
# merging: an image 100 x 200 (H x W), tile A = [0, 120) and tile B = [80, 200) in x, full height


H, W = 100, 200
TILE_A, TILE_B = [0, 0, 120, 100], [80, 0, 200, 100]


def _rect_det(rects, window, label=1):
    """A tile's detections of filled rectangles (x0, y0, x1, y1, score) given in image pixels, as the
    tile saw them: clipped to the window, in the window's pixels, masks box-local."""
    x0, y0, x1, y1 = window
    boxes, scores, origins, bitmaps = [], [], [], []
    for rx0, ry0, rx1, ry1, score in rects:
        cx0, cy0, cx1, cy1 = max(rx0, x0), max(ry0, y0), min(rx1, x1), min(ry1, y1)
        boxes.append([cx0 - x0, cy0 - y0, cx1 - x0, cy1 - y0])
        scores.append(score)
        origins.append([cy0 - y0, cx0 - x0])
        bitmaps.append(torch.ones(cy1 - cy0, cx1 - cx0, dtype=torch.bool))
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "scores": torch.tensor(scores),
            "labels": torch.full((len(rects),), label), "origins": torch.tensor(origins).reshape(-1, 2),
            "bitmaps": bitmaps}


def _pool(*parts):
    """parts: (det, window); each part its own source."""
    return concat_pools([shift_to_image(det, window, (H, W), source=s, margin=2)
                         for s, (det, window) in enumerate(parts)])


def _dense(pool):
    return local_masks_to_dense(pool["origins"], pool["bitmaps"], (H, W))


def _filled(x0, y0, x1, y1):
    out = torch.zeros(H, W, dtype=torch.bool)
    out[y0:y1, x0:x1] = True
    return out


def test_an_object_cut_by_the_tile_edges_comes_out_once_with_its_union_mask_and_full_box():
    # one object x 60..140: tile A sees 60..120 (cut at its right edge), tile B 80..140 (cut at its left)
    pool = _pool((_rect_det([(60, 30, 140, 60, 0.8)], TILE_A), TILE_A),
                 (_rect_det([(60, 30, 140, 60, 0.7)], TILE_B), TILE_B))
    assert pool["cut"].tolist() == [True, True]
    merged = merge_detections(pool)
    assert merged["boxes"].tolist() == [[60.0, 30.0, 140.0, 60.0]]
    assert merged["scores"].tolist() == [pytest.approx(0.8)]
    assert torch.equal(_dense(merged)[0], _filled(60, 30, 140, 60))


def test_boxes_alone_merge_cut_pieces_too():
    pool = _pool((_rect_det([(60, 30, 140, 60, 0.8)], TILE_A), TILE_A),
                 (_rect_det([(60, 30, 140, 60, 0.7)], TILE_B), TILE_B))
    for key in ("origins", "bitmaps"):
        del pool[key]
    assert merge_detections(pool)["boxes"].tolist() == [[60.0, 30.0, 140.0, 60.0]]


def test_two_nearby_objects_stay_two_and_duplicates_in_the_overlap_go():
    # both in the overlap (x 80..120), seen whole by both tiles: four detections, two objects
    objects = [(84, 10, 98, 40, 0.9), (100, 10, 114, 40, 0.6)]
    pool = _pool((_rect_det(objects, TILE_A), TILE_A), (_rect_det(objects, TILE_B), TILE_B))
    assert not pool["cut"].any()
    merged = merge_detections(pool)
    assert sorted(merged["boxes"].tolist()) == [[84.0, 10.0, 98.0, 40.0], [100.0, 10.0, 114.0, 40.0]]


def test_overlapping_boxes_of_separate_masks_stay_two():
    # an L-shaped mask and a square in its corner: boxes overlap (IoS 1), masks do not
    det_a = _rect_det([(84, 10, 114, 40, 0.9)], TILE_A)
    det_a["bitmaps"][0][6:, 6:] = False  # the L: the square's area removed
    det_b = _rect_det([(90, 16, 114, 40, 0.8)], TILE_B)
    merged = merge_detections(_pool((det_a, TILE_A), (det_b, TILE_B)))
    assert merged["boxes"].shape[0] == 2


def test_classes_are_never_merged():
    pool = _pool((_rect_det([(60, 30, 140, 60, 0.8)], TILE_A, label=1), TILE_A),
                 (_rect_det([(60, 30, 140, 60, 0.7)], TILE_B, label=2), TILE_B))
    merged = merge_detections(pool)
    assert sorted(merged["labels"].tolist()) == [1, 2]
    assert sorted(merged["boxes"].tolist()) == [[60.0, 30.0, 120.0, 60.0], [80.0, 30.0, 140.0, 60.0]]


def test_a_whole_detection_is_kept_as_it_is_over_the_cut_pieces():
    # the whole image saw the object whole (a coarser mask: one row short); the tiles saw pieces
    whole = _rect_det([(60, 30, 140, 59, 0.6)], [0, 0, W, H])
    pool = _pool((_rect_det([(60, 30, 140, 60, 0.8)], TILE_A), TILE_A),
                 (_rect_det([(60, 30, 140, 60, 0.7)], TILE_B), TILE_B), (whole, [0, 0, W, H]))
    merged = merge_detections(pool)
    assert merged["boxes"].tolist() == [[60.0, 30.0, 140.0, 59.0]]
    assert merged["scores"].tolist() == [pytest.approx(0.6)]
    assert torch.equal(_dense(merged)[0], _filled(60, 30, 140, 59))


def test_pieces_of_an_object_wider_than_a_tile_chain_across_three_tiles():
    windows = [[0, 0, 80, 100], [60, 0, 140, 100], [120, 0, 200, 100]]
    parts = [(_rect_det([(20, 40, 180, 50, 0.5 + 0.1 * i)], w), w) for i, w in enumerate(windows)]
    merged = merge_detections(_pool(*parts))  # the middle piece is cut on both sides
    assert merged["boxes"].tolist() == [[20.0, 40.0, 180.0, 50.0]]
    assert torch.equal(_dense(merged)[0], _filled(20, 40, 180, 50))


def test_a_small_object_inside_a_large_ones_box_is_not_swallowed():
    # both tiles see a big object (cut) with a hole and a small one in the hole, inside the overlap
    big, small = (30, 10, 150, 90, 0.9), (100, 40, 110, 50, 0.8)
    det_a, det_b = _rect_det([big, small], TILE_A), _rect_det([big, small], TILE_B)
    det_a["bitmaps"][0][30:40, 70:80] = False  # the big object's mask leaves the small one out
    det_b["bitmaps"][0][30:40, 20:30] = False  # (its piece in B starts at x = 80)
    pool = _pool((det_a, TILE_A), (det_b, TILE_B))
    assert pool["cut"].tolist() == [True, False, True, False]
    merged = merge_detections(pool)
    assert sorted(merged["boxes"].tolist()) == [[30.0, 10.0, 150.0, 90.0], [100.0, 40.0, 110.0, 50.0]]


def test_top_detections_keeps_the_best_in_order():
    rects = [(0, 0, 10, 10, 0.2), (20, 0, 30, 10, 0.9), (40, 0, 50, 10, 0.5)]
    pool = _pool((_rect_det(rects, TILE_A), TILE_A))
    top = top_detections(merge_detections(pool), 2)
    assert top["scores"].tolist() == [pytest.approx(0.9), pytest.approx(0.5)]
    assert len(top["bitmaps"]) == 2 and top["bitmaps"][0].shape == (10, 10)


def test_a_grid_over_max_tiles_is_refused_with_its_count_before_it_is_listed():
    from maskrcnn.engine.tiling import TileOptions, axis_count, check_tile_count

    assert all(axis_count(n, 32, ov) == len(axis_starts(n, 32, ov)) for n in (10, 32, 33, 500, 4000)
               for ov in (0.0, 0.2, 0.99))
    assert check_tile_count(150, 200, TileOptions(size=64, overlap=0.2)) == 12
    with pytest.raises(ValueError) as err:
        check_tile_count(4000, 4000, TileOptions(size=32, overlap=0.99))
    assert str(err.value).startswith("a 4000x4000 image cut into 32-pixel tiles overlapping by 0.99 takes "
                                     "15752961 tiles (3969 x 3969), over the limit of 10000")
    with pytest.raises(ValueError, match="max_tiles must be an integer >= 1"):
        TileOptions(size=64, max_tiles=0)


def test_a_small_separate_object_cut_by_a_tile_edge_inside_a_large_one_is_kept():
    # a big object (x 30..150) seen whole by the whole image, whose coarse mask fills its silhouette and
    # so covers a small object of the same class in front of it (x 110..120, cut by tile A's right edge
    # at 120); the tiles see the big one in pieces, only tile A sees the small one (too small at 1/6)
    big, small = (30, 10, 150, 90, 0.9), (110, 40, 120, 50, 0.8)
    det_a, det_b = _rect_det([small, big], TILE_A), _rect_det([big], TILE_B)
    det_a["bitmaps"][1][30:40, 80:90] = False  # the tile's fine mask leaves the small one out
    det_b["bitmaps"][0][30:40, 30:40] = False  # (x 110..120 in B's pixels start at 80)
    whole = _rect_det([(30, 10, 150, 89, 0.9)], [0, 0, W, H])  # coarse: a row short, no hole
    pool = _pool((det_a, TILE_A), (det_b, TILE_B), (whole, [0, 0, W, H]))
    assert pool["cut"].tolist() == [True, True, True, False]  # the small one reaches A's interior edge
    merged = merge_detections(pool)
    # the big one once (the whole image's, kept as it is), the small one kept as tile A saw it
    assert merged["boxes"].tolist() == [[30.0, 10.0, 150.0, 89.0], [110.0, 40.0, 120.0, 50.0]]
    assert merged["source"].tolist() == [2, 0]
    assert torch.equal(_dense(merged)[1], _filled(110, 40, 120, 50))


def test_a_small_whole_object_does_not_swallow_a_large_ones_piece():
    # no whole image: the big object is cut in both tiles; the small one, inside tile B and inside the
    # big one's silhouette in the overlap, is whole (no cut edge) and must neither lead the big pieces
    # nor join them
    big, small = (30, 10, 150, 90, 0.7), (90, 40, 100, 50, 0.9)
    det_a, det_b = _rect_det([big], TILE_A), _rect_det([big, small], TILE_B)
    det_b["bitmaps"][0][40:50, 10:20] = False  # B's mask of the big one leaves the small one out
    pool = _pool((det_a, TILE_A), (det_b, TILE_B))
    assert pool["cut"].tolist() == [True, True, False]
    merged = merge_detections(pool)
    assert merged["boxes"].tolist() == [[90.0, 40.0, 100.0, 50.0], [30.0, 10.0, 150.0, 90.0]]
    assert torch.equal(_dense(merged)[1], _filled(30, 10, 150, 90))  # A's piece covers the small one's
    # place (its fine mask there is the union's)


# ------------------------------------------------------------------------------------------------
# the pairwise overlaps, all pairs at once, against the definition on dense masks


def _random_pool(seed, masks=True):
    """About 300 detections of 2 classes from a 2 x 2 grid of 120-pixel tiles over the 100 x 200 image
    and the whole image: random boxes, speckled masks (some empty), some reaching the tiles' edges."""
    g = torch.Generator().manual_seed(seed)
    windows = [[0, 0, 120, 64], [80, 0, 200, 64], [0, 36, 120, 100], [80, 36, 200, 100], [0, 0, W, H]]
    parts = []
    for x0, y0, x1, y1 in windows:
        n = 60
        lo = torch.stack([torch.randint(x0, x1 - 1, (n,), generator=g),
                          torch.randint(y0, y1 - 1, (n,), generator=g)], dim=1)  # (n, 2) image x, y
        hi = torch.minimum(lo + torch.randint(1, 40, (n, 2), generator=g), torch.tensor([x1, y1]))
        det = {"boxes": (torch.cat([lo, hi], dim=1) - torch.tensor([x0, y0, x0, y0])).float()
               + torch.rand(n, 4, generator=g) * torch.tensor([0.5, 0.5, -0.5, -0.5]),
               "scores": torch.rand(n, generator=g), "labels": torch.randint(1, 3, (n,), generator=g)}
        if masks:
            det["origins"] = torch.flip(lo - torch.tensor([x0, y0]), dims=[1])  # (n, 2) (y, x) in the tile
            det["bitmaps"] = [torch.rand(int(b - a), int(d - c), generator=g) < 0.7
                              for (c, a), (d, b) in zip(lo.tolist(), hi.tolist())]
            det["bitmaps"][::9] = [torch.zeros(0, 0, dtype=torch.bool)] * len(det["bitmaps"][::9])
            det["origins"][::9] = 0
        parts.append((det, [x0, y0, x1, y1]))
    return _pool(*parts)


def _box_area(box):
    return max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)


def _reference_overlaps(pool, ii, jj):
    """The definition, pair by pair in Python numbers: IoU of two whole detections, intersection over the
    larger of two where one is cut, inside the window both sources share; dense masks, or boxes."""
    dense = _dense(pool).numpy() if "bitmaps" in pool else None
    out = []
    for i, j in zip(ii.tolist(), jj.tolist()):
        cut = bool(pool["cut"][i]) or bool(pool["cut"][j])
        wi, wj = pool["windows"][i].tolist(), pool["windows"][j].tolist()
        x0, y0, x1, y1 = (max(wi[0], wj[0]), max(wi[1], wj[1]), min(wi[2], wj[2]), min(wi[3], wj[3])) \
            if cut else (0, 0, W, H)
        if dense is not None:
            mi, mj = dense[i, y0:y1, x0:x1], dense[j, y0:y1, x0:x1]
            inter, a, b = int((mi & mj).sum()), int(mi.sum()), int(mj.sum())
        else:
            bi, bj = pool["boxes"][i].tolist(), pool["boxes"][j].tolist()
            bi = [max(bi[0], x0), max(bi[1], y0), min(bi[2], x1), min(bi[3], y1)]
            bj = [max(bj[0], x0), max(bj[1], y0), min(bj[2], x1), min(bj[3], y1)]
            a, b = _box_area(bi), _box_area(bj)
            inter = _box_area([max(bi[0], bj[0]), max(bi[1], bj[1]), min(bi[2], bj[2]), min(bi[3], bj[3])])
        out.append(0.0 if inter <= 0 else inter / max(a, b) if cut else inter / (a + b - inter))
    return out


@pytest.mark.parametrize("masks, pair_pixels", [(True, None), (True, 7), (False, None)])
def test_all_pairs_overlaps_at_once_equal_the_definition_bit_for_bit(masks, pair_pixels, monkeypatch):
    from maskrcnn.engine import tiling

    if pair_pixels is not None:  # chunks of a few pairs, and pairs over the chunk size on their own
        monkeypatch.setattr(tiling, "PAIR_PIXELS", pair_pixels)
    pool = _random_pool(0, masks)
    ii, jj = tiling._candidate_pairs(pool["boxes"], pool["windows"], pool["source"])  # all classes
    values = tiling._pair_overlaps(pool, ii, jj)
    assert values.dtype == torch.float64 and len(ii) > 1000
    assert pool["cut"].sum() > 30 and (values > 0).sum() > 300  # cut pieces and real overlaps in it
    assert values.tolist() == _reference_overlaps(pool, ii, jj)  # exactly: same numbers, same divisions


def test_overlaps_of_hand_made_pairs():
    from maskrcnn.engine.tiling import _pair_overlaps

    # two whole 10 x 10 squares in the overlap sharing 5 x 10 (IoU 50 / 150); a piece cut at A's edge
    # (x 110..120) and B's whole view of that object (x 110..130): inside A ∩ B (x 80..120) they are
    # one 10 x 10 square (1.0); an empty mask overlaps nothing
    det_a = _rect_det([(85, 10, 95, 20, 0.9), (110, 40, 130, 50, 0.8), (100, 70, 110, 80, 0.7)], TILE_A)
    det_b = _rect_det([(90, 10, 100, 20, 0.9), (110, 40, 130, 50, 0.8), (100, 70, 110, 80, 0.7)], TILE_B)
    det_b["bitmaps"][2] = torch.zeros(0, 0, dtype=torch.bool)
    pool = _pool((det_a, TILE_A), (det_b, TILE_B))
    assert pool["cut"].tolist() == [False, True, False, False, False, False]
    values = _pair_overlaps(pool, torch.tensor([0, 1, 2, 0]), torch.tensor([3, 4, 5, 4]))
    assert values.tolist() == [50 / 150, 1.0, 0.0, 0.0]


# ------------------------------------------------------------------------------------------------
# options and notes


def test_an_overlap_sharing_no_pixel_is_refused_and_a_thin_one_is_noted():
    with pytest.raises(ValueError, match="shares no pixel with its neighbour: objects cut by a tile edge"):
        TileOptions(size=250, overlap=0.0)
    with pytest.raises(ValueError, match="shares no pixel"):
        TileOptions(size=100, overlap=0.004)  # rounds to 0 pixels
    assert "share only 10 pixel(s)" in overlap_note(TileOptions(size=100, overlap=0.1))
    assert "an overlap of at least 0.32 (32 pixels) joins them" in overlap_note(TileOptions(size=100,
                                                                                      overlap=0.1))
    assert overlap_note(TileOptions(size=250, overlap=0.2)) is None  # 50 pixels


def test_the_cap_note_says_how_many_were_dropped_and_the_key():
    assert cap_note(100, 100, (900, 1200)) == ""
    note = cap_note(241, 100, (900, 1200))
    assert "1200x900 image kept the best 100 of 241 detections (141 dropped" in note
    assert "--set model.roi_heads.detections_per_image=241" in note


def test_tile_cap_holds_the_facts_the_cap_note_tells():
    assert tile_cap(100, 100, (900, 1200)) is None  # nothing dropped: no cap to tell
    cap = tile_cap(241, 100, (900, 1200), onnx=True)
    assert cap == TileCap(kept=100, found=241, height=900, width=1200, onnx=True)
    assert (cap.dropped, cap.advised) == (141, 241)
    assert tile_cap(150, 100, (9, 12)).advised == 200  # at least twice the cap
    # the warning is these facts and its advice: a caller reads the numbers, not the words
    assert cap_note(241, 100, (900, 1200), onnx=True).startswith(cap.facts + "; ")
    assert cap.facts == ("tiled prediction of a 1200x900 image kept the best 100 of 241 detections "
                         "(141 dropped at model.roi_heads.detections_per_image = 100)")


def test_too_many_tiles_is_counted_under_its_own_reason():
    from maskrcnn.data.images import skip_reason
    from maskrcnn.engine.inference import _model_error

    error = _model_error(TooManyTiles("a 130x100 image ... over the limit of 100"))
    assert str(error).startswith("not predicted: a 130x100 image")
    assert skip_reason(error) == "too_many_tiles"
    assert skip_reason(_model_error(RuntimeError("boom"))) == "prediction_failed"
    # only this library's reasons: an OSError's / UnicodeError's own `reason` is no summary key
    unicode = UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
    assert skip_reason(unicode) == "prediction_failed"
    os_error = OSError("certificate")
    os_error.reason = "CERTIFICATE_VERIFY_FAILED"
    assert skip_reason(os_error) == "unreadable_image"


def test_an_object_seen_whole_is_not_glued_to_pieces_of_another_it_overlaps():
    # a 2 x 2 grid (overlaps x 80..120, y 30..70): a big object P (x 60..150, y 35..95) cut by tiles C
    # and D; a smaller one Q of its class (x 82..145, y 5..58) seen whole by tile B, its box 2 pixels
    # from B's left edge (so flagged cut), its mask covering much of P's in the strips (an occluder in
    # front): by overlap alone Q matches both of P's pieces
    b, c, d = [80, 0, 200, 70], [0, 30, 120, 100], [80, 30, 200, 100]
    big, small = (60, 35, 150, 95), (82, 5, 145, 58)
    pool = _pool((_rect_det([(*small, 0.7)], b), b),  # (tile A sees nothing of this class)
                 (_rect_det([(*big, 0.8)], c), c), (_rect_det([(*big, 0.9)], d), d))
    assert pool["cut"].tolist() == [True, True, True]
    merged = merge_detections(pool)
    # P once (the union of its pieces), Q on its own as B saw it
    assert merged["boxes"].tolist() == [[60.0, 35.0, 150.0, 95.0], [82.0, 5.0, 145.0, 58.0]]
    assert torch.equal(_dense(merged)[0], _filled(*big))
    assert torch.equal(_dense(merged)[1], _filled(*small))
    # with the whole image's coarse blob over both (matching all three by overlap) leading: it takes
    # P's pieces, the better matches, and leaves Q, which contradicts them, on its own
    blob = _rect_det([(60, 5, 150, 95, 0.8)], [0, 0, W, H])
    merged = merge_detections(concat_pools([pool, shift_to_image(blob, [0, 0, W, H], (H, W), source=3,
                                                                  margin=2)]))
    assert merged["boxes"].tolist() == [[60.0, 5.0, 150.0, 95.0], [82.0, 5.0, 145.0, 58.0]]
    assert merged["source"].tolist() == [3, 0]


def _view(mask, box, window, source, image_hw, score=0.9):
    """One tile's detection of an object whose mask (image-sized bool) the tile saw within its window,
    with the given box (image pixels), as a pool in image pixels."""
    x0, y0, x1, y1 = window
    seen = torch.zeros_like(mask)
    seen[y0:y1, x0:x1] = mask[y0:y1, x0:x1]
    ys, xs = torch.nonzero(seen, as_tuple=True)
    oy, ox = int(ys.min()), int(xs.min())
    det = {"boxes": torch.tensor([[box[0] - x0, box[1] - y0, box[2] - x0, box[3] - y0]], dtype=torch.float32),
           "scores": torch.tensor([score]), "labels": torch.tensor([1]),
           "origins": torch.tensor([[oy - y0, ox - x0]]),
           "bitmaps": [seen[oy : int(ys.max()) + 1, ox : int(xs.max()) + 1].clone()]}
    return shift_to_image(det, window, image_hw, source=source, margin=4)


def _one_object_cases():
    """(name, image_hw, window A, window B, A's mask, A's box, B's mask): one object, each case a view in
    A that stops short of A's right edge where B's runs on across it, without contradicting it."""
    h, w = H, W

    def filled(x0, y0, x1, y1, hw=(h, w)):
        out = torch.zeros(hw, dtype=torch.bool)
        out[y0:y1, x0:x1] = True
        return out

    neck = filled(40, 20, 110, 80) | filled(110, 48, 130, 51) | filled(130, 20, 180, 80)
    thick = filled(40, 20, 110, 80) | filled(110, 44, 130, 54) | filled(130, 20, 180, 80)  # a 10-px neck
    bleed = filled(60, 30, 122, 70)  # B's mask 2 pixels past A's edge, A's ends at 110
    stray = filled(60, 30, 118, 70)
    stray[50, 118:121] = True  # one stray pixel of B at A's edge
    wide = (100, 560)  # a 300-pixel piece: its mask's cells are 11 pixels
    return [
        # a dumbbell: A's mask (and box) misses the 3-pixel neck across its edge
        ("neck", (h, w), TILE_A, TILE_B, filled(40, 20, 110, 80), (40, 20, 110, 80), neck),
        # A's mask fades 10 pixels short of the cut, its box reaches it
        # ... a neck as wide as the allowance, but a sixth of the object's height along the edge
        ("thick neck", (h, w), TILE_A, TILE_B, filled(40, 20, 110, 80), (40, 20, 110, 80), thick),
        ("fade", (h, w), TILE_A, TILE_B, filled(40, 20, 110, 80), (40, 20, 120, 80), filled(40, 20, 180, 80)),
        ("bleed", (h, w), TILE_A, TILE_B, filled(60, 30, 110, 70), (60, 30, 110, 70), bleed),
        ("stray", (h, w), TILE_A, TILE_B, filled(60, 30, 110, 70), (60, 30, 110, 70), stray),
        # a 300-pixel piece stopping 12 pixels (about a cell) short of the cut, mask and box
        ("large", wide, [0, 0, 320, 100], [240, 0, 560, 100], filled(8, 20, 308, 80, wide), (8, 20, 308, 80),
         filled(8, 20, 500, 80, wide)),
    ]


@pytest.mark.parametrize("case", _one_object_cases(), ids=lambda case: case[0])
def test_views_of_one_object_are_not_taken_for_two_on_weak_evidence(case):
    # a thin part or a few stray pixels of B's view across A's edge, or A's view stopping short of it by
    # a fade or about one cell of its mask, is no contradiction: one detection, the union of the two
    _, hw, a, b, a_mask, a_box, b_mask = case
    b_box = [int(v) for v in _box_of(b_mask, b)]
    pool = concat_pools([_view(a_mask, a_box, a, 0, hw), _view(b_mask, b_box, b, 1, hw, score=0.8)])
    merged = merge_detections(pool)
    assert merged["boxes"].shape[0] == 1, merged["boxes"].tolist()
    # with the whole image's detection of it leading: no duplicate left beside it
    whole = _view(b_mask, _box_of(b_mask, [0, 0, hw[1], hw[0]]), [0, 0, hw[1], hw[0]], 2, hw, score=0.95)
    merged = merge_detections(concat_pools([pool, whole]))
    assert merged["boxes"].shape[0] == 1 and merged["source"].tolist() == [2], merged["boxes"].tolist()


def _box_of(mask, window):
    x0, y0, x1, y1 = window
    ys, xs = torch.nonzero(mask[y0:y1, x0:x1], as_tuple=True)
    return (int(xs.min()) + x0, int(ys.min()) + y0, int(xs.max()) + 1 + x0, int(ys.max()) + 1 + y0)


def test_a_large_tile_count_is_noted_with_an_overlap_taking_fewer():
    from maskrcnn.engine.tiling import MANY_TILES, check_tile_count, tile_count_note

    # 0.999 of a 100-pixel tile rounds to a one-pixel step: 51 x 50 tiles on a 150 x 149 image
    options = TileOptions(size=100, overlap=0.999)
    assert check_tile_count(149, 150, options) == 2550 > MANY_TILES  # under the limit: it would run
    note = tile_count_note(149, 150, options)
    assert note.startswith("a 150x149 image cut into 100-pixel tiles overlapping by 0.999 takes 2550 tiles")
    assert note.endswith("; an overlap of 0.2 takes 4")
    assert tile_count_note(149, 150, TileOptions(size=100, overlap=0.5)) is None  # 2 x 2
    # small tiles on a large image: the overlap is not the cause
    assert tile_count_note(8000, 8000, TileOptions(size=64, overlap=0.1)).endswith("larger tiles take fewer")
