"""TrainConfig: defaults < TOML < --set, typed parsing, refusals with the way out."""

import pytest

from training.config import TrainConfig, load_config


def test_precedence_and_types(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('lr = 0.01\nb0 = 6\n[ablation]\nno_kcs = true\nbackbone = "dlib-resnet"\n')
    c = load_config(p, ["lr=3e-4", "pair_subsample_mode=random", "augment=false", "total_steps=1e3"])
    assert c.lr == 3e-4 and c.b0 == 6 and c.no_kcs is True and c.backbone == "dlib-resnet"
    assert c.pair_subsample_mode == "random" and c.augment is False and c.total_steps == 1000
    assert TrainConfig.from_dict(c.to_dict()) == c
    assert load_config().lr == TrainConfig().lr == 1e-3


@pytest.mark.parametrize("override, message", [
    ("nope=1", "unknown config key"),
    ("lr", "key=value"),
    ("b0=two", "expected int"),
    ("augment=maybe", "true/false"),
    ("pair_subsample_mode=easy", "choose one of"),
    ("fold=10", "folds 0–9"),
    ("b0=2", "b0 > beta"),
])
def test_refusals(override, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, [override])


def test_missing_and_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("lr = = 1")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(bad)


def test_shipped_example_config_loads():
    from pvcore.paths import REPO_ROOT

    c = load_config(REPO_ROOT / "training" / "configs" / "lfw_fold0.toml")
    assert c.dataset == "lfw" and c.fold == 0 and c.b0 * 2 ** c.batch_doublings == 32
