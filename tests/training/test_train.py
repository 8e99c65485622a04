"""The trainer on synthetic data: it learns, resume is bit-for-bit, 2-process gloo DDP stays in sync."""

import json
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from training.config import TrainConfig
from training.data.train_set import AugmentConfig, augment, random_split
from training.train import Trainer, build_sampler, state_bytes, train


@pytest.fixture(autouse=True)
def _one_thread():
    # one intra-op thread: on a machine shared with other jobs, OpenMP threads that lose their core stall
    # every parallel region (minutes instead of seconds); results do not depend on it.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _cfg(tmp_path, **kw) -> TrainConfig:
    base = dict(dataset="random", b0=4, n_per_id=2, batch_doublings=1, batch_warmup_steps=2, kcs_clusters=3,
                kcs_start_step=2, warmup_steps=2, total_steps=4, eval_every=2, checkpoint_every=2, log_every=1,
                pair_subsample_k=4, hgen_hidden=32, hgen_rank=8, alpha_norm=1e-4, alpha_norm_ramp_steps=2,
                out_dir=str(tmp_path / "run"), random_identities=12, random_images_per_id=3, lr=0.01,
                grad_clip=5.0)
    base.update(kw)
    return TrainConfig(**base).validate()


@pytest.fixture(scope="module")
def data():
    return random_split(12, 3, seed=0, n_eval_pairs=20)


def test_run_writes_everything(tmp_path, data):
    cfg = _cfg(tmp_path)
    res = train(cfg, data, progress=False)
    out = tmp_path / "run"
    assert res["step"] == 4 and np.isfinite(res["last"]["loss"])
    for name in ("checkpoints/last.pt", "model_final.pt", "metrics.csv", "eval.jsonl", "learning_curve.png",
                 "config.json"):
        assert (out / name).is_file(), name
    evals = [json.loads(ln) for ln in (out / "eval.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [2, 4] and 0 <= evals[-1]["auc"] <= 1
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == 5 and rows[0].startswith("step,loss,bce,lnorm")
    ck = torch.load(out / "checkpoints/last.pt", weights_only=False)
    assert ck["next_step"] == 4 and ck["sampler"]["kind"] == "KCSSampler" and len(ck["arch_hash"]) == 16
    with pytest.raises(FileExistsError, match="--resume"):
        train(cfg, data, progress=False)


def test_resume_is_bit_for_bit(tmp_path, data):
    full = Trainer(_cfg(tmp_path / "a", total_steps=5, checkpoint_every=3), *data, progress=False)
    full.run()
    # the same run stopped after 3 steps (its checkpoint), then resumed by a new trainer
    part = Trainer(_cfg(tmp_path / "b", total_steps=3, checkpoint_every=3), *data, progress=False)
    part.run()
    resumed = Trainer(_cfg(tmp_path / "b", total_steps=5, checkpoint_every=3), *data, progress=False)
    resumed.run(resume=True)
    assert resumed.next_step == 5
    assert state_bytes(resumed.model) == state_bytes(full.model)
    for a, b in zip(resumed.opt.state_dict()["state"].values(), full.opt.state_dict()["state"].values()):
        assert torch.equal(a["momentum_buffer"], b["momentum_buffer"])
    # the interrupted run's CSV has each step once
    steps = [ln.split(",")[0] for ln in (tmp_path / "b" / "run" / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == ["0", "1", "2", "3", "4"]


def test_training_reduces_the_bce(tmp_path):
    # every batch is the whole synthetic set (B = all 6 identities, n = both images), no augmentation:
    # a check that gradients flow through h_gen and f, not a claim about generalisation
    cfg = _cfg(tmp_path, total_steps=20, eval_every=0, checkpoint_every=100, lr=0.01, augment=False, b0=6,
               n_per_id=2, pair_subsample_k=0, batch_doublings=0, no_kcs=True, no_lnorm=True, log_every=1,
               optimizer="adamw", warmup_steps=1)
    Trainer(cfg, *random_split(6, 2, seed=1, n_eval_pairs=10), progress=False).run()
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[1:]
    bce = [float(r.split(",")[2]) for r in rows]
    assert np.mean(bce[-3:]) < 0.8 * bce[0]


def test_direct_f_ablation_runs(tmp_path, data):
    res = train(_cfg(tmp_path, direct_f=True, total_steps=2, eval_every=2), data, progress=False)
    assert np.isfinite(res["last"]["loss"]) and res["eval"] is not None


def test_augmentation_is_seeded_and_switchable():
    crops = torch.randint(0, 256, (3, 112, 112, 3), dtype=torch.uint8)
    cfg = AugmentConfig()
    a = augment(crops, cfg, torch.Generator().manual_seed(1))
    b = augment(crops, cfg, torch.Generator().manual_seed(1))
    c = augment(crops, cfg, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c) and a.shape == (3, 3, 112, 112)
    assert a.min() >= -1 and a.max() <= 127 / 128
    off = AugmentConfig(flip=False, translate_px=0, scale=0, brightness=0, contrast=0)
    from training.verifier.functional import to_input
    assert torch.equal(augment(crops, off, torch.Generator().manual_seed(1)), to_input(crops))


def test_gray_views_replace_a_share_of_the_batch_and_leave_the_rest_as_before():
    crops = torch.randint(0, 256, (400, 8, 8, 3), dtype=torch.uint8)
    plain = augment(crops, AugmentConfig(), torch.Generator().manual_seed(3))
    mixed = augment(crops, AugmentConfig(gray=0.2), torch.Generator().manual_seed(3))
    is_gray = (mixed[:, 0] == mixed[:, 1]).all(dim=(1, 2)) & (mixed[:, 1] == mixed[:, 2]).all(dim=(1, 2))
    assert 0.12 < is_gray.float().mean() < 0.28  # about 1 in 5
    assert torch.equal(mixed[~is_gray], plain[~is_gray])  # the colour views: the same draws as without gray
    luma = (plain[is_gray] * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1)
    torch.testing.assert_close(mixed[is_gray][:, 0], luma)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, cfg_dict: dict, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    import torch.distributed as dist

    from training.train import Trainer as T

    cfg = TrainConfig.from_dict(cfg_dict)
    t = T(cfg, *random_split(12, 3, seed=0, n_eval_pairs=20), progress=False)
    t.run()
    with open(f"{out}/rank{rank}.bin", "wb") as f:
        f.write(state_bytes(t.model))
    dist.destroy_process_group()


@pytest.mark.slow  # ≈10 s: two fresh interpreters importing torch
def test_two_process_gloo_ddp_keeps_ranks_identical(tmp_path):
    cfg = _cfg(tmp_path, total_steps=3, eval_every=0, checkpoint_every=100)
    mp.spawn(_ddp_worker, args=(2, _free_port(), cfg.to_dict(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (tmp_path / "rank0.bin").read_bytes(), (tmp_path / "rank1.bin").read_bytes()
    assert r0 == r1
    # and it trained: rank 0 alone wrote the files, and the parameters moved from their initialisation
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    fresh = Trainer(_cfg(tmp_path / "fresh", total_steps=3), *random_split(12, 3, seed=0, n_eval_pairs=20),
                    progress=False)
    assert state_bytes(fresh.model) != r0


def test_partial_personalization_with_feature_distillation(tmp_path, data):
    cfg = _cfg(tmp_path, personal_from="b4_mix", feature_distill=1.0, total_steps=3, checkpoint_every=1)
    res = train(cfg, data, progress=False)
    assert res["step"] == 3 and np.isfinite(res["last"]["loss"]) and 0.0 <= res["last"]["distill"] <= 2.0
    ck = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=False)
    assert ck["distill_proj"]["weight"].shape == (128, 96)
    final = torch.load(tmp_path / "run" / "model_final.pt", weights_only=False)
    assert "hgen.shared" in final["model"]  # the shared prefix θ travels with h
    with pytest.raises(ValueError, match="personal_from"):
        Trainer(_cfg(tmp_path / "b", feature_distill=1.0), *data, progress=False)


def test_distill_pretraining_stage_then_pairs(tmp_path, data):
    cfg = _cfg(tmp_path, personal_from="b4_mix", feature_distill=1.0, distill_pretrain_steps=2, total_steps=4)
    res = train(cfg, data, progress=False)
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[1:]
    pairs = [int(r.split(",")[8]) for r in rows]
    assert pairs[:2] == [0, 0] and all(p > 0 for p in pairs[2:]) and np.isfinite(res["last"]["loss"])


def test_two_stage_distill_then_frozen_prefix(tmp_path, data):
    """Stage 1 moves only the shared prefix and the distillation map (h_gen's MLP gets no gradient); stage 2
    with freeze_shared_in_pairs moves only h_gen — its first step folds the features' mean into gdc's bias
    (training.centering), nothing else of the prefix; the pair stage's LR schedule restarts at its first step."""
    from training.centering import center_slot, unnormalized_features
    from training.schedules import lr_at

    kw = dict(personal_from="pool", feature_distill=1.0, distill_target="centered", distill_batch=16,
              distill_lr=0.02, freeze_shared_in_pairs=True, pair_subsample_k=0, eval_every=0)
    tr = Trainer(_cfg(tmp_path, distill_pretrain_steps=2, total_steps=4, **kw), *data, progress=False)
    tr.sampler = build_sampler(tr.cfg, tr.data, 0)
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    s0 = tr.train_step(0)
    after1 = {k: v.clone() for k, v in tr.model.state_dict().items()}
    assert s0["pairs"] == 0 and s0["batch_images"] == 16 and 0.0 <= s0["distill"] <= 2.0
    assert not torch.equal(before["hgen.shared"], after1["hgen.shared"])
    assert all(torch.equal(before[k], after1[k]) for k in before if k.startswith("hgen.mlp"))
    assert s0["lr"] == pytest.approx(lr_at(0, 0.02, 2, min(2, 2 // 10)))
    tr.train_step(1)
    shared = tr.model.state_dict()["hgen.shared"].clone()
    with torch.no_grad():  # ‖θ_personal‖² of every training image under the weights step 2 starts from
        n_pre = tr.split[2]
        personal = tr.model(torch.from_numpy(tr.data.embeddings))[:, n_pre:].square().sum(dim=1)
    s2 = tr.train_step(2)  # the pair stage's step 0
    after3 = tr.model.state_dict()
    assert s2["pairs"] > 0 and s2["lr"] == pytest.approx(lr_at(0, 0.01, 2, 2))
    # L_norm covers what the pair stage trains: the frozen prefix's (constant) norm is not in it
    assert float(personal.min()) * 0.999 <= s2["lnorm"] <= float(personal.max()) * 1.001
    assert s2["lnorm"] < float(shared.square().sum())
    centred, gdc_bias = after3["hgen.shared"].clone(), center_slot()
    kept = torch.ones(len(shared), dtype=torch.bool)
    kept[gdc_bias] = False
    assert torch.equal(shared[kept], centred[kept]) and not torch.equal(shared[gdc_bias], centred[gdc_bias])
    before_mean = unnormalized_features(shared, tr.data.batch_crops(np.arange(len(tr.data.embeddings))).numpy())
    after_mean = unnormalized_features(centred, tr.data.batch_crops(np.arange(len(tr.data.embeddings))).numpy())
    assert np.abs(after_mean.mean(axis=0)).max() < 1e-4 * np.abs(before_mean.mean(axis=0)).max()  # all faces: μ = 0
    assert not torch.equal(after1["hgen.head.weight"], after3["hgen.head.weight"])
    tr.train_step(3)
    assert torch.equal(centred, tr.model.state_dict()["hgen.shared"])  # frozen


def test_unfrozen_prefix_takes_its_own_learning_rate(tmp_path, data):
    """shared_lr_factor: in the pair stage the shared prefix's group runs at lr × factor, the rest at lr; the
    distillation stage keeps one rate for all; factor 1 keeps one parameter group (checkpoints as before)."""
    from training.schedules import lr_at

    kw = dict(personal_from="pool", feature_distill=1.0, distill_target="centered", distill_batch=16,
              distill_lr=0.02, pair_subsample_k=0, eval_every=0, distill_pretrain_steps=2, total_steps=4)
    tr = Trainer(_cfg(tmp_path / "a", shared_lr_factor=10.0, **kw), *data, progress=False)
    tr.sampler = build_sampler(tr.cfg, tr.data, 0)
    shared = [g for g in tr.opt.param_groups if any(p is tr.model.hgen.shared for p in g["params"])]
    assert len(shared) == 1 and len(shared[0]["params"]) == 1 and shared[0]["lr_factor"] == 10.0
    tr.train_step(0)
    assert [g["lr"] for g in tr.opt.param_groups] == pytest.approx([lr_at(0, 0.02, 2, 0)] * 3)
    tr.train_step(1)
    before = tr.model.hgen.shared.detach().clone()
    tr.train_step(2)  # the pair stage's step 0: the prefix is not frozen, so it moves
    rates = {id(g): g["lr"] for g in tr.opt.param_groups}
    assert rates[id(shared[0])] == pytest.approx(10.0 * lr_at(0, 0.01, 2, 2))
    assert all(r == pytest.approx(lr_at(0, 0.01, 2, 2)) for k, r in rates.items() if k != id(shared[0]))
    assert not torch.equal(before, tr.model.hgen.shared.detach())
    one = Trainer(_cfg(tmp_path / "b", **kw), *data, progress=False)
    assert len(one.opt.param_groups) == 2  # θ's generator and prefix together, the distillation map
    # resume: the config's factor wins over the checkpoint's; 1 vs ≠ 1 (other groups) is refused, not mis-loaded
    Trainer(_cfg(tmp_path / "c", shared_lr_factor=10.0, checkpoint_every=3, **{**kw, "total_steps": 3}), *data,
            progress=False).run()
    five = Trainer(_cfg(tmp_path / "c", shared_lr_factor=5.0, checkpoint_every=3, **kw), *data, progress=False)
    five.run(resume=True)
    assert five.next_step == 4 and sorted(g.get("lr_factor", 1.0) for g in five.opt.param_groups) == [1.0, 1.0, 5.0]
    with pytest.raises(RuntimeError, match="parameter groups"):
        Trainer(_cfg(tmp_path / "c", checkpoint_every=3, **{**kw, "total_steps": 5}), *data, progress=False).run(
            resume=True)
    with pytest.raises(ValueError, match="shared_lr_factor > 0"):
        _cfg(tmp_path, shared_lr_factor=0.0)


def test_two_stage_run_reports_the_distilled_prefix(tmp_path, data):
    cfg = _cfg(tmp_path, personal_from="pool", feature_distill=1.0, distill_target="centered", distill_batch=16,
               freeze_shared_in_pairs=True, distill_pretrain_steps=2, total_steps=4)
    train(cfg, data, progress=False)
    evals = [json.loads(ln) for ln in (tmp_path / "run" / "eval.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [2, 4]
    assert all(0.0 <= e["student_accuracy"] <= 1.0 and 0.0 <= e["student_dot_accuracy"] <= 1.0 for e in evals)
    with pytest.raises(ValueError, match="distill_pretrain_steps < total_steps"):
        _cfg(tmp_path, distill_pretrain_steps=4, total_steps=4)


def test_init_from_a_distilled_run(tmp_path, data):
    """A run that generates more layers starts from another run's shared θ: shared layers copied, the
    now-personal layers as h_gen's θ₀ — at initialization every generated θ's prefix is the source's."""
    from pvcore.spec import F_SPEC
    from training.verifier.batched import split_spec

    src_cfg = _cfg(tmp_path / "a", personal_from="pool", feature_distill=1.0, distill_batch=16,
                   distill_pretrain_steps=2, total_steps=3, eval_every=0)
    train(src_cfg, data, progress=False)
    src = torch.load(tmp_path / "a" / "run" / "model_final.pt", weights_only=False)["model"]["hgen.shared"]
    tr = Trainer(_cfg(tmp_path / "b", personal_from="b5_dw", feature_distill=1.0, freeze_shared_in_pairs=True,
                      init_from=str(tmp_path / "a" / "run" / "model_final.pt")), *data, progress=False)
    n_b, n_a = split_spec(F_SPEC, "b5_dw")[2], split_spec(F_SPEC, "pool")[2]
    assert torch.equal(tr.model.hgen.shared.detach(), src[:n_b])
    hgen = tr.model.hgen
    with torch.no_grad():
        hgen.head.weight.zero_()  # only θ₀ left: what every person starts from
        th = tr.model(torch.from_numpy(data[0].embeddings[:3]))
    assert torch.equal(th[:, :n_a], src.expand(3, -1))
    train(_cfg(tmp_path / "c", eval_every=0, total_steps=1), data, progress=False)  # a run without a shared θ
    with pytest.raises(ValueError, match="no shared"):
        Trainer(_cfg(tmp_path / "d", init_from=str(tmp_path / "c" / "run" / "model_final.pt")), *data,
                progress=False)


def test_validation_pairs_choose_the_kept_model_and_threshold(tmp_path, data):
    """With validation pairs: every evaluation scores them too, model_best_val.pt is the best one's h
    (the first of equals), and the thresholds come from the validation pairs, not the test pairs."""
    train_set, ev = data
    val = random_split(12, 3, seed=1, n_eval_pairs=20)[1]
    cfg = _cfg(tmp_path, total_steps=6, eval_every=2)
    train(cfg, (train_set, ev, val), progress=False)
    evals = [json.loads(ln) for ln in (tmp_path / "run" / "eval.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [2, 4, 6] and all("val_accuracy" in e for e in evals)
    best = max(evals, key=lambda e: (e["val_accuracy"], -e["step"]))
    kept = torch.load(tmp_path / "run" / "model_best_val.pt", weights_only=False)
    assert kept["eval"]["step"] == best["step"] and kept["eval"]["val_accuracy"] == best["val_accuracy"]
    t = Trainer(cfg, train_set, ev, progress=False, val_pairs=val)
    t.model.load_state_dict(kept["model"])
    assert kept["threshold"] == t._device_threshold()  # computed on val: the same model gives it again
    with pytest.raises(ValueError, match="val_fold"):
        TrainConfig(val_fold=0, fold=0).validate()


def test_the_v4_hash_the_export_migrates_is_spec_v4s() -> None:
    """training.export_model --center turns a spec-v4 model file into a v5 one: the hash it accepts is v4's
    (the same θ layout, a global pool where v5 normalizes)."""
    from pvcore.spec import F_SPEC
    from tests.helpers.specs import SPEC_V4
    from training.centering import V4_ARCH_HASH

    assert SPEC_V4.arch_hash() == V4_ARCH_HASH != F_SPEC.arch_hash()
    assert SPEC_V4.theta_size == F_SPEC.theta_size and [s.shape for s in SPEC_V4.layout] == [
        s.shape for s in F_SPEC.layout]
