"""The Python API as users from torchvision, detectron2 and OpenCV call it: every image form either gives
what the equivalent RGB image gives or one clear error naming the image, never a silent wrong answer;
results are ordinary tensors; bad arguments are refused by name."""

import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_model import TINY_FROZEN_BN as TINY

from maskrcnn.config import PRESETS, apply_overrides
from maskrcnn.modeling.mask_rcnn import build_model
from maskrcnn.predictor import Predictor

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def pred():
    torch.manual_seed(0)
    cfg = apply_overrides(PRESETS["r18_fpn"](), TINY)
    return Predictor(build_model(cfg).eval(), cfg)


@pytest.fixture(scope="module")
def rgb():
    return np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)  # (H, W, 3) RGB


@pytest.fixture(scope="module")
def ref(pred, rgb):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the tests run (single_thread): other counts round differently
    det = pred(rgb)[0]
    torch.set_num_threads(threads)
    assert det["boxes"].shape[0] > 0  # random weights, score_thresh 0: something to compare
    return det


def _same(det, ref):
    torch.testing.assert_close(det["boxes"], ref["boxes"])
    torch.testing.assert_close(det["scores"], ref["scores"])
    assert torch.equal(det["masks"], ref["masks"])


def test_bgr_arrays_and_tensors_with_channels_bgr(pred, rgb, ref):
    bgr = rgb[..., ::-1]  # what cv2.imread gives: a negative-stride view here
    _same(pred(bgr, channels="BGR")[0], ref)
    _same(pred(torch.from_numpy(bgr.copy()).permute(2, 0, 1), channels="BGR")[0], ref)  # (3, H, W) BGR
    bgra = np.dstack([bgr, np.zeros(rgb.shape[:2], np.uint8)])  # cv2.IMREAD_UNCHANGED of a PNG with alpha
    _same(pred([bgra], channels="BGR")[0], ref)
    _same(pred(Image.fromarray(rgb), channels="BGR")[0], ref)  # a PIL image knows its own order
    assert not torch.equal(pred(bgr)[0]["scores"], ref["scores"])  # the default is RGB
    with pytest.raises(ValueError, match="channels must be 'RGB' or 'BGR', got 'bgr'"):
        pred(rgb, channels="bgr")


def test_more_array_forms_match_rgb(pred, rgb, ref):
    _same(pred(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]))[0], ref)  # RGBA: alpha dropped
    _same(pred(rgb.astype(np.uint16) * 257)[0], ref)  # 16-bit, 0..65535
    _same(pred(torch.from_numpy(rgb[..., 0]))[0], pred(rgb[..., 0])[0])  # (H, W) grey tensor as array
    _same(pred(torch.from_numpy(rgb).permute(2, 0, 1)[None])[0], ref)  # (1, 3, H, W): a batch of one


def test_read_only_arrays_give_the_same_results_without_a_warning(pred, rgb, ref, recwarn):
    """np.asarray(PIL image) is read-only: torch.from_numpy of it warned "The given NumPy array is not
    writable" on every call. Same detections as the writable array, no warning, uint8 or float."""
    frozen = rgb.copy()
    frozen.flags.writeable = False
    _same(pred(frozen)[0], ref)
    _same(pred(frozen[..., ::-1][..., ::-1], channels="RGB")[0], ref)  # a contiguous read-only view
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    bgr.flags.writeable = False
    _same(pred(bgr[..., ::-1])[0], ref)  # as the README's np.asarray(Image.open(f))[..., ::-1] is read
    as_float = rgb.astype(np.float32) / 255
    as_float.flags.writeable = False
    _same(pred(as_float)[0], pred(rgb.astype(np.float32) / 255)[0])
    assert as_float.flags.writeable is False and frozen.flags.writeable is False  # not touched
    assert [str(w.message) for w in recwarn if "not writable" in str(w.message)] == []


@pytest.mark.parametrize("name", ["numpy 0..255", "tensor 0..255", "normalised", "nan", "inf"])
def test_float_images_off_the_0_1_scale_are_refused(pred, rgb, name):
    f = torch.from_numpy(rgb).permute(2, 0, 1).float()  # (3, H, W) 0..255
    image = {
        "numpy 0..255": rgb.astype(np.float32),
        "tensor 0..255": f,
        "normalised": (f / 255 - 0.45) / 0.225,  # torchvision's Normalize: the model normalises itself
        "nan": torch.where(f > 250, float("nan"), f / 255),
        "inf": torch.where(f > 250, float("inf"), f / 255),
    }[name]
    match = "image 1: image holds NaN" if name in ("nan", "inf") else r"image 1: float image values span"
    with pytest.raises(ValueError, match=match):
        pred([rgb, image])
    if isinstance(image, torch.Tensor):  # the path every command takes checks as well
        with pytest.raises(ValueError, match=match.replace("image 1", "image 0")):
            pred.predict_tensors([image])


def test_float_slightly_outside_0_1_is_used(pred, rgb):
    f = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255
    overshoot = f * 1.04 - 0.02  # a bicubic resize's ringing
    assert pred(overshoot)[0]["boxes"].shape[1] == 4


def test_unclear_inputs_name_the_problem(pred, rgb, tmp_path):
    with pytest.raises(ValueError, match=r"looks like \(H, W, C\).*permute\(2, 0, 1\)"):
        pred(torch.from_numpy(rgb))
    with pytest.raises(ValueError, match=r"got \(3, 40, 56\): numpy images are channels last.*transpose"):
        pred(np.ascontiguousarray(rgb.transpose(2, 0, 1)))  # a tensor's .numpy(): (3, H, W)
    with pytest.raises(TypeError, match="images: expected an image or an iterable of images, got NoneType"):
        pred(None)
    la = Image.fromarray(rgb).convert("LA")  # premultiplied "La" (Pillow converts it to "LA" only): read so
    assert torch.equal(pred(la.convert("La"))[0]["boxes"], pred(la)[0]["boxes"])
    with pytest.raises(TypeError, match=r"predict_tensors takes a list.*\[image\]"):
        pred.predict_tensors(torch.rand(3, 20, 20))
    with pytest.raises(ValueError, match="image 0: predict_tensors takes .* float RGB .* torch.uint8"):
        pred.predict_tensors([torch.from_numpy(rgb).permute(2, 0, 1)])
    with pytest.raises(ValueError, match=r"image 0 \(bytes, read as an encoded image file.*not an image"):
        pred(str(tmp_path / "x.png").encode())  # bytes are a file's content, not its name


def test_bytes_and_single_paths(pred, rgb, ref, tmp_path):
    path = tmp_path / "x.png"
    Image.fromarray(rgb).save(path)
    _same(pred(path.read_bytes())[0], ref)  # an HTTP upload's content
    windows = list(pred.predict_files(str(path)))  # one path, not its characters
    assert [[index for index, _, _ in w] for w in windows] == [[0]]
    _same(windows[0][0][2], ref)


def test_pil_images_are_turned_by_their_exif_orientation_as_files_are(pred, rgb, ref, tmp_path):
    from maskrcnn.visualize import draw_instances

    exif = Image.Exif()
    exif[0x0112] = 6  # "turn 90 degrees clockwise to view": stored on its side, as phones write photos
    path = tmp_path / "phone.png"
    Image.fromarray(rgb).transpose(Image.Transpose.ROTATE_90).save(path, exif=exif.tobytes())
    assert Image.open(path).size == (40, 56)  # stored (W, H): on its side
    _same(pred(path)[0], ref)
    with Image.open(path) as img:
        det = pred(img)[0]  # was (D, 56, 40): the stored pixels, boxes off the file's coordinates
        _same(det, ref)
        drawn = np.asarray(draw_instances(img, det))  # the same image as the Predictor saw
    assert np.array_equal(drawn, np.asarray(draw_instances(rgb, det)))
    # arrays are pixels as given: no tag to read
    assert pred(np.array(Image.open(path)))[0]["masks"].shape[1:] == (56, 40)


def test_results_are_ordinary_tensors(pred, rgb, ref):
    det = pred(rgb)[0]
    assert not any(v.is_inference() for v in det.values() if torch.is_tensor(v))
    boxes = det["boxes"]
    boxes[:, 2:] -= boxes[:, :2]  # xyxy -> xywh in place, as users do: inference tensors refuse it
    torch.testing.assert_close(boxes[:, 2:], ref["boxes"][:, 2:] - ref["boxes"][:, :2])
    w = torch.ones(4, requires_grad=True)
    (det["boxes"] * w).sum().backward()  # inference tensors cannot be saved for backward
    assert w.grad is not None


def test_results_made_inside_the_callers_inference_mode_are_ordinary_tensors(pred, rgb, ref):
    """The caller's own torch.inference_mode held over the Predictor's no_grad: the results were
    inference tensors, and an in-place edit afterwards failed. Whole images, tiles and TTA alike."""
    from maskrcnn.engine.tiling import TileOptions
    from maskrcnn.engine.tta import TTAOptions

    tiled = Predictor(pred.model, pred.cfg, tile=TileOptions(size=32, overlap=0.25))
    tta = Predictor(pred.model, pred.cfg, tta=TTAOptions(min_sizes=(40,), max_size=64, flip=True))
    for predictor in (pred, tiled, tta):
        with torch.inference_mode():
            det = predictor(rgb)[0]
        assert not any(v.is_inference() or v.requires_grad for v in det.values() if torch.is_tensor(v))
        before = det["boxes"].clone()
        det["boxes"].add_(1)  # "Inplace update to inference tensor outside InferenceMode"
        torch.testing.assert_close(det["boxes"], before + 1)
    with torch.inference_mode():
        _same(pred(rgb)[0], ref)  # the same detections


def test_tensors_on_the_meta_device_are_refused_naming_the_image(pred, rgb):
    """A meta tensor holds no data: "Tensor.item() cannot be called on meta tensors" from deep inside."""
    for dtype in (torch.float32, torch.uint8):
        with pytest.raises(ValueError, match="^image 1: tensor on the meta device holds no data$"):
            pred([rgb, torch.empty(3, 40, 56, device="meta", dtype=dtype)])
    with pytest.raises(ValueError, match="^image 0: tensor on the meta device holds no data$"):
        pred.predict_tensors([torch.empty(3, 40, 56, device="meta")])


def test_output_types_order_empty_and_determinism(pred, rgb, ref):
    assert ref["boxes"].dtype == ref["scores"].dtype == ref["mask_probs"].dtype == torch.float32
    assert ref["labels"].dtype == torch.int64 and ref["masks"].dtype == torch.bool
    assert all(v.device.type == "cpu" for v in ref.values() if torch.is_tensor(v))
    assert (ref["scores"][:-1] >= ref["scores"][1:]).all()
    again = pred(rgb)[0]  # bit for bit (at one thread count: others round differently)
    assert all(torch.equal(again[k], ref[k]) for k in ("boxes", "scores", "labels", "masks"))
    none = Predictor(pred.model, pred.cfg, score_thresh=1.01)(rgb)[0]  # above every score
    assert none["boxes"].shape == (0, 4) and none["scores"].shape == (0,) and none["labels"].shape == (0,)
    assert none["masks"].shape == (0, 40, 56) and none["masks"].dtype == torch.bool
    assert pred([]) == []


@pytest.mark.parametrize("optimise", [False, True])
def test_one_predictor_from_two_threads(pred, rgb, optimise):
    if optimise:  # what from_checkpoint gives: folded norms, Winograd and fused convolutions
        import copy

        pred = Predictor(copy.deepcopy(pred.model), pred.cfg, optimise=True)
    ref = pred(rgb)[0]
    other = np.ascontiguousarray(rgb[::-1])  # upside down: different detections
    serial = pred(other)[0]
    out = {}

    def run(key, image):
        out[key] = [pred(image)[0] for _ in range(2)]

    threads = [threading.Thread(target=run, args=(k, im)) for k, im in (("a", rgb), ("b", other))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for det in out["a"]:
        _same(det, ref)
    for det in out["b"]:
        _same(det, serial)


def test_bad_arguments_are_refused_by_name(pred):
    for value in (float("nan"), -0.1, "0.5"):
        with pytest.raises(ValueError, match="score_thresh must be a finite number >= 0"):
            Predictor(pred.model, pred.cfg, score_thresh=value)
    Predictor(pred.model, pred.cfg, score_thresh=np.float32(0.5))  # numpy scalars are numbers
    for value in (0, 2.5, "2"):
        with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
            Predictor(pred.model, pred.cfg, batch_size=value)


def _no_loading(monkeypatch):
    import maskrcnn.checkpoint as ckmod

    def never(*args, **kwargs):
        raise AssertionError("the checkpoint was read before the arguments were checked")

    monkeypatch.setattr(ckmod, "load_checkpoint", never)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_from_checkpoint_on_missing_cuda_fails_before_loading(tmp_path, monkeypatch):
    _no_loading(monkeypatch)
    with pytest.raises(ValueError, match="device 'cuda' requested but CUDA is not available"):
        Predictor.from_checkpoint(tmp_path / "model.pth", device="cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("device", ["auto", "cpu"])
def test_float16_without_cuda_is_refused_before_the_file_is_read(tmp_path, monkeypatch, device):
    """float16 on a CPU ("auto" resolves to it here) was refused only after the file was read: a missing
    file said "checkpoint file not found" instead of the argument's problem."""
    _no_loading(monkeypatch)
    for name in ("model.pth", "model.onnx"):  # neither exists
        with pytest.raises(ValueError, match="dtype float16 needs a CUDA device"):
            Predictor.from_weights(tmp_path / name, device=device, dtype="float16")


@pytest.mark.parametrize("kwargs, error", [
    ({"treshold": 0.5}, "unexpected keyword argument 'treshold'"),
    ({"score_thresh": float("nan")}, "score_thresh must be a finite number >= 0"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1"),
    ({"dtype": "half"}, "dtype 'half' not supported"),
    ({"masks": "compact"}, "masks must be 'dense' or 'rle'"),
    # was AttributeError: 'list' object has no attribute 'items', after the file was read
    ({"overrides": ["model.roi_heads.score_thresh=0.5"]}, "^overrides: a mapping of dotted config keys"),
])  # fmt: skip
def test_from_checkpoint_checks_arguments_before_loading(tmp_path, monkeypatch, kwargs, error):
    _no_loading(monkeypatch)
    with pytest.raises((ValueError, TypeError), match=error):
        Predictor.from_checkpoint(tmp_path / "model.pth", device="cpu", **kwargs)
    with pytest.raises((ValueError, TypeError), match=error):
        Predictor.from_weights(tmp_path / "model.pth", device="cpu", **kwargs)


def test_package_names_import_and_stay_lazy():
    code = (
        "import sys, maskrcnn\n"
        "assert 'torch' not in sys.modules, 'import maskrcnn imported torch'\n"
        "for name in maskrcnn.__all__: getattr(maskrcnn, name)\n"
        "from maskrcnn import Predictor, draw_instances, build_model\n"
        "import maskrcnn.predictor as p; assert maskrcnn.Predictor is p.Predictor\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_draw_instances_refuses_0_255_floats(rgb):
    from maskrcnn.visualize import draw_instances

    det = {"boxes": torch.tensor([[2.0, 2.0, 20.0, 20.0]]), "scores": torch.tensor([0.9]),
           "labels": torch.tensor([1])}  # fmt: skip
    with pytest.raises(ValueError, match=r"float image values span \[0, 255\]"):
        draw_instances(rgb.astype(np.float32), det)
    drawn = np.asarray(draw_instances(rgb.astype(np.float32) / 255, det))
    assert np.array_equal(drawn, np.asarray(draw_instances(rgb, det)))


def test_numpy_subclasses_are_one_image_by_their_values(pred, rgb, ref):
    """A masked array (or any ndarray subclass) was taken for a batch: its 40 rows, 40 results."""

    class Tagged(np.ndarray):  # what libraries wrapping arrays (astropy, xarray's data) hand over
        pass

    for image in (np.ma.masked_array(rgb), rgb.view(Tagged)):
        out = pred(image)
        assert len(out) == 1
        _same(out[0], ref)
    assert len(pred(np.ma.masked_array(np.stack([rgb, rgb])))) == 2  # (N, H, W, 3): N images
    holes = np.ma.masked_array(rgb, mask=np.zeros(rgb.shape, bool))
    holes[3, 4] = np.ma.masked  # a masked pixel has no value to detect on
    with pytest.raises(ValueError, match=r"image 0: numpy masked array with 3 masked values.*filled"):
        pred(holes)


def test_big_endian_arrays_read_as_native_ones(pred, rgb, ref):
    """FITS / astropy arrays are big-endian: '>u2' was "dtype >u2 not supported (... uint16 ...)", '>f4'
    torch's byte-order error."""
    _same(pred((rgb.astype(np.uint16) * 257).astype(">u2"))[0], ref)
    as_float = rgb.astype(np.float32) / 255
    _same(pred(as_float.astype(">f4"))[0], pred(as_float)[0])


@pytest.mark.filterwarnings("ignore::maskrcnn.engine.device.EmulatedBF16Warning")
def test_messages_fit_the_python_api(pred, tmp_path):
    """Python callers were told of --device, and of a missing file for a folder; the INT8 refusal says
    what to do in Python and on the command line alike."""
    with pytest.raises(ValueError, match=r"^device 'tpu': expected auto, cpu, cuda or cuda:N$"):
        Predictor.from_weights(tmp_path / "model.pth", device="tpu")
    with pytest.raises(ValueError, match="is a folder, not a checkpoint file"):
        Predictor.from_weights(tmp_path, device="cpu")
    # only what was asked and cannot be: no "got device cpu" when no device was given
    with pytest.raises(ValueError, match=r"\(got dtype bfloat16\); for its float weights load it with "
                                         r"int8=False in Python; on the command line drop --dtype "
                                         r"\(INT8 runs on the CPU\) or use the float checkpoint "
                                         r"it was made from\.$"):
        Predictor(pred.model, pred.cfg, int8={}, dtype="bfloat16")
