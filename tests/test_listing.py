"""One-line listings of messages (maskrcnn.listing): a dataset of many classes keeps its summary a line."""

from maskrcnn.listing import short_listing


def test_short_listing_cuts_after_the_limit_and_says_how_many_more():
    assert short_listing([]) == "none"
    assert short_listing(["a 1", "b 2"]) == "a 1, b 2"
    names = [f"class{i} {i}" for i in range(1203)]  # LVIS's class count
    line = short_listing(names, what="more classes")
    assert line == ", ".join(names[:20]) + ", ... (1183 more classes)"
    assert short_listing(iter(names[:20])) == ", ".join(names[:20])  # exactly the limit: nothing cut
