"""Under torchrun each process sends rank 0 its count of unread training images and the names the run's
line shows (``training.unread_share``), not every name it met: rank 0 held every process's whole list to
print ten of them. The line (``unread_run_line``) names each image once and counts the rest."""

from maskrcnn.engine.training import UNREAD_LISTED, unread_line, unread_run_line, unread_share


def _names(rank, n):
    return [f"r{rank}/{i}.png" for i in range(n)]


def test_a_share_is_the_count_and_the_names_the_line_shows():
    assert unread_share({p: None for p in _names(0, 5000)}) == (5000, _names(0, 5000)[:UNREAD_LISTED])
    assert unread_share([]) == (0, [])
    assert unread_share(_names(1, 3)) == (3, _names(1, 3))


def test_the_runs_line_counts_what_was_not_sent():
    head = "training image(s) could not be used (unreadable, or not the size their record gives) and were " \
           "replaced by other images: "
    shares = [unread_share(_names(0, 5000)), unread_share(_names(1, 2500))]
    assert sum(len(str(p)) for _, sent in shares for p in sent) < 400  # not 7500 names
    line = unread_run_line(shares)
    # two processes that each left names unsent: one image both met may be counted twice
    assert line == (f"warning: up to 7500 {head}" + ", ".join(_names(0, 10)) + ", ... (7490 more)"), line
    # every name sent: each image once, the count exact (an image both processes met, counted once)
    line = unread_run_line([unread_share(["a.png", "b.png"]), unread_share(["b.png", "c.png"])])
    assert line == f"warning: 3 {head}a.png, b.png, c.png", line
    # one process, or one that met them all: exact though not all named
    assert unread_run_line([unread_share(_names(0, 12)), unread_share([])]) == (
        f"warning: 12 {head}" + ", ".join(_names(0, 10)) + ", ... (2 more)")
    assert unread_run_line([unread_share([]), unread_share([])]) == ""
    # the one-process line (a stopped rank's own share) reads as before
    assert unread_line(_names(0, 12)) == unread_run_line([unread_share(_names(0, 12))])
