"""Small command-line fixes: --version, $MASKRCNN_CACHE naming a file, the environment errors named by the
command, --dtype's help saying what it autocasts, and dtype="int8" pointing to quantize."""

import pytest

import maskrcnn
from maskrcnn.cli import build_parser, console_entry, main


def test_version(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out.strip() == f"maskrcnn {maskrcnn.__version__}"


def test_cache_naming_a_file_says_it_must_be_a_folder(tmp_path, monkeypatch):
    from maskrcnn.interop.download import cache_dir

    (tmp_path / "cachefile").write_text("")
    monkeypatch.setenv("MASKRCNN_CACHE", str(tmp_path / "cachefile"))
    with pytest.raises(OSError, match=r"\$MASKRCNN_CACHE \(.*cachefile\) is a file, not a folder"):
        cache_dir()
    monkeypatch.setenv("MASKRCNN_CACHE", str(tmp_path / "new"))
    assert cache_dir() == tmp_path / "new"


def test_environment_errors_are_named_by_the_command(monkeypatch, capsys):
    monkeypatch.setenv("MASKRCNN_MATMUL", "bogus")
    monkeypatch.setattr("sys.argv", ["maskrcnn", "predict", "x.png"])
    assert console_entry() == 2
    assert capsys.readouterr().err.startswith("maskrcnn predict: error: MASKRCNN_MATMUL")


@pytest.mark.parametrize("command", ["eval", "benchmark"])
def test_dtype_help_says_the_heads_are_autocast_too(command):
    parser = build_parser([command]).command_parsers[command]
    text = " ".join(parser.format_help().split())
    assert "backbone and FPN (" not in text and "backbone + FPN to" not in text
    assert "RPN and RoI heads" in text


@pytest.mark.parametrize("name", ["int8", "INT8"])
def test_int8_dtype_points_to_quantize(name):
    from maskrcnn.engine.device import named_dtype

    with pytest.raises(ValueError, match="maskrcnn quantize"):
        named_dtype(name)
    with pytest.raises(ValueError) as other:
        named_dtype("half")
    assert "quantize" not in str(other.value)


def test_cache_naming_a_broken_link_is_refused_in_the_same_line(tmp_path, monkeypatch):
    # a dangling link passed os.path.exists, and mkdir then said only "file exists"
    from maskrcnn.interop.download import cache_dir

    (tmp_path / "brokenlink").symlink_to(tmp_path / "nowhere")
    monkeypatch.setenv("MASKRCNN_CACHE", str(tmp_path / "brokenlink"))
    with pytest.raises(OSError, match=r"\$MASKRCNN_CACHE \(.*brokenlink\) is a file, not a folder"):
        cache_dir()
