"""CFP people in training (``cfp_train_folds``): who joins, under which name, and which CFP pairs the
benchmark then scores — on the real CFP and LFW lists of the shared folder (fail in CI without them)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from tests.conftest import require_shared
from training.config import TrainConfig, load_config, parse_cfp_folds
from training.data import cfp, lfw
from training.data.train_set import cfp_fold_people, cfp_training_people


@pytest.fixture()
def _cfp_and_lfw_lists() -> None:
    require_shared("data", "cfp", "Protocol")
    require_shared("data", "lfw")


def test_cfp_folds_parse_and_refuse_what_is_not_a_fold() -> None:
    assert parse_cfp_folds("") == () and parse_cfp_folds(None) == ()
    assert parse_cfp_folds("3, 1,2,1") == (1, 2, 3)
    cfg = load_config(None, ["cfp_train_folds=0,1,2,3", "cfp_val_folds=4"])
    assert cfg.cfp_folds() == (0, 1, 2, 3) and cfg.cfp_folds("cfp_val_folds") == (4,)
    with pytest.raises(ValueError, match="folds 0–9"):
        parse_cfp_folds("0,10")
    with pytest.raises(ValueError, match="comma-separated"):
        load_config(None, ["cfp_train_folds=0;1"])
    with pytest.raises(ValueError, match=r"\[4\] both"):
        TrainConfig(cfp_train_folds="3,4", cfp_val_folds="4").validate()
    with pytest.raises(ValueError, match="none is left to report"):
        TrainConfig(cfp_train_folds="0,1,2,3,4,5,6,7,8", cfp_val_folds="9").validate()


@pytest.mark.usefixtures("_cfp_and_lfw_lists")
def test_ff_and_fp_folds_hold_the_same_people() -> None:
    ff = cfp_fold_people()
    fp: dict[int, set[str]] = {}
    for p in cfp.load_pairs("FP"):
        fp.setdefault(p.fold, set()).update((cfp.identity_of(p.a), cfp.identity_of(p.b)))
    assert ff == fp and sorted(ff) == list(range(10)) and all(len(s) == 50 for s in ff.values())


@pytest.mark.usefixtures("_cfp_and_lfw_lists")
def test_training_people_leave_out_the_held_out_lfw_folds_and_share_names_with_lfw_training_people() -> None:
    identity, excluded = cfp_training_people((0, 1, 2, 3), held_out_lfw_folds=(0, 1))
    people_folds = lfw.load_people_folds()
    overlap = cfp.lfw_overlap(cfp.load_names(), people_folds)
    folds = cfp_fold_people()
    wanted = folds[0] | folds[1] | folds[2] | folds[3]
    assert set(identity) | set(excluded) == wanted and not set(identity) & set(excluded)
    assert sorted(excluded) == sorted(pid for pid in wanted if overlap.get(pid) in (0, 1))
    assert (len(identity), len(excluded)) == (186, 14)  # measured on the lists: 200 people, 14 named in folds 0/1
    held_out_names = set(people_folds[0]) | set(people_folds[1])
    training_names = {n for k, f in enumerate(people_folds) if k not in (0, 1) for n in f}
    assert not set(identity.values()) & held_out_names
    merged = {pid: n for pid, n in identity.items() if not n.startswith("cfp-")}
    assert set(merged) == {pid for pid in identity if pid in overlap} and set(merged.values()) <= training_names
    assert len(set(identity.values())) == len(identity)  # one name per person
    assert identity.get("006") in (None, "Adam_Sandler")  # CFP's "Adam Sandler" is LFW's Adam_Sandler


@pytest.mark.usefixtures("_cfp_and_lfw_lists")
def test_a_model_trained_on_cfp_folds_is_scored_on_the_other_folds_only() -> None:
    from training.evaluate import cfp_report_folds, model_pairs

    cfg = {"fold": 0, "val_fold": 1, "cfp_train_folds": "0,1,2,3", "cfp_val_folds": "4"}
    model = SimpleNamespace(meta={"config": cfg}, detector="dlib", backbone="dlib-resnet", path="m.pt")
    assert cfp_report_folds(model) == ((5, 6, 7, 8, 9), (4,))
    report = model_pairs("cfp-fp", model, progress=False, limit=10)
    assert set(report.info["cfp_folds"]) == {5, 6, 7, 8, 9} and set(np.unique(report.folds)) <= {5, 6, 7, 8, 9}
    assert report.info["fold_pairs"] == 5 * 700 and len(report.same) == 10
    # the people named in the LFW folds the model saw are still left out, counted within the kept folds
    overlap = cfp.lfw_overlap(cfp.load_names(), lfw.load_people_folds())
    in_kept = set().union(*(cfp_fold_people()[k] for k in (5, 6, 7, 8, 9)))
    assert report.info["excluded_people"] == sum(1 for pid, k in overlap.items() if k != 0 and pid in in_kept)
    assert report.info["fold_pairs"] - report.info["excluded_pairs"] == 2064  # measured: FP folds 5–9 keep 2,064
    val = model_pairs("cfp-ff-val", model, progress=False, limit=10)
    assert val.info["cfp_folds"] == [4] and list(val.folds) == list(np.arange(10) % 10)
    lfw_only = SimpleNamespace(meta={"config": {"fold": 0}}, detector="dlib", backbone="dlib-resnet", path="m.pt")
    assert cfp_report_folds(lfw_only) == (tuple(range(10)), ())
    assert "cfp_folds" not in model_pairs("cfp-ff", lfw_only, progress=False, limit=4).info
    with pytest.raises(ValueError, match="no CFP validation fold"):
        model_pairs("cfp-ff-val", lfw_only, progress=False, limit=4)


def test_a_bin_file_named_like_a_cfp_set_is_read_as_the_file(tmp_path) -> None:
    from training.data.insightface_bin import write_bin
    from training.evaluate import model_pairs

    rng = np.random.default_rng(0)
    path = tmp_path / "cfp_fp.bin"  # InsightFace's own name for its CFP-FP file
    write_bin(path, rng.integers(0, 256, (8, 112, 112, 3), dtype=np.uint8), np.array([True, False] * 2), fmt="png")
    model = SimpleNamespace(meta={"config": {"fold": 0, "cfp_train_folds": "0"}}, detector="dlib",
                            backbone="mobilefacenet-y1", path="m.pt")
    pairs = model_pairs(str(path), model, progress=False)
    assert pairs.name == "cfp_fp" and len(pairs.same) == 4 and "protocol" not in pairs.info
