"""The command line: every sub-command is registered and documents its arguments."""

import subprocess
import sys

import pytest

from maskrcnn import cli


def test_help_lists_every_command(capsys):
    assert cli.main([]) == 2
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in out


@pytest.mark.parametrize("name", cli.COMMANDS)
def test_each_command_has_help(name):
    proc = subprocess.run([sys.executable, "-m", "maskrcnn.cli", name, "--help"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "usage: maskrcnn " + name in proc.stdout


# Commands whose --help builds its parser without importing torch (2 s on a busy CPU). ``predict``
# imports torch through its --export options (``data.pre_annotations``).
TORCH_FREE_HELP = ("train", "eval", "demo", "convert", "convert-data", "show-data", "export", "benchmark",
                   "serve", "quantize", "predict", "split-data", "merge-data")


def test_help_of_commands_imports_no_torch():
    """``maskrcnn COMMAND --help`` answers at once: torch is imported only when a command runs."""
    script = (
        "import contextlib, io, sys\n"
        "from maskrcnn import cli\n"
        "for name in sys.argv[1:]:\n"
        "    with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "        try:\n"
        "            cli.main([name, '--help'])\n"
        "        except SystemExit:\n"
        "            pass\n"
        "    assert 'usage: maskrcnn ' + name in out.getvalue(), name\n"
        "    print(name, 'torch' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, *TORCH_FREE_HELP], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:-1] == [f"{name} False" for name in TORCH_FREE_HELP]


def test_a_file_named_like_an_option_gets_a_hint(tmp_path, monkeypatch, capsys):
    """``maskrcnn predict ... -photo.png``: argparse reads the file as an unknown option and says only that
    the images are missing; the error now says how to pass it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "-photo.png").write_bytes(b"x")
    hint = "(-photo.png is a file, read as an option since it starts with '-': pass it after '--' or as " \
           "./-photo.png)"
    for argv in (["predict", "--weights", "w.pth", "--output", "o", "-photo.png"],  # the only image
                 ["predict", "--weights", "w.pth", "--output", "o", "a.png", "-photo.png"]):  # one of two
        with pytest.raises(SystemExit) as info:
            cli.main(argv)
        assert info.value.code == 2
        assert capsys.readouterr().err.rstrip().endswith(hint)
    with pytest.raises(SystemExit):
        cli.main(["predict", "--weights", "w.pth", "--output", "o", "-other.png"])  # no such file: no hint
    assert "is a file" not in capsys.readouterr().err
    for argv in (["predict", "--weights", "w.pth", "--output", "o", "--batch-size", "x", "a.png",
                  "-photo.png"],
                 ["predict", "--weights", "w.pth", "--output", "o", "--bogus", "--", "-photo.png"]):
        with pytest.raises(SystemExit):  # another error, or the file after '--': not the file's fault
            cli.main(argv)
        err = capsys.readouterr().err
        assert "is a file" not in err and ("invalid int value" in err or "--bogus" in err), err


def test_other_librarys_warnings_do_not_read_as_ours():
    # PyTorch's DDP reducer warning printed as "maskrcnn train: warning: Grad strides do not match ..."
    import torch.autograd.graph

    from maskrcnn.data import coco

    assert cli._format_warning("train", "Grad strides", UserWarning, torch.autograd.graph.__file__, 1) == \
        "warning (torch): Grad strides\n"  # fmt: skip
    assert cli._format_warning("train", "skipped 1", UserWarning, coco.__file__, 1) == \
        "maskrcnn train: warning: skipped 1\n"  # fmt: skip
    assert cli._format_warning("eval", "x", UserWarning, "<frozen importlib._bootstrap>", 1) == \
        "maskrcnn eval: warning: x\n"  # fmt: skip


def test_an_unknown_option_of_a_command_is_told_with_that_commands_usage(capsys):
    """``predict ... --input x.png`` printed the top level's "usage: maskrcnn [-h] COMMAND ..."."""
    with pytest.raises(SystemExit) as stop:
        cli.main(["predict", "--weights", "w.pth", "--output", "o", "x.png", "--input", "y.png"])
    err = capsys.readouterr().err
    assert stop.value.code == 2
    assert "usage: maskrcnn predict" in err and "IMAGE_OR_DIR" in err, err
    assert err.strip().endswith("maskrcnn predict: error: unrecognized arguments: --input y.png"), err
    with pytest.raises(SystemExit):
        cli.main(["--bogus"])
    assert "maskrcnn: error: unrecognized arguments: --bogus" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["predict", "serve", "benchmark"])
def test_no_optimise_help_names_all_it_skips(name):
    """``--no-optimise`` said "do not fold batch norm / use channels_last"; it turns off the Winograd
    convolutions and the fused residual additions too (``Predictor``: optimise_for_inference's all)."""
    import argparse
    import importlib

    parser = argparse.ArgumentParser()
    importlib.import_module(f"maskrcnn.commands.{name}").add_arguments(parser)
    text = " ".join(parser.format_help().split()).lower()  # argparse wraps the help: words, one space
    for part in ("batch-norm folding", "channels_last", "winograd", "fused",
                 "int8 checkpoint always runs folded"):
        assert part in text, (name, part, text)


@pytest.mark.parametrize("argv, hint", [
    (["show-data", "--json", "a.json", "--output", "out"], "(try smaller images)\n"),
    (["predict", "--weights", "w.pth", "a.png", "--output", "o", "--batch-size", "4"],
     "(try smaller images or --batch-size 1)\n"),
])  # fmt: skip
def test_the_out_of_memory_hint_names_only_options_the_command_has(argv, hint, monkeypatch, capsys):
    """``show-data`` out of memory said "try ... --batch-size 1", an option it refuses."""
    import importlib

    module = importlib.import_module(f"maskrcnn.commands.{argv[0].replace('-', '_')}")

    def run(args):
        raise MemoryError()

    monkeypatch.setattr(module, "run", run)
    assert cli.main(argv) == 1
    assert capsys.readouterr().err == f"maskrcnn {argv[0]}: error: out of memory {hint}"


@pytest.mark.parametrize("argv, field, overrides, expected", [
    (["predict", "--weights", "w.pth", "--output", "o", "--set", "input.min_size_test=128", "model.x=1",
      "street.png", "b.png"], "inputs", "set", ["street.png", "b.png"]),
    (["convert", "--from", "maskrcnn", "--set", "input.min_size_test=512", "model.x=1", "ck.pth", "conv.pth"],
     "output", "overrides", "conv.pth"),
    (["train", "--train-json", "t.json", "--set", "input.min_size_test=512", "model.x=1",
      "--output", "runs/a"], "output", "set", "runs/a"),
    (["export", "--weights", "w.pth", "--set", "input.min_size_test=512", "model.x=1", "--output", "m.onnx"],
     "output", "set", "m.onnx"),
])  # fmt: skip
def test_set_takes_only_key_value_tokens(argv, field, overrides, expected, monkeypatch):
    """``--set k=v street.png`` took street.png as an override: "the following arguments are required:
    IMAGE_OR_DIR" though it was given."""
    import importlib

    module = importlib.import_module(f"maskrcnn.commands.{argv[0]}")
    seen = {}
    monkeypatch.setattr(module, "run", lambda args: seen.update(vars(args)) or 0)
    assert cli.main(argv) == 0
    assert str(seen[field]) == str(expected)  # a Path or a list of strings
    assert seen[overrides] == ["input.min_size_test=512" if argv[0] != "predict" else
                               "input.min_size_test=128", "model.x=1"]


def test_a_set_list_the_shell_cut_at_its_spaces_is_one_value_again():
    """``--set solver.steps=[10, 20]`` unquoted reached argparse as "solver.steps=[10," and "20]":
    "unrecognized arguments: 20]"."""
    assert cli.split_set_values(["train", "--set", "solver.steps=[10,", "20]", "input.min_size=(640,", "672,",
                                 "704)", "--output", "o"]) == \
        ["train", "--set=solver.steps=[10, 20]", "--set=input.min_size=(640, 672, 704)", "--output", "o"]
    # brackets no later token closes, or an option / override on the way: the tokens as they were
    assert cli.split_set_values(["predict", "--set", "k=[1,", "a.png"]) == ["predict", "--set=k=[1,", "a.png"]
    assert cli.split_set_values(["a", "--set", "k=[1,", "--device", "cpu]"]) == \
        ["a", "--set=k=[1,", "--device", "cpu]"]
    assert cli.split_set_values(["a", "--set", "k=[1,", "j=2]"]) == ["a", "--set=k=[1,", "--set=j=2]"]
    # negative numbers continue a list; only a value that starts a list / mapping / tuple is joined, with
    # matching closers; a plain string with a bracket ("a file :( name") is no list
    assert cli.split_set_values(["a", "--set", "model.x=[0.5,", "-1]", "y.png"]) == \
        ["a", "--set=model.x=[0.5, -1]", "y.png"]
    assert cli.split_set_values(["a", "--set", "k={a:", "[1,", "2]}"]) == ["a", "--set=k={a: [1, 2]}"]
    assert cli.split_set_values(["a", "--set", "k=:(", "photo).jpg"]) == ["a", "--set=k=:(", "photo).jpg"]
    assert cli.split_set_values(["a", "--set", "k=[1,", "2)", "x"]) == ["a", "--set=k=[1,", "2)", "x"]
    assert cli.split_set_values(["a", "--set", "k=['a]',", "b]"]) == ["a", "--set=k=['a]', b]"]


def test_set_followed_by_an_input_only_or_after_dashes_is_left_to_argparse():
    assert cli.split_set_values(["predict", "--set", "x.png"]) == ["predict", "--set", "x.png"]
    assert cli.split_set_values(["a", "--set", "k=v", "--", "--set", "j=w"]) == \
        ["a", "--set=k=v", "--", "--set", "j=w"]
    assert cli.split_set_values(["a", "--set", "k=-1", "--device=cpu", "x"]) == \
        ["a", "--set=k=-1", "--device=cpu", "x"]
