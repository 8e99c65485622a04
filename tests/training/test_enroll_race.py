"""Enrollment end to end never loses a user's entry: two enrollments of one new user at once (each passes the
"already enrolled?" check before its costly part) store exactly one θ, the other gets the user store's
UserExists; a photo whose header claims 100000×100000 is a message and exit 1 from the CLI. The shipped
hypermodel and real faces (package sample images)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data

from pvcore.cli import EXIT_ERROR
from pvcore.user_store import UserExists, UserStore
from tests.helpers.images import png_claiming
from tests.helpers.race import race
from training import enroll as enroll_cli
from training.enroll import enroll_image
from training.hypermodel import Enroller, HyperModel


@pytest.fixture(scope="module")
def enrollers() -> list[Enroller]:
    model = HyperModel.load()  # the shipped model: dlib detector, dlib-resnet backbone
    return [Enroller(model), Enroller(model)]  # one each: a detector is not shared between threads


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    """Two photos giving two different θ: the astronaut and her mirror image."""
    astro = skimage.data.astronaut()
    return [astro, np.ascontiguousarray(astro[:, ::-1])]


def test_two_enrollments_of_one_user_at_once_store_one(enrollers, photos, tmp_path: Path) -> None:
    store = UserStore(tmp_path / "users")
    for r in range(3):
        uid = f"twin{r}"
        res = race(2, lambda i, uid=uid: enroll_image(uid, photos[i], store=store, enroller=enrollers[i])[0])
        lost = [i for i in range(2) if isinstance(res[i], UserExists)]
        assert len(lost) == 1, res  # never two "enrolled" with one entry silently replacing the other
        assert "--force" in str(res[lost[0]])
        won = res[1 - lost[0]]
        assert store.load(uid)[1] == won and res[lost[0]] is not won  # the stored entry is the winner's, whole
    assert sorted(p.name for p in store.root.iterdir()) == ["twin0", "twin1", "twin2"]


def test_a_photo_claiming_a_huge_size_is_a_message(tmp_path: Path, capsys) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_claiming(100_000, 100_000))
    with pytest.raises(SystemExit) as e:
        enroll_cli.main(["--user", "u1", "--image", str(bomb), "--users", str(tmp_path / "users")])
    assert e.value.code == EXIT_ERROR
    err = capsys.readouterr().err
    assert "claims 10,000,000,000 pixels" in err and "Traceback" not in err
    assert not UserStore(tmp_path / "users").exists("u1")
