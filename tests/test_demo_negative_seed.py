"""A negative ``seed`` (accepted since torch takes it) reaches the demo's data generator as a 64-bit one:
numpy's ``SeedSequence`` refuses negatives ("expected non-negative integer", no key named)."""

from maskrcnn.commands import demo


def test_the_demo_data_takes_a_negative_seed(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "NUM_TRAIN", 2)
    monkeypatch.setattr(demo, "NUM_VAL", 1)
    demo._generate("shapes", tmp_path / "neg", -1)
    demo._generate("shapes", tmp_path / "same", 2**64 - 1)
    names = sorted(p.relative_to(tmp_path / "neg") for p in (tmp_path / "neg").rglob("*") if p.is_file())
    assert names and all((tmp_path / "neg" / n).read_bytes() == (tmp_path / "same" / n).read_bytes()
                         for n in names)
