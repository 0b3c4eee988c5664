"""The names of ``predict``'s overlays under ``overlays/``: each image's path relative to the images folder
(``overlay_root``), as the exports write it, made safe and unique (``overlay_names``)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["overlay_file_name", "overlay_names", "overlay_root", "relative_name"]


def overlay_root(inputs, files):
    """The images folder overlays/ mirrors, or None where the inputs share none (on Windows, files on two
    drives: ``os.path.commonpath`` raises ValueError); overlays are then named by the image's name."""
    from maskrcnn.data.pre_annotations.export import images_root

    try:
        return images_root(inputs, files)
    except ValueError:
        return None


def overlay_file_name(path: Path, root) -> str:
    """``path`` relative to ``root`` with '/' (as the exports write it), or its name where there is no root
    or ``path`` is on another drive (``os.path.relpath`` raises ValueError on Windows); overlay_relpaths
    makes names that clash unique."""
    from maskrcnn.overlay_paths import safe_file_name

    return safe_file_name(relative_name(path, root))  # "new\nline.jpg" -> "new_line.png"


def relative_name(path: Path, root) -> str:
    """``overlay_file_name`` before its control characters are made safe: the order key of the overlays'
    names, the one ``mask_file_stems`` sorts the mask files' names by (an image's overlay and its mask
    files give a clashing name to the same image)."""
    from maskrcnn.data.pre_annotations.export import relative_file_name

    if root is None:
        return path.name
    try:
        return relative_file_name(path, root)
    except ValueError:
        return path.name


def overlay_names(files, root, beside) -> dict:
    """{index in ``files``: its overlay path relative to overlays/}, chosen for all files up front and
    in the order of their paths, so that neither the order given nor the other inputs change a name; an
    image file beside one of them with the same name but for the extension (not predicted this run:
    ``beside``, ``overlay_paths.same_name_beside``) counts as a clash too."""
    from maskrcnn.overlay_paths import overlay_relpaths

    # by the relative name (as mask_file_stems sorts), not str(path): a spelling with '..' or another
    # separator sorts elsewhere, and the overlay and mask files would give a clashing name to different
    # images; the whole path breaks a tie (the same name on two drives)
    order = sorted(range(len(files)), key=lambda i: (relative_name(files[i], root), str(files[i])))
    beside = [overlay_file_name(p, root) for p in beside]
    names = overlay_relpaths([overlay_file_name(files[i], root) for i in order], beside=beside)
    return dict(zip(order, names))
