"""benchmarks/roofline.py: the work it counts is the work the model does (Winograd's products are a
quarter of the direct 3x3 convolutions' they replace), the floors follow from the measured rate, and
measured seconds from the other benchmarks' JSON land beside them."""

from __future__ import annotations

import json

import pytest
import torch


def test_counted_work_of_a_convolution_and_its_backward(benchmark_script):
    roofline = benchmark_script("roofline")
    conv = torch.nn.Conv2d(8, 16, 3, padding=1, bias=False)
    x = torch.randn(2, 8, 10, 12, requires_grad=True)
    forward = 2 * (2 * 16 * 10 * 12) * 8 * 9  # 2 FLOPs per multiply-add, every output sums C_in * 9
    assert roofline.counted(lambda: conv(x))["gflop"] * 1e9 == pytest.approx(forward)
    # backward: the input's gradient and the kernel's, each as much work as the forward
    assert roofline.counted(lambda: conv(x).sum().backward())["gflop"] * 1e9 == pytest.approx(3 * forward)


def test_roofline_end_to_end_small(tmp_path, benchmark_script):
    roofline = benchmark_script("roofline")
    inference_json = tmp_path / "inference.json"
    inference_json.write_text(json.dumps([
        {"name": "torchvision 0.28 fp32", "s_per_image": 0.9},
        {"name": "ours fp32", "s_per_image": 0.8},
        {"name": "ours fp32-opt", "s_per_image": 0.5},
    ]))  # fmt: skip
    train_json = tmp_path / "train.json"
    train_json.write_text(json.dumps({"amp": False, "device": "cpu",
                                      "s_per_iter": {"resnet18": {"ours": 2.0, "torchvision": 3.5}}}))
    out = tmp_path / "roofline.json"
    threads = torch.get_num_threads()
    try:
        # a small image: the checks below hold at any size, and the RoI heads' work on the detections
        # (100 at 64x64, as at 160x224, which took 4 s more) is most of the count's time anyway
        rc = roofline.main(["--size", "64x64", "--threads", "1", "--backbones", "resnet18",
                            "--inference-json", str(inference_json), "--train-json", str(train_json),
                            "--json", str(out)])
    finally:
        torch.set_num_threads(threads)  # the script sets its stated thread count for the process
    assert rc == 0
    result = json.loads(out.read_text())
    rate = result["gemm"]["gflops"]
    assert rate > 0 and rate == max(result["gemm"]["by_shape"].values())

    inf = result["inference"]
    built, fast = inf["work"]["as built"]["by_op"], inf["work"]["optimised"]["by_op"]
    # the direct 3x3 convolutions Winograd took over did 4x the products its batched products do
    # (36 per 4x4 outputs instead of 9 * 16), plus the padding of maps to whole tiles (up to (16/14)^2
    # more: the mask head's 14x14 RoIs take 4x4 tiles of 4x4) and a little other batched work that
    # follows the detections; the rest of the model's work is the same
    replaced = built["convolution"] - fast["convolution"]
    assert replaced > 0
    products = fast["bmm"] - built.get("bmm", 0.0)
    assert 0.25 <= products / replaced <= 0.36
    assert fast["addmm"] == pytest.approx(built["addmm"])  # the box head's fully connected layers
    opt = inf["optimised"]
    assert opt["floor_s"] == pytest.approx(opt["gflop"] / rate)
    assert opt["measured_s"] == 0.5 and opt["torchvision_s"] == 0.9
    assert opt["best_speedup"] == pytest.approx(0.9 / opt["floor_s"])

    train = result["training"]["resnet18"]
    assert train["gflop"] > 0 and train["work"]["by_op"]["convolution_backward"] > 0
    assert train["measured_s"] == 2.0 and train["best_speedup"] == pytest.approx(3.5 / train["floor_s"])


def test_roofline_refuses_bad_arguments_in_one_line(tmp_path, capsys, benchmark_script):
    roofline = benchmark_script("roofline")
    for argv, expected in (
        (["--size", "10x10"], "at least 32x32"),
        (["--size", "big"], "expected HxW"),
        (["--backbones", "vgg16"], "--backbones"),
        (["--inference-json", str(tmp_path / "missing.json")], "no such file"),
        (["--json", str(tmp_path / "no" / "out.json")], "its folder does not exist"),
    ):
        with pytest.raises(SystemExit):
            roofline.main(argv)
        assert expected in capsys.readouterr().err
    garbage = tmp_path / "garbage.json"
    for text in ("not json", "[1, 2]", '{"s_per_iter": 3}'):
        garbage.write_text(text)
        for flag in ("--inference-json", "--train-json"):
            with pytest.raises(SystemExit, match="not the JSON"):
                roofline.main([flag, str(garbage), "--no-inference", "--backbones", ""])
    amp = tmp_path / "amp.json"
    amp.write_text(json.dumps({"amp": True, "s_per_iter": {}}))
    with pytest.raises(SystemExit, match="bfloat16 autocast"):
        roofline.main(["--train-json", str(amp), "--no-inference", "--backbones", ""])
