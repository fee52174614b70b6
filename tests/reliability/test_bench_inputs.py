"""The benchmark's inputs and outputs, probed as issue 22 did (items 3, 5-7, 9, 12, 13).

Every bad input reaches the user as ONE ``error:`` line from ``rejectnet bench run``
(exit status 2) that names the field, with no traceback, and before any training starts
(stage one is replaced by a function that fails the test if called). Every reader is
bounded; every output is written atomically, never through a symlink, and one failing
output never costs the others.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from rejectnet.bench import BenchError, convert, load_in_distribution, load_unlabeled
from rejectnet.bench.sources import to_unit_range
from rejectnet.cli import main
from rejectnet.data import load_npz
from rejectnet.files.atomic_writes import write_atomic
from rejectnet.files.bounded_reads import UnsafeFileError
from tests.bench.conftest import write_tiny_npz
from tests.conftest import ReliabilityCounts

TOML = """\
[data]
id = "{id}"
outliers = "pool.npz"
[data.ood]
far = "{ood}"
[train]
preset = "smoke"
{train}
[model]
{model}
"""


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stage one fails the test: every refusal here must come before training."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("training started before the input was refused")

    monkeypatch.setattr("rejectnet.bench.runner.train_classifier", refuse)


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    write_tiny_npz(tmp_path)
    return tmp_path


def _run(
    folder: Path,
    capsys: pytest.CaptureFixture[str],
    *,
    id: str = "id.npz",
    ood: str = "far.npz",
    train: str = "",
    model: str = "",
    out: str | None = None,
    extra: tuple[str, ...] = (),
) -> tuple[int, str]:
    cfg = folder / "bench.toml"
    cfg.write_text(TOML.format(id=id, ood=ood, train=train, model=model))
    argv = ["bench", "run", str(cfg), "--out", out or str(folder / "out"), "--quiet", *extra]
    code = main(argv)
    return code, capsys.readouterr().err


def _one_error_line(code: int, err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("rejectnet bench run: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


# ---------------------------------------------------------------- item 3: pixel scaling


def test_scaling_rule_scales_what_is_unambiguous(reliability: ReliabilityCounts) -> None:
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, (4, 6, 6), dtype=np.uint8)
    ref = u8.astype(np.float32) / 255
    same = {
        "float32 0..255": u8.astype(np.float32),
        "float64 0..255": u8.astype(np.float64),
        "int32 0..255": u8.astype(np.int32),
        "int64 0..255": u8.astype(np.int64),
        "uint8": u8,
    }
    for name, arr in same.items():
        np.testing.assert_allclose(to_unit_range(arr), ref, rtol=0, atol=1e-7, err_msg=name)
        reliability.case()
    u16 = np.array([[0, 32768, 65535]], np.uint16)
    np.testing.assert_allclose(to_unit_range(u16), [[0.0, 32768 / 65535, 1.0]], rtol=1e-6)
    floats01 = rng.random((2, 3, 3)).astype(np.float32)
    np.testing.assert_array_equal(to_unit_range(floats01), floats01)
    reliability.case(2)


@pytest.mark.parametrize(
    ("arr", "message"),
    [
        (np.array([[0.5, 2.7]], np.float32), "values in [0.5, 2.7]"),
        (np.array([[-1.0, 0.5]], np.float32), "values in [-1, 0.5]"),
        (np.array([[0, 1000]], np.int32), "values in [0, 1000]"),
        (np.array([[0, 1]], np.int64), "only 0 and 1"),
        (np.array([[0.0, np.nan]], np.float32), "NaN"),
        (np.array([["a", "b"]]), "not image pixels"),
    ],
)
def test_scaling_rule_refuses_the_ambiguous(
    arr: np.ndarray, message: str, reliability: ReliabilityCounts
) -> None:
    reliability.case()
    with pytest.raises(BenchError, match=None) as info:
        to_unit_range(arr)
    assert message in str(info.value)


def test_16_bit_png_is_scaled_not_clipped(tmp_path: Path, reliability: ReliabilityCounts) -> None:
    from PIL import Image

    reliability.case()
    folder = tmp_path / "grey16"
    folder.mkdir()
    Image.fromarray(np.full((8, 8), 32768, np.uint16)).save(folder / "half.png")
    x = load_unlabeled(folder, 8, 1, "[data.ood] grey")
    assert abs(float(x.mean()) - 0.5) < 1e-3  # clipping read this as 1.0


def test_float_0_255_npz_runs_like_uint8(tmp_path: Path, reliability: ReliabilityCounts) -> None:
    reliability.case(2)
    paths = write_tiny_npz(tmp_path)
    d = dict(np.load(paths["id"]))
    np.savez(
        tmp_path / "f.npz", **{k: v.astype(np.float32) if k[0] == "x" else v for k, v in d.items()}
    )
    a = load_in_distribution(paths["id"])
    b = load_in_distribution(tmp_path / "f.npz")
    torch.testing.assert_close(a.x_train, b.x_train, rtol=0, atol=1e-7)
    rgba = np.concatenate(
        [np.repeat(d["x_test"][..., None], 3, -1), np.zeros((64, 8, 8, 1), np.uint8)], -1
    )
    torch.testing.assert_close(convert(rgba, 8, 3), convert(rgba[..., :3], 8, 3))


def test_rgba_npz_reads_as_rgb(tmp_path: Path, reliability: ReliabilityCounts) -> None:
    """An (N, H, W, 4) npz was read as images of 8x4 ("set image_size"): alpha is dropped."""
    reliability.case(2)
    d = dict(np.load(write_tiny_npz(tmp_path)["id"]))

    def rgb(a: np.ndarray, alpha: bool) -> np.ndarray:
        planes = [a, a // 2, 255 - a] + ([np.full_like(a, 200)] if alpha else [])
        return np.stack(planes, -1)

    for alpha, name in ((True, "rgba.npz"), (False, "rgb.npz")):
        np.savez(
            tmp_path / name,
            x_train=rgb(d["x_train"], alpha),
            y_train=d["y_train"],
            x_test=rgb(d["x_test"], alpha),
            y_test=d["y_test"],
        )
    rgba = load_in_distribution(tmp_path / "rgba.npz")
    want = load_in_distribution(tmp_path / "rgb.npz")
    assert (rgba.image_size, rgba.channels) == (8, 3)
    torch.testing.assert_close(rgba.x_train, want.x_train, rtol=0, atol=0)
    torch.testing.assert_close(rgba.x_test, want.x_test, rtol=0, atol=0)


def test_nan_pixel_in_a_training_image(
    tiny: Path,
    capsys: pytest.CaptureFixture[str],
    no_training: None,
    reliability: ReliabilityCounts,
) -> None:
    reliability.fault()
    d = dict(np.load(tiny / "id.npz"))
    x = d["x_train"].astype(np.float32) / 255
    x[5, 1, 1] = np.nan
    np.savez(tiny / "nan.npz", **{**d, "x_train": x, "x_test": d["x_test"] / np.float32(255)})
    _one_error_line(*_run(tiny, capsys, id="nan.npz"), "[data] id", "image 5 holds NaN")


def test_single_class_and_huge_labels_are_refused(
    tiny: Path,
    capsys: pytest.CaptureFixture[str],
    no_training: None,
    reliability: ReliabilityCounts,
) -> None:
    x = np.zeros((40, 8, 8), np.uint8)
    np.savez(
        tiny / "one.npz",
        x_train=x,
        y_train=np.zeros(40, np.int64),
        x_test=x[:4],
        y_test=np.zeros(4, np.int64),
    )
    _one_error_line(*_run(tiny, capsys, id="one.npz"), "[data] id", "at least 2")
    y = np.arange(40) % 2
    y[0] = 10**9
    np.savez(tiny / "big.npz", x_train=x, y_train=y, x_test=x[:4], y_test=np.zeros(4, np.int64))
    _one_error_line(*_run(tiny, capsys, id="big.npz"), "[data] id", "1000000000")
    reliability.case(2)


# ------------------------------------------------- items 5, 9: bounds, readers, devices


@pytest.mark.parametrize(
    ("train", "field"),
    [
        ("n_runs = 1000000000", "[train] n_runs"),
        ("seeds = 1000000000", "[train] seeds"),
        ("k = 1000000000", "[train] k"),
        ('device = "tpu"', "[train] device"),
        ("batch_size = 0", "[train] batch_size"),
        ("weight_decay = -1", "[train] weight_decay"),
    ],
)
def test_config_bounds_give_one_line(
    tiny: Path,
    capsys: pytest.CaptureFixture[str],
    no_training: None,
    train: str,
    field: str,
    reliability: ReliabilityCounts,
) -> None:
    reliability.case()
    _one_error_line(*_run(tiny, capsys, train=train), field)


@pytest.mark.parametrize(
    ("model", "needle"),
    [
        ('name = "small_cnn"\nkwargs = {dropout = "x"}', "dropout must be a number in [0, 1]"),
        ('name = "small_cnn"\nkwargs = {dropout = 1.5}', "dropout must be a finite number"),
        ('name = "small_cnn"\nkwargs = {hidden = "x"}', "hidden must be a positive int"),
        (
            'name = "wide_resnet"\nkwargs = {depth = 10, widen_factor = 1, dropout = "x"}',
            "dropout must be a number in [0, 1]",
        ),
        ('name = "wide_resnet"\nkwargs = {depth = "x"}', "depth must be a positive int"),
        ('name = "wide_resnet"\nkwargs = {widen_factor = "2"}', "widen_factor must be an int"),
    ],
    ids=["cnn-dropout-str", "cnn-dropout-1.5", "cnn-hidden-str", "wrn-dropout-str",
         "wrn-depth-str", "wrn-widen-str"],
)  # fmt: skip
def test_model_kwargs_name_the_kwarg(
    tiny: Path,
    capsys: pytest.CaptureFixture[str],
    no_training: None,
    model: str,
    needle: str,
    reliability: ReliabilityCounts,
) -> None:
    """``kwargs = {dropout = "x"}`` said "'<' not supported between 'str' and 'int'"."""
    reliability.case()
    _one_error_line(*_run(tiny, capsys, model=model), "[model] cannot build", needle)


def test_image_size_bound(
    tiny: Path, capsys: pytest.CaptureFixture[str], reliability: ReliabilityCounts
) -> None:
    reliability.case()
    cfg = tiny / "b.toml"
    cfg.write_text(TOML.format(id="id.npz", ood="far.npz", train="", model="").replace(
        "[data]\n", "[data]\nimage_size = 100000\n"))  # fmt: skip
    code = main(["bench", "run", str(cfg), "--out", str(tiny / "o"), "--quiet"])
    _one_error_line(code, capsys.readouterr().err, "[data] image_size")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
def test_cuda_without_cuda(
    tiny: Path, capsys: pytest.CaptureFixture[str], reliability: ReliabilityCounts
) -> None:
    reliability.case()
    _one_error_line(
        *_run(tiny, capsys, train='device = "cuda"'), "[train] device", "CUDA is not available"
    )


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_weights_fifo_is_refused_without_reading(
    tiny: Path,
    capsys: pytest.CaptureFixture[str],
    no_training: None,
    reliability: ReliabilityCounts,
) -> None:
    reliability.fault()
    os.mkfifo(tiny / "w.safetensors")
    code, err = _run(tiny, capsys, model='name = "small_cnn"\nweights = "w.safetensors"')
    _one_error_line(code, err, "[model] weights", "not a regular file")


def test_symlink_loop_id(
    tiny: Path, capsys: pytest.CaptureFixture[str], reliability: ReliabilityCounts
) -> None:
    reliability.fault()
    os.symlink(tiny / "loop_b", tiny / "loop_a")
    os.symlink(tiny / "loop_a", tiny / "loop_b")
    _one_error_line(*_run(tiny, capsys, id="loop_a"), "[data] id")


def _npz_with_header(path: Path, shape: tuple[int, ...], payload: bytes) -> None:
    header = f"{{'descr': '|u1', 'fortran_order': False, 'shape': {shape!r}, }}"
    header += " " * (64 - (10 + len(header) + 1) % 64) + "\n"
    npy = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + payload
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x_test.npy", npy)


def _idx(dims: tuple[int, ...], payload: bytes, declared: int | None = None) -> bytes:
    nd = len(dims) if declared is None else declared
    return bytes([0, 0, 8, nd]) + struct.pack(f">{len(dims)}I", *dims) + payload


def _png_header_only(path: Path, w: int, h: int) -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def _bad_ood_sources(tiny: Path) -> Iterator[tuple[str, str]]:
    """(path relative to tiny, text the message must hold) for each hostile OOD source."""
    from PIL import Image

    _npz_with_header(tiny / "huge.npz", (10**11,), b"\x00" * 64)
    yield "huge.npz", "declares shape (100000000000,)"
    good = io.BytesIO()
    np.savez(good, x_test=np.zeros((50, 8, 8), np.uint8))
    (tiny / "trunc.npz").write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    yield "trunc.npz", "trunc.npz"
    np.savez(tiny / "strings.npz", x_test=np.array([["a"] * 8] * 8))
    yield "strings.npz", "not image pixels"
    nan = np.random.default_rng(0).random((20, 8, 8)).astype(np.float32)
    nan[3, 2, 2] = np.nan
    np.savez(tiny / "nan.npz", x_test=nan)
    yield "nan.npz", "image 3 holds NaN"
    short = tiny / "short_idx"
    short.mkdir()
    (short / "t10k-images-idx3-ubyte").write_bytes(_idx((20, 8), b"", declared=3))
    yield "short_idx", "truncated"
    more = tiny / "more_idx"
    more.mkdir()
    with gzip.open(more / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(_idx((1, 8, 8), b"\x00" * 64 + b"\x01" * 100_000))
    yield "more_idx", "more data than its header declares"
    corrupt = tiny / "corrupt_png"
    corrupt.mkdir()
    for i in range(3):
        Image.fromarray(np.full((8, 8), 128, np.uint8)).save(corrupt / f"{i}.png")
    (corrupt / "9.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    yield "corrupt_png", "9.png"
    bomb = tiny / "bomb"
    bomb.mkdir()
    _png_header_only(bomb / "bomb.png", 30000, 30000)
    yield "bomb", "decompression bomb"
    lab = tiny / "lab"
    lab.mkdir()
    Image.new("LAB", (8, 8)).save(lab / "a.tif")
    yield "lab", "a.tif' from mode LAB"


def test_every_reader_is_bounded_and_names_the_field(
    tiny: Path,
    capsys: pytest.CaptureFixture[str],
    no_training: None,
    reliability: ReliabilityCounts,
) -> None:
    for rel, needle in _bad_ood_sources(tiny):
        reliability.fault()
        code, err = _run(tiny, capsys, ood=rel)
        _one_error_line(code, err, "[data.ood] far", needle)


def test_tiny_images_are_refused_naming_the_field(
    tiny: Path,
    capsys: pytest.CaptureFixture[str],
    no_training: None,
    reliability: ReliabilityCounts,
) -> None:
    from PIL import Image

    x = np.zeros((40, 2, 2), np.uint8)
    y = np.arange(40) % 2
    np.savez(tiny / "two.npz", x_train=x, y_train=y, x_test=x[:4], y_test=y[:4])
    _one_error_line(*_run(tiny, capsys, id="two.npz"), "[data] id", "2x2", "image_size")
    for split in ("train", "test"):
        for c in ("a", "b"):
            (tiny / "imgs" / split / c).mkdir(parents=True)
            for i in range(3):
                side = 1 if (split, c, i) == ("train", "a", 0) else 8
                Image.fromarray(np.zeros((side, side), np.uint8)).save(
                    tiny / "imgs" / split / c / f"{i}.png"
                )
    _one_error_line(*_run(tiny, capsys, id="imgs"), "[data] id", "1x1", "image_size")
    reliability.case(2)


def test_npz_reader_checks_headers_before_allocating(
    tmp_path: Path, reliability: ReliabilityCounts
) -> None:
    reliability.fault(2)
    _npz_with_header(tmp_path / "a.npz", (10**11,), b"\x00" * 10)
    with pytest.raises(ValueError, match="declares shape"):
        load_npz(tmp_path / "a.npz")
    _npz_with_header(tmp_path / "b.npz", (8,), b"\x00" * 4)
    with pytest.raises(ValueError, match="holds 4 bytes"):
        load_npz(tmp_path / "b.npz")


# ----------------------------------------------------------- items 6, 7, 9: outputs


def test_out_problems_are_caught_before_training(
    tiny: Path,
    capsys: pytest.CaptureFixture[str],
    no_training: None,
    reliability: ReliabilityCounts,
) -> None:
    (tiny / "afile").write_text("x")
    _one_error_line(*_run(tiny, capsys, out=str(tiny / "afile")), "--out", "afile")
    out = tiny / "o1"
    (out / "report.html").mkdir(parents=True)
    _one_error_line(*_run(tiny, capsys, out=str(out)), "--out: report.html", "a folder")
    reliability.case(2)


def test_planted_symlink_is_never_written_through(
    tiny: Path,
    capsys: pytest.CaptureFixture[str],
    no_training: None,
    reliability: ReliabilityCounts,
) -> None:
    reliability.fault()
    target = tiny / "precious.txt"
    target.write_text("keep me")
    out = tiny / "o2"
    out.mkdir()
    os.symlink(target, out / "results.json")
    _one_error_line(*_run(tiny, capsys, out=str(out)), "--out: results.json", "symlink")
    assert target.read_text() == "keep me"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_read_only_out(
    tiny: Path, capsys: pytest.CaptureFixture[str], reliability: ReliabilityCounts
) -> None:
    reliability.case()
    ro = tiny / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        _one_error_line(*_run(tiny, capsys, out=str(ro / "out")), "--out")
    finally:
        ro.chmod(0o700)


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux sysfs")
def test_unwritable_out_even_for_root(
    tiny: Path,
    capsys: pytest.CaptureFixture[str],
    no_training: None,
    reliability: ReliabilityCounts,
) -> None:
    """sysfs refuses new folders to every user, root included (who ignores chmod)."""
    reliability.case()
    out = Path("/sys/rejectnet-out")
    _one_error_line(*_run(tiny, capsys, out=str(out)), "--out", "not a writable folder")
    assert not out.exists()


def test_write_atomic_never_follows_links(tmp_path: Path, reliability: ReliabilityCounts) -> None:
    reliability.fault(2)
    target = tmp_path / "target"
    target.write_text("keep")
    os.symlink(target, tmp_path / "link")
    with pytest.raises(UnsafeFileError, match="symlink"):
        write_atomic(tmp_path / "link", "new")
    assert target.read_text() == "keep"
    (tmp_path / "dir").mkdir()
    with pytest.raises(UnsafeFileError, match="a folder"):
        write_atomic(tmp_path / "dir", "new")
    write_atomic(tmp_path / "ok.txt", "v1")
    write_atomic(tmp_path / "ok.txt", b"v2")
    assert (tmp_path / "ok.txt").read_text() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "link", "ok.txt", "target"]


def test_one_failing_output_never_costs_the_others(
    tiny: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    reliability: ReliabilityCounts,
) -> None:
    reliability.fault()

    def broken(*args: object, **kwargs: object) -> str:
        raise RuntimeError("the HTML step broke")

    monkeypatch.setattr("rejectnet.report_html.reports_to_html", broken)
    out = tiny / "o3"
    code, err = _run(tiny, capsys, out=str(out), extra=("--methods", "msp", "--no-plots"))
    assert code == 1
    assert "could not write report.html: the HTML step broke" in err
    assert "Traceback" not in err
    assert (out / "results.json").is_file() and (out / "results.md").is_file()
    assert not (out / "report.html").exists()
    import json

    meta = json.loads((out / "results.json").read_text())["_meta"]
    assert meta["output_errors"] == ["report.html: the HTML step broke"]


def test_config_help_says_a_config_is_code(
    capsys: pytest.CaptureFixture[str], reliability: ReliabilityCounts
) -> None:
    reliability.case()
    with pytest.raises(SystemExit):
        main(["bench", "run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "A config file is code" in text and "Run only configs you trust" in text
    assert "nothing is unpickled, every reader is bounded" in text
    assert "checked before training" in text and "never through a symlink" in text


def test_hostile_set_name_and_broken_plots_cost_nothing_else(
    tiny: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    reliability: ReliabilityCounts,
) -> None:
    import json

    reliability.fault(2)

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("Expected end of text, found '$'")  # matplotlib's mathtext failure

    monkeypatch.setattr("rejectnet.plotting.figures", broken)
    cfg = tiny / "odd.toml"
    cfg.write_text(
        '[data]\nid = "id.npz"\n[data.ood]\n"odd$\\nope|$name" = "far.npz"\n'
        '[train]\npreset = "smoke"\n'
    )
    out = tiny / "o4"
    code = main(["bench", "run", str(cfg), "--out", str(out), "--quiet", "--methods", "msp"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "could not write plots: Expected end of text" in err
    for name in ("results.json", "results.md", "report.html"):
        assert (out / name).is_file(), name
    md = (out / "results.md").read_text()
    assert "odd$ ope\\|$name: " in md and "(far-OOD)" in md  # one line, the pipe escaped
    meta = json.loads((out / "results.json").read_text())["_meta"]
    assert meta["ood_groups"] == {"odd$\nope|$name": "far"}
    assert any(e.startswith("plots:") for e in meta["output_errors"])


def test_results_json_is_strict_json(reliability: ReliabilityCounts) -> None:
    import json

    from rejectnet.bench.runner import _json_safe

    reliability.case()
    data = {"a": {"selective": {"risk@0": float("nan")}, "x": [1.0, float("inf")]}, "n": 3}
    text = json.dumps(_json_safe(data), allow_nan=False)
    assert json.loads(text) == {"a": {"selective": {"risk@0": None}, "x": [1.0, None]}, "n": 3}
