"""The by-name lookup of record_sizes stops its walk at _MAX_FILES entries, folders counted: it counted
files only, so a tree of empty folders (a home directory taken for the image folder) was walked whole."""

import os

from maskrcnn.engine import record_sizes


def test_the_walk_stops_at_the_bound_counting_folders(tmp_path, monkeypatch):
    for i in range(30):
        (tmp_path / f"d{i:02d}").mkdir()
    steps = []
    real_walk = os.walk

    def counting_walk(top, *args, **kwargs):
        for step in real_walk(top, *args, **kwargs):
            steps.append(step[0])
            yield step

    monkeypatch.setattr(record_sizes, "_MAX_FILES", 10)
    monkeypatch.setattr(record_sizes.os, "walk", counting_walk)
    assert record_sizes._Files(tmp_path).find("missing.png") is None
    assert len(steps) == 1  # the root's 30 folders are past the bound: none of them is walked
