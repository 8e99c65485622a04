"""The official LFW lists in the shared folder.

These read the real files and fail (never skip) without them."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from training.data.image_folder import EmptyImageFolderError, ImageFolder
from training.data.lfw import (
    N_IDENTITIES,
    N_IMAGES,
    LFWFormatError,
    Pair,
    all_images,
    identity_of,
    image_path,
    lfw_root,
    load_pairs,
    load_people,
    load_people_folds,
    parse_pairs_file,
    parse_people_file,
)


@pytest.fixture(scope="module")
def images() -> list[str]:
    return all_images()


def test_view2_pairs_has_10_folds_of_300_same_then_300_different() -> None:
    pairs = load_pairs("view2")
    assert len(pairs) == 6000
    for fold in range(10):
        chunk = pairs[fold * 600:(fold + 1) * 600]
        assert all(p.fold == fold for p in chunk)
        assert [p.same for p in chunk] == [True] * 300 + [False] * 300
    first = Pair("Abel_Pacheco/Abel_Pacheco_0001.jpg", "Abel_Pacheco/Abel_Pacheco_0004.jpg", True, 0)
    assert pairs[0] == first


def test_pair_identities_agree_with_labels_and_images_exist(images: list[str]) -> None:
    have = set(images)
    for view in ("view2", "devtrain", "devtest"):
        pairs = load_pairs(view)  # type: ignore[arg-type]
        for p in pairs:
            assert (identity_of(p.a) == identity_of(p.b)) == p.same, p
            assert p.a in have and p.b in have, p
            assert p.a != p.b


def test_dev_pairs_counts() -> None:
    train, test = load_pairs("devtrain"), load_pairs("devtest")
    assert len(train) == 2200 and len(test) == 1000
    assert sum(p.same for p in train) == 1100 and sum(p.same for p in test) == 500
    assert {p.fold for p in train + test} == {0}


def test_all_images_and_identities(images: list[str]) -> None:
    assert len(images) == N_IMAGES == 13_233
    assert images == sorted(images)
    assert len({identity_of(p) for p in images}) == N_IDENTITIES == 5_749
    assert all(p.startswith(identity_of(p) + "/") for p in images)
    assert (lfw_root() / images[0]).is_file()


def test_people_folds_are_disjoint_and_cover_everyone(images: list[str]) -> None:
    folds = load_people_folds()
    assert len(folds) == 10
    names = [n for fold in folds for n in fold]
    assert len(names) == len(set(names)) == N_IDENTITIES
    counts = load_people("view2")
    per_identity = Counter(identity_of(p) for p in images)
    assert counts == dict(per_identity)


def test_view2_pairs_stay_inside_their_people_fold() -> None:
    fold_of = {n: i for i, fold in enumerate(load_people_folds()) for n in fold}
    for p in load_pairs("view2"):
        assert fold_of[identity_of(p.a)] == fold_of[identity_of(p.b)] == p.fold


def test_dev_people_are_disjoint() -> None:
    train, test = load_people("devtrain"), load_people("devtest")
    assert len(train) == 4038 and len(test) == 1711
    assert not set(train) & set(test)


def test_lfw_as_image_folder() -> None:
    ds = ImageFolder.scan(lfw_root())
    assert len(ds) == N_IMAGES and len(ds.identities) == N_IDENTITIES
    assert ds.identities == sorted(ds.identities)
    rel, ident = ds[0]
    assert ident == identity_of(rel) and ds.path(0).is_file()
    assert ds.labels()[0] == ds.label_of(ident) == 0


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        ImageFolder.scan(tmp_path / "nope")
    (tmp_path / "alice").mkdir()
    (tmp_path / "alice" / "notes.txt").write_text("x")
    with pytest.raises(EmptyImageFolderError, match="no images"):
        ImageFolder.scan(tmp_path)
    (tmp_path / "alice" / "b.PNG").write_bytes(b"")
    (tmp_path / "alice" / "a.jpg").write_bytes(b"")
    (tmp_path / "bob").mkdir()
    ds = ImageFolder.scan(tmp_path)
    assert ds.samples == [("alice/a.jpg", "alice"), ("alice/b.PNG", "alice")]
    assert ds.identities == ["alice"]


def test_helpers() -> None:
    assert image_path("Zico", 3) == "Zico/Zico_0003.jpg"
    assert identity_of("Zico/Zico_0003.jpg") == "Zico"
    assert identity_of("/x/lfw-deepfunneled/Ana_Maria_Lopez/Ana_Maria_Lopez_0012.jpg") == "Ana_Maria_Lopez"
    with pytest.raises(ValueError, match="not an LFW image path"):
        identity_of("Zico/Zico.jpg")
    with pytest.raises(ValueError, match="unknown LFW pairs view"):
        load_pairs("view3")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "line", "msg"),
    [
        ("2 1\nA 1 2\nB 1 C 1\nD 1 2\n", 4, "ends early"),
        ("1 1\nA 1\nB 1 C 1\n", 2, "same pair"),
        ("1 1\nA 1 2\nB 1 C\n", 3, "different pair"),
        ("1 1\nA 1 x\nB 1 C 1\n", 2, "integer"),
        ("1 1\nA 1 0\nB 1 C 1\n", 2, ">= 1"),
        ("1 1\nA 1 2\nB 1 C 1\nE 1 2\n", 4, "extra line"),
        ("1\nA 1 2\nB 1 C 1\n", 1, "header"),
    ],
)
def test_malformed_pairs_name_file_and_line(tmp_path: Path, text: str, line: int, msg: str) -> None:
    f = tmp_path / "pairs.txt"
    f.write_text(text)
    with pytest.raises(LFWFormatError, match=msg) as e:
        parse_pairs_file(f, view2=True)
    assert f"{f}:{line}:" in str(e.value)


def test_malformed_people_name_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "people.txt"
    f.write_text("2\n1\nA 1\n1\nB two\n")
    with pytest.raises(LFWFormatError, match=r"people.txt:5: image count must be an integer"):
        parse_people_file(f, view2=True)
    f.write_text("2\nA 1\nB 1\n")
    assert parse_people_file(f, view2=False) == [[("A", 1), ("B", 1)]]
