"""``engine.tiling.merge_detections`` on a pool whose masks are large (a whole-image pass over a large
photo gives coarse masks thousands of pixels wide): the merge must not hold several copies of them at
once. Measured in a fresh process (peak RSS), since torch's CPU allocations are not traced."""

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import gc, resource, torch
    from maskrcnn.engine.tiling import concat_pools, merge_detections, shift_to_image

    H = W = 3000
    N, SIDE = 32, 1250  # whole-image detections, each a SIDE x SIDE mask: N * SIDE**2 bytes of masks
    corners = [[20.0 * k, 20.0 * k] for k in range(N)]
    whole = {"boxes": torch.tensor([[x, y, x + SIDE, y + SIDE] for x, y in corners]),
             "scores": torch.full((N,), 0.9), "labels": torch.ones(N, dtype=torch.int64),
             "origins": torch.tensor([[20 * k, 20 * k] for k in range(N)]),
             "bitmaps": [torch.ones(SIDE, SIDE, dtype=torch.bool) for _ in range(N)]}
    # one tile's pieces, cut by its right edge, each meeting the whole-image masks inside the tile
    pieces = {"boxes": torch.tensor([[950.0, 20.0 * k + 5, 1000.0, 20.0 * k + 15] for k in range(N)]),
              "scores": torch.full((N,), 0.8), "labels": torch.ones(N, dtype=torch.int64),
              "origins": torch.tensor([[20 * k + 5, 950] for k in range(N)]),
              "bitmaps": [torch.ones(10, 50, dtype=torch.bool) for _ in range(N)]}
    pool = concat_pools([shift_to_image(pieces, [0, 0, 1000, 1000], (H, W), source=0, margin=2),
                         shift_to_image(whole, [0, 0, W, H], (H, W), source=1, margin=2)])
    assert bool(pool["cut"][:N].all())
    gc.collect()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    merged = merge_detections(pool)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before  # KiB
    print(grown * 1024 / (N * SIDE * SIDE), merged["boxes"].shape[0])
""")


def test_merging_large_masks_holds_few_copies_of_them():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    per_mask_byte, kept = out.stdout.split()
    assert int(kept) >= 32  # the whole-image detections are kept (the pieces are absorbed or stay)
    # the masks' own bytes once more (the flat buffer of the pairs' masks) and one detection's
    # summed-area table at a time; before: every table at once (4 bytes a pixel, twice with their
    # concatenation) and an int64 copy of all the masks to count them (8 bytes a pixel)
    assert float(per_mask_byte) < 4.0, per_mask_byte
