"""Enrollment and verification with a real (tiny, briefly trained) hypermodel, real faces from package
sample images, the real dlib pipeline and backbone; errors for bad input."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pvcore.cli import EXIT_CHECK_FAILED, EXIT_ERROR, EXIT_OK
from pvcore.spec import F_SPEC
from pvcore.user_store import UserStore, UserStoreError
from training import enroll as enroll_cli
from training import verify as verify_cli
from training.config import TrainConfig
from training.data.train_set import random_split
from training.export_model import export
from training.face.errors import NoFaceError
from training.hypermodel import HyperModel, HyperModelError
from training.train import train


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(dataset="random", backbone="dlib-resnet", detector="dlib", b0=4, n_per_id=2,
                      batch_doublings=0, total_steps=2, warmup_steps=1, eval_every=2, checkpoint_every=2,
                      pair_subsample_k=4, hgen_hidden=32, hgen_rank=8, kcs_clusters=2, kcs_start_step=1,
                      out_dir=str(out), random_identities=8, random_images_per_id=3).validate()
    train(cfg, random_split(8, 3, seed=0, n_eval_pairs=20), progress=False)
    return out / "model_final.pt"


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> dict[str, Path]:
    import matplotlib.cbook
    from skimage import data

    d = tmp_path_factory.mktemp("img")
    astro = d / "astronaut.png"
    cv2.imwrite(str(astro), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        grace = d / "grace.jpg"
        grace.write_bytes(f.read())
    blank = d / "blank.png"
    cv2.imwrite(str(blank), np.full((200, 200, 3), 127, np.uint8))
    bad = d / "corrupt.jpg"
    bad.write_bytes(b"\xff\xd8 not a jpeg")
    return {"astro": astro, "grace": grace, "blank": blank, "corrupt": bad}


def test_hypermodel_loads_and_threshold_travels(model_file):
    m = HyperModel.load(model_file)
    assert m.backbone == "dlib-resnet" and m.detector == "dlib" and len(m.model_id) == 16
    th = m.theta(np.random.default_rng(0).normal(size=(2, 128)).astype(np.float32))
    assert th.shape == (2, F_SPEC.theta_size) and np.isfinite(th).all()
    assert isinstance(m.threshold, float)


def test_export_half_precision_gives_nearly_the_same_theta(model_file, tmp_path):
    dst = tmp_path / "h16.pt"
    export(model_file, dst)
    a, b = HyperModel.load(model_file), HyperModel.load(dst)
    e = np.random.default_rng(1).normal(size=(4, 128)).astype(np.float32)
    ta, tb = a.theta(e), b.theta(e)
    assert np.abs(ta - tb).max() <= 2e-2 * np.abs(ta).max()
    assert a.model_id != b.model_id and "cohort_stats" not in b.meta


def test_export_with_cohort_stats_needs_the_shared_folder(model_file, tmp_path, monkeypatch, capsys):
    from training.export_model import main

    monkeypatch.setenv("FACEVERIF_SHARED", str(tmp_path / "no-shared"))
    with pytest.raises(SystemExit) as e:
        main([str(model_file), str(tmp_path / "y.pt"), "--cohort-stats"])
    assert e.value.code != 0 and not (tmp_path / "y.pt").exists()  # nothing half-written
    err = capsys.readouterr().err
    assert "FACEVERIF_SHARED" in err and "Traceback" not in err


def test_enroll_then_verify(model_file, faces, tmp_path, capsys):
    users = tmp_path / "users"
    rc = enroll_cli.main(["--user", "astro", "--image", str(faces["astro"]), "--model", str(model_file),
                          "--users", str(users), "--json"])
    assert rc == 0
    meta = json.loads(capsys.readouterr().out)
    assert meta["hypermodel_id"] == HyperModel.load(model_file).model_id and meta["backbone"] == "dlib-resnet"
    assert set(meta["timings_ms"]) == {"detect_align", "backbone", "h_gen"}
    theta, m = UserStore(users).load("astro")
    assert theta.shape == (F_SPEC.theta_size,) and m.arch_hash == meta["arch_hash"]
    crop = UserStore(users).load_crop("astro")
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    # refusal to overwrite, then --force
    with pytest.raises(SystemExit) as e:
        enroll_cli.main(["--user", "astro", "--image", str(faces["grace"]), "--model", str(model_file),
                         "--users", str(users)])
    assert e.value.code == EXIT_ERROR and "--force" in capsys.readouterr().err
    assert np.array_equal(UserStore(users).load("astro")[0], theta)  # old entry intact
    rc = verify_cli.main(["--user", "astro", "--image", str(faces["astro"]), "--users", str(users), "--json"])
    res = json.loads(capsys.readouterr().out)
    assert rc in (EXIT_OK, EXIT_CHECK_FAILED) and res["match"] == (rc == EXIT_OK)
    assert res["match"] == (res["logit"] >= res["threshold"])


@pytest.mark.parametrize("which,msg", [("blank", "no face"), ("corrupt", "not a readable image"),
                                       ("missing", "not found")])
def test_enroll_bad_images(model_file, faces, tmp_path, capsys, which, msg):
    path = faces.get(which, tmp_path / "nope.jpg")
    with pytest.raises(SystemExit) as e:
        enroll_cli.main(["--user", "u1", "--image", str(path), "--model", str(model_file),
                         "--users", str(tmp_path / "users")])
    assert e.value.code == EXIT_ERROR
    assert msg in capsys.readouterr().err.lower()
    assert not UserStore(tmp_path / "users").exists("u1")


def test_enroll_unknown_model_and_bad_user(faces, tmp_path):
    with pytest.raises(HyperModelError, match="not found"):
        enroll_cli.enroll_image("u2", faces["astro"], tmp_path / "missing.pt", UserStore(tmp_path / "u"))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(HyperModelError, match="not a hypermodel"):
        enroll_cli.enroll_image("u2", faces["astro"], junk, UserStore(tmp_path / "u"))
    with pytest.raises(UserStoreError):
        enroll_cli.enroll_image("../evil", faces["astro"], junk, UserStore(tmp_path / "u"))


def test_no_face_error_from_api(model_file, tmp_path):
    with pytest.raises(NoFaceError):
        enroll_cli.enroll_image("u3", np.full((160, 160, 3), 90, np.uint8), model_file, UserStore(tmp_path / "u"))
