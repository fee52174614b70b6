"""Compiled packages (issue 22, items 1 and 4): every input layout, and crafted archives.

A ``load_aoti`` model must decide like :meth:`~rejectnet.RejectHead.predict` for every
memory layout a user produces (a 1-channel NHWC batch permuted to NCHW and a
``channels_last`` one report ``is_contiguous()`` True while their strides differ from the
compiled ones), and a crafted ``.pt2`` must never write outside its extraction folder,
extract without a bound, run with metadata describing another input than the compiled
one, or report a threshold other than the one its decision uses.

Compiling takes tens of seconds: one package per channel count, shared by the module.
"""

from __future__ import annotations

import json
import stat
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import rejectnet
from rejectnet import RejectHead
from rejectnet.aoti import _find_compiler
from rejectnet.models import SmallCNN
from tests.conftest import ReliabilityCounts

pytestmark = pytest.mark.skipif(_find_compiler() is None, reason="no C++ compiler")


def _net(channels: int) -> RejectHead:
    torch.manual_seed(channels)
    model = SmallCNN(num_classes=4, image_size=8, in_channels=channels, channels=(4, 8), hidden=16)
    net = RejectHead.wrap(model, k=3).eval()
    g = torch.Generator().manual_seed(1)
    net.calibrate([torch.randn(64, channels, 8, 8, generator=g)], coverage=0.5)
    return net


@pytest.fixture(scope="module")
def packages(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[int, tuple[RejectHead, Path]]:
    """A calibrated 1-channel and 3-channel network and their compiled packages."""
    out = {}
    for c in (1, 3):
        net = _net(c)
        folder = tmp_path_factory.mktemp(f"aoti{c}")
        g = torch.Generator().manual_seed(2)
        path = rejectnet.export_aoti(net, folder / "m.pt2", torch.randn(4, c, 8, 8, generator=g))
        out[c] = (net, path)
    return out


def _layouts(c: int) -> dict[str, Callable[[torch.Generator], torch.Tensor]]:
    """Every way a user commonly hands over an (N, C, 8, 8) batch."""
    return {
        "contiguous": lambda g: torch.rand(5, c, 8, 8, generator=g),
        "nhwc_permuted": lambda g: torch.rand(5, 8, 8, c, generator=g).permute(0, 3, 1, 2),
        "channels_last": lambda g: torch.rand(5, c, 8, 8, generator=g).to(
            memory_format=torch.channels_last
        ),
        "batch_sliced": lambda g: torch.rand(10, c, 8, 8, generator=g)[::2],
        "offset_slice": lambda g: torch.rand(7, c, 8, 8, generator=g)[2:],
        "spatial_sliced": lambda g: torch.rand(5, c, 16, 16, generator=g)[:, :, ::2, ::2],
        "hw_transposed": lambda g: torch.rand(5, c, 8, 8, generator=g).transpose(2, 3),
        "channel_narrowed": lambda g: torch.rand(5, c + 2, 8, 8, generator=g)[:, 1 : 1 + c],
        "expanded": lambda g: torch.rand(1, c, 8, 8, generator=g).expand(5, c, 8, 8),
        "one_row_odd_stride": lambda g: torch.rand(6, 8, 8, c, generator=g).permute(0, 3, 1, 2)[
            ::3
        ][:1],
        "nhwc_one_row": lambda g: torch.rand(1, 8, 8, c, generator=g).permute(0, 3, 1, 2),
    }


@pytest.mark.parametrize("channels", [1, 3])
def test_every_layout_decides_like_predict(
    channels: int,
    packages: dict[int, tuple[RejectHead, Path]],
    reliability: ReliabilityCounts,
) -> None:
    net, path = packages[channels]
    compiled = rejectnet.load_aoti(path)
    seen_ood = seen_id = False
    for i, (name, make) in enumerate(_layouts(channels).items()):
        reliability.case()
        x = make(torch.Generator().manual_seed(10 + i)) * 4 - 2
        held = x.clone()
        stride = x.stride()
        labels, score, is_ood = compiled(x)
        want = net.predict(x.contiguous())
        assert torch.allclose(score, want.ood_score, rtol=0.0, atol=1e-5), name
        clear = (want.ood_score.double() - float(net.threshold)).abs() > 1e-5
        assert torch.equal(is_ood[clear], want.is_ood[clear]), name
        assert torch.equal(labels[clear], want.labels[clear]), name
        # the caller's tensor is neither changed nor re-laid out
        assert torch.equal(x, held) and x.stride() == stride, name
        seen_ood |= bool(want.is_ood.any())
        seen_id |= bool((~want.is_ood).any())
    assert seen_ood and seen_id, "the layouts should meet both decisions"


def _rewrite(
    src: Path,
    dst: Path,
    *,
    meta: Callable[[dict[str, object]], None] | None = None,
    extra: list[tuple[zipfile.ZipInfo, bytes]] = (),  # type: ignore[assignment]
) -> Path:
    """A copy of package ``src`` with its rejectnet metadata edited and entries added."""
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(dst, "w") as new:
        for info in old.infolist():
            data = old.read(info)
            if meta is not None and info.filename.endswith("_metadata.json"):
                entry = json.loads(data)
                inner = json.loads(entry["rejectnet"])
                meta(inner)
                entry["rejectnet"] = json.dumps(inner)
                data = json.dumps(entry).encode()
            new.writestr(info, data)
        for info, data in extra:
            new.writestr(info, data)
    return dst


def test_crafted_entries_are_refused_before_extraction(
    packages: dict[int, tuple[RejectHead, Path]],
    tmp_path: Path,
    reliability: ReliabilityCounts,
) -> None:
    _, path = packages[1]
    prefix = zipfile.ZipFile(path).namelist()[0].split("/")[0]
    target = tmp_path / "W" / "TRAVERSED"
    link = zipfile.ZipInfo(f"{prefix}/data/link")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    hostile = [
        zipfile.ZipInfo(f"{prefix}/../../../../../../../../{target.relative_to('/')}"),
        zipfile.ZipInfo(f"{prefix}/data/../../../../escape"),
        zipfile.ZipInfo(str(target)),  # absolute
        zipfile.ZipInfo(f"{prefix}\\..\\..\\escape"),
        zipfile.ZipInfo(f"C:{prefix}/escape"),
        link,
    ]
    for i, info in enumerate(hostile):
        reliability.fault()
        bad = _rewrite(path, tmp_path / f"bad{i}.pt2", extra=[(info, b"pwned")])
        with pytest.raises(ValueError, match="outside its folder"):
            rejectnet.load_aoti(bad)
        assert not target.exists() and not (tmp_path / "escape").exists()


def test_extraction_is_bounded(
    packages: dict[int, tuple[RejectHead, Path]],
    tmp_path: Path,
    reliability: ReliabilityCounts,
) -> None:
    _, path = packages[1]
    prefix = zipfile.ZipFile(path).namelist()[0].split("/")[0]
    # a 64 MiB entry of zeros deflates to ~64 KiB: a zip bomb
    reliability.fault()
    bomb = zipfile.ZipInfo(f"{prefix}/data/zeros.bin")
    bomb.compress_type = zipfile.ZIP_DEFLATED
    bombed = _rewrite(path, tmp_path / "bomb.pt2", extra=[(bomb, bytes(64 << 20))])
    assert bombed.stat().st_size < 4 << 20
    with pytest.raises(ValueError, match="200-fold"):
        rejectnet.load_aoti(bombed)
    # the size bounds, per entry and in all
    reliability.case(3)
    size = max(i.file_size for i in zipfile.ZipFile(path).infolist())
    with pytest.raises(ValueError, match="more than max_bytes=1000"):
        rejectnet.load_aoti(path, max_bytes=1000)
    with pytest.raises(ValueError, match="in all"):
        rejectnet.load_aoti(path, max_bytes=size)
    with pytest.raises(TypeError, match="max_bytes"):
        rejectnet.load_aoti(path, max_bytes=1.5)  # type: ignore[arg-type]
    # many tiny entries
    reliability.fault()
    many = [(zipfile.ZipInfo(f"{prefix}/data/e{i}"), b"") for i in range(10_001)]
    with pytest.raises(ValueError, match="entries"):
        rejectnet.load_aoti(_rewrite(path, tmp_path / "many.pt2", extra=many))


def test_metadata_must_match_the_compiled_program(
    packages: dict[int, tuple[RejectHead, Path]],
    tmp_path: Path,
    reliability: ReliabilityCounts,
) -> None:
    _, path = packages[1]

    def smaller(m: dict[str, object]) -> None:
        m["input_spec"] = {"shape": [1, 4, 4], "dtype": "float32"}

    def wider(m: dict[str, object]) -> None:
        m["input_spec"] = {"shape": [3, 8, 8], "dtype": "float32"}

    def other_dtype(m: dict[str, object]) -> None:
        m["input_spec"] = {"shape": [1, 8, 8], "dtype": "float64"}

    def fixed_batch(m: dict[str, object]) -> None:
        m["batch"] = 1  # the package takes any batch size: still consistent, accepted

    def threshold_f64(m: dict[str, object]) -> None:
        m["threshold_dtype"] = "float64"

    def old_package(m: dict[str, object]) -> None:
        del m["threshold_dtype"]

    for fn, pattern in [
        (smaller, "does not match its compiled program"),
        (wider, "does not match its compiled program"),
        (other_dtype, "does not match its compiled program"),
        (threshold_f64, "does not match its compiled program"),
        (old_package, "compile it again"),
    ]:
        reliability.fault()
        with pytest.raises(ValueError, match=pattern):
            rejectnet.load_aoti(_rewrite(path, tmp_path / f"{fn.__name__}.pt2", meta=fn))
    reliability.case()
    fixed = rejectnet.load_aoti(_rewrite(path, tmp_path / "b1.pt2", meta=fixed_batch))
    assert fixed.batch_size == 1


def test_threshold_is_the_one_the_decision_uses(
    packages: dict[int, tuple[RejectHead, Path]],
    tmp_path: Path,
    reliability: ReliabilityCounts,
) -> None:
    net, path = packages[1]
    x = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(5)) * 4 - 2
    scores = net.predict(x).ood_score
    new = float(scores.median())

    def edited(m: dict[str, object]) -> None:
        m["threshold"] = new

    reliability.fault()
    compiled = rejectnet.load_aoti(_rewrite(path, tmp_path / "t.pt2", meta=edited))
    assert compiled.threshold == new
    _, score, is_ood = compiled(x)
    want = score.double() > new
    clear = (score.double() - new).abs() > 1e-6
    assert torch.equal(is_ood[clear], want[clear])
    assert bool(is_ood.any()) and bool((~is_ood).any())
    assert f"threshold={new:.6g}" in repr(compiled)


def test_export_aoti_output_is_not_a_bomb(
    packages: dict[int, tuple[RejectHead, Path]], reliability: ReliabilityCounts
) -> None:
    """What export_aoti writes passes the loader's own checks with room to spare."""
    reliability.case()
    for _, path in packages.values():
        infos = zipfile.ZipFile(path).infolist()
        assert sum(i.file_size for i in infos) < rejectnet.aoti.MAX_PACKAGE_BYTES
        assert all(".." not in i.filename.split("/") for i in infos)
