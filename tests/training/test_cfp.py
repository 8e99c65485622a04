"""CFP (Celebrities in Frontal-Profile): the protocol files, names, fiducials and the alignment of the
faces no detector finds, read from the real dataset in the shared folder (fail in CI without it)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from pvcore.paths import CACHE_ENV
from tests.conftest import require_shared
from training.data import cfp


@pytest.fixture(autouse=True)
def _cfp_present() -> None:
    require_shared("data", "cfp", "Protocol")


def test_image_lists_number_every_photo() -> None:
    frontal, profile = cfp.image_lists()
    assert len(frontal) == 5000 and len(profile) == 2000
    assert frontal[0] == "001/frontal/01.jpg" and frontal[-1] == "500/frontal/10.jpg"
    assert profile[0] == "001/profile/01.jpg" and profile[-1] == "500/profile/04.jpg"
    assert Counter(cfp.identity_of(p) for p in frontal) == Counter({f"{k:03d}": 10 for k in range(1, 501)})
    assert all((cfp.images_root() / p).is_file() for p in frontal[::500] + profile[::500])


@pytest.mark.parametrize("protocol", cfp.PROTOCOLS)
def test_protocol_has_10_identity_disjoint_folds_of_350_same_and_350_different(protocol: str) -> None:
    pairs = cfp.load_pairs(protocol)
    assert len(pairs) == 7000
    for fold in range(10):
        chunk = pairs[fold * 700:(fold + 1) * 700]
        assert all(p.fold == fold for p in chunk)
        assert [p.same for p in chunk] == [True] * 350 + [False] * 350
    people = [{cfp.identity_of(x) for p in pairs if p.fold == k for x in (p.a, p.b)} for k in range(10)]
    assert [len(s) for s in people] == [50] * 10
    assert all(not (people[i] & people[j]) for i in range(10) for j in range(i + 1, 10))
    second = {p.b.split("/")[1] for p in pairs}
    assert {p.a.split("/")[1] for p in pairs} == {"frontal"}
    assert second == ({"frontal"} if protocol == "FF" else {"profile"})
    assert all((cfp.identity_of(p.a) == cfp.identity_of(p.b)) == p.same for p in pairs)
    # the files' own first lines: FF/01/same.txt "4,7", FP/01/diff.txt "5,97"
    first = pairs[0] if protocol == "FF" else pairs[350]
    assert (first.a, first.b) == (("001/frontal/04.jpg", "001/frontal/07.jpg") if protocol == "FF"
                                  else ("001/frontal/05.jpg", "025/profile/01.jpg"))  # profile 97 = person 25


def test_names_and_their_overlap_with_lfw() -> None:
    from training.data import lfw

    names = cfp.load_names()
    assert len(names) == 500 and names["001"] == "50 Cent" and names["006"] == "Adam Sandler"
    overlap = cfp.lfw_overlap(names, lfw.load_people_folds())
    assert names["006"] == "Adam Sandler" and "006" in overlap
    assert "001" not in overlap  # "50_Cent" is not an LFW identity
    assert len(overlap) == 176  # measured: 176 of CFP's 500 people share a name with an LFW identity
    assert set(overlap.values()) <= set(range(10))


def test_fiducials_and_their_box() -> None:
    pts = cfp.read_fiducials("001/profile/01.jpg")
    assert pts.shape == (30, 2) and pts.dtype == np.float32
    assert tuple(pts[0]) == pytest.approx((47.166, 65.19))
    for rel, view in (("001/profile/01.jpg", "profile"), ("001/frontal/01.jpg", "frontal")):
        p = cfp.read_fiducials(rel)
        x1, y1, x2, y2 = cfp.fiducial_box(p, view)
        assert x2 - x1 == pytest.approx(y2 - y1)  # square
        assert (p[:, 1] >= y1 - 1e-3).all() and (p[:, 1] <= y2 + 1e-3).all()
        assert x1 <= p[cfp.NOSE_TIP, 0] <= x2
    frontal = cfp.read_fiducials("001/frontal/01.jpg")
    x1, _, x2, _ = cfp.fiducial_box(frontal, "frontal")
    assert (x1 + x2) / 2 == pytest.approx(frontal[cfp.NOSE_TIP, 0])  # the visible half mirrored about the nose


def test_malformed_lists_are_named(tmp_path: Path) -> None:
    root = tmp_path / "cfp"
    (root / "Protocol").mkdir(parents=True)
    (root / "Protocol" / "Pair_list_F.txt").write_text("1 ../Data/Images/001/frontal/01.jpg\n"
                                                       "3 ../Data/Images/001/frontal/02.jpg\n")
    with pytest.raises(cfp.CFPFormatError, match="out of order"):
        cfp.image_lists(root)
    (root / "Protocol" / "Pair_list_F.txt").write_text("1 ../Data/Images/001/profile/01.jpg\n")
    with pytest.raises(cfp.CFPFormatError, match="Pair_list_F.txt:1"):
        cfp.image_lists(root)
    with pytest.raises(ValueError, match="unknown CFP protocol"):
        cfp.load_pairs("PP", root)  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="CFP folder"):
        cfp.cfp_dir(tmp_path / "nothing")


def test_align_falls_back_to_the_fiducials_box(tmp_path: Path, monkeypatch) -> None:
    """A frontal photo dlib finds, and a profile neither dlib nor RetinaFace finds (measured: 213/profile/04),
    aligned in a fresh cache: the second in its fiducials' box, stored with the cache's fixed-box status."""
    from training.face.cache import FIXED_BOX, PRIMARY

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    cache = cfp.cfp_cache("dlib")
    idx = cache.indices(["001/frontal/01.jpg", "213/profile/04.jpg"])
    counts = cfp.align(cache, idx, workers=1, progress=False)
    assert counts["primary"] == 1 and counts["fixed-box"] == 1 and counts["failed"] == 0
    assert list(cache.status[idx]) == [PRIMARY, FIXED_BOX]
    crops = np.asarray(cache.crops()[idx])
    assert crops.std(axis=(1, 2, 3)).min() > 20  # real pictures, not the black of a missing crop
    x1, y1, x2, y2 = cfp.fiducial_box(cfp.read_fiducials("213/profile/04.jpg"), "profile")
    lm = cache.landmarks[idx[1]]
    assert ((lm[:, 0] > x1 - 20) & (lm[:, 0] < x2 + 20) & (lm[:, 1] > y1 - 20) & (lm[:, 1] < y2 + 20)).all()
    assert cfp.align(cache, idx, workers=1, progress=False) == counts  # cached: nothing aligned again
