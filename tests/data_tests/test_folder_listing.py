"""Folder listings of images (``list_images``) and videos (``list_videos``): one walk, each command's rules.

Both list a folder's files with their extensions (any case), sorted, macOS's "._" resource forks left out
but other dot-files kept, symlinked files listed, symlinked folders inside a folder not descended into
(pathlib's ``**`` does not follow them). ``list_images`` keeps a file given by name whatever its
extension and names a missing path; ``list_videos`` keeps only video files given by name and passes over
a missing path (``predict``'s image listing of the same inputs has named it)."""

import os

import pytest

from maskrcnn.data.images import list_images, list_images_and_passed_over
from maskrcnn.data.video import list_videos


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    (root / "B").mkdir(parents=True)
    (root / "a" / "deep").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for name in ("z.png", "Y.MP4", "._z.png", "._Y.mp4", ".hidden.png", ".hidden.mov", "notes.txt",
                 "B/b.jpg", "B/b.mkv", "a/deep/c.PNG", "a/deep/c.webm", "a/c.png"):
        (root / name).write_bytes(b"x")
    for name in ("far.png", "far.mp4"):
        (elsewhere / name).write_bytes(b"x")
    if not hasattr(os, "symlink"):
        pytest.skip("no symlinks here")
    try:
        (root / "link.png").symlink_to(elsewhere / "far.png")
        (root / "link.mov").symlink_to(elsewhere / "far.mp4")
        (root / "linked").symlink_to(elsewhere, target_is_directory=True)
        (root / "dangling.png").symlink_to(tmp_path / "gone.png")
    except OSError:
        pytest.skip("no symlinks here")
    return root


def _rel(paths, root):
    return [p.relative_to(root).as_posix() for p in paths]


def test_list_images_order_dot_files_and_symlinks(tree):
    assert _rel(list_images(tree), tree) == [".hidden.png", "link.png", "z.png"]
    assert _rel(list_images(tree, recursive=True), tree) == [
        ".hidden.png", "B/b.jpg", "a/c.png", "a/deep/c.PNG", "link.png", "z.png"]
    given = [tree / "notes.txt", tree / "B", tree / "link.png"]
    assert _rel(list_images(given), tree) == ["notes.txt", "B/b.jpg", "link.png"]
    with pytest.raises(FileNotFoundError, match=r"dangling.png: is a broken link \(to .*gone.png\)"):
        list_images([tree / "dangling.png"])


def test_list_videos_order_dot_files_and_symlinks(tree):
    assert _rel(list_videos([tree]), tree) == [
        ".hidden.mov", "B/b.mkv", "Y.MP4", "a/deep/c.webm", "link.mov"]
    given = [tree / "notes.txt", tree / "z.png", tree / "a", tree / "link.mov", tree / "missing.mp4"]
    assert _rel(list_videos(given), tree) == ["a/deep/c.webm", "link.mov"]


def test_what_a_listing_passes_over_is_named_with_its_reason(tree):
    """A broken link, a symlinked folder (not followed) and, without recursion, a folder named like an
    image were dropped without a word: the listing now names them for the command to report."""
    (tree / "album.png").mkdir()  # recursive: searched like any folder (its images are listed)
    (tree / "album.png" / "in.png").write_bytes(b"x")
    files, passed_over = list_images_and_passed_over(tree, recursive=True)
    assert "album.png/in.png" in _rel(files, tree)
    assert [(p.relative_to(tree).as_posix(), why) for p, why in passed_over] == [
        ("dangling.png", f"broken link (to {tree.parent / 'gone.png'})"),
        ("linked", "link to a folder, not followed")]
    files, passed_over = list_images_and_passed_over(tree)
    assert _rel(files, tree) == [".hidden.png", "link.png", "z.png"]
    assert [(p.relative_to(tree).as_posix(), why) for p, why in passed_over] == [
        ("album.png", "a folder"), ("dangling.png", f"broken link (to {tree.parent / 'gone.png'})")]


def test_a_broken_link_to_a_video_is_named_too(tree):
    """``predict`` named a broken link to a .png and dropped one to a .mp4 without a word."""
    (tree / "B" / "gone.mp4").symlink_to(tree / "nowhere.mp4")
    passed = []
    videos = list_videos([tree], on_passed_over=lambda path, why: passed.append((path, why)))
    assert "B/gone.mp4" not in _rel(videos, tree)
    assert [(p.relative_to(tree).as_posix(), why) for p, why in passed] == [
        ("B/gone.mp4", f"broken link (to {tree / 'nowhere.mp4'})"),
        ("linked", "link to a folder, not followed")]


def test_a_broken_link_names_its_target_as_the_link_holds_it(tmp_path):
    """"broken link" alone did not say where the link pointed (a relative target made from the wrong
    folder, a drive not mounted): the target is named as written in the link, control characters
    escaped."""
    (tmp_path / "a.png").symlink_to("../old/a.png")
    (tmp_path / "b.png").symlink_to("../old/new\nline.png")
    _, passed_over = list_images_and_passed_over(tmp_path)
    assert [why for _, why in passed_over] == ["broken link (to ../old/a.png)",
                                               "broken link (to '../old/new\\nline.png')"]


def test_a_symlink_loop_is_called_a_loop_not_a_broken_link(tmp_path):
    """Two links pointing at each other were reported as "broken link (to b_loop.jpg)", sending the user
    to look for a missing b_loop.jpg that is there."""
    (tmp_path / "a_loop.jpg").symlink_to("b_loop.jpg")
    (tmp_path / "b_loop.jpg").symlink_to("a_loop.jpg")
    (tmp_path / "gone.jpg").symlink_to("nowhere.jpg")
    _, passed_over = list_images_and_passed_over(tmp_path)
    assert [(p.name, why) for p, why in passed_over] == [
        ("a_loop.jpg", "a symlink loop"), ("b_loop.jpg", "a symlink loop"),
        ("gone.jpg", "broken link (to nowhere.jpg)")]
    with pytest.raises(FileNotFoundError, match=r"a_loop.jpg: is a symlink loop$"):
        list_images([tmp_path / "a_loop.jpg"])
