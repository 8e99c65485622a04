"""codegen.accuracy (int8 vs float f of a stored user) and codegen.bench (emission time, JSON)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from codegen import accuracy, bench
from codegen.emit import SLOT_HEADER_BYTES
from codegen.golden import run_int8, run_int8_views
from codegen.quantize import quantize
from pvcore.blob import blob_size
from pvcore.cli import EXIT_ERROR, EXIT_USAGE
from pvcore.signed import SIGNED_OVERHEAD
from pvcore.spec import F_SPEC, Conv, Dense
from tests.codegen.users import make_store
from tests.conftest import require_shared
from training.verifier.functional import f_apply, random_theta, to_input


def test_measure_matches_an_independent_computation(tmp_path, face_images: np.ndarray) -> None:
    store = make_store(tmp_path / "users")
    theta, meta = store.load("carol")
    crop = store.load_crop("carol")
    imgs = face_images[:64]
    rep = accuracy.measure(theta, imgs, meta.threshold, crop)
    qf = quantize(theta, enroll_u8=crop)
    dq = qf.dequantize_logit(run_int8(qf, imgs)).astype(np.float64)
    with torch.no_grad():
        fl = f_apply(to_input(imgs), torch.as_tensor(theta)).double().numpy()
    assert rep["n_images"] == 64
    assert rep["decision_agreement"] == pytest.approx(((dq >= meta.threshold) == (fl >= meta.threshold)).mean())
    assert rep["max_abs_dlogit"] == pytest.approx(np.abs(dq - fl).max(), rel=1e-6)
    assert rep["mean_abs_dlogit_lsb"] == pytest.approx(np.abs(dq - fl).mean() / qf.logit_scale, rel=1e-6)


def test_measure_two_views_is_the_devices_mean_rule(tmp_path, face_images: np.ndarray) -> None:
    """--views 2: int8 decisions by decide_mean2 on both views' golden logits, float by the mean of f on
    each image and on its mirror image (np.flip here, not the code under test's helper)."""
    store = make_store(tmp_path / "users")
    theta, meta = store.load("carol")
    crop = store.load_crop("carol")
    imgs = face_images[:48]
    rep = accuracy.measure(theta, imgs, meta.threshold, crop, views=2)
    qf = quantize(theta, enroll_u8=crop)
    qv = run_int8_views(qf, imgs, views=2)
    acc_q = qf.decide_mean2(qv[:, 0], qv[:, 1], meta.threshold)
    with torch.no_grad():
        fl = 0.5 * (f_apply(to_input(imgs), torch.as_tensor(theta)).double().numpy()
                    + f_apply(to_input(np.flip(imgs, axis=2).copy()), torch.as_tensor(theta)).double().numpy())
    dq = qf.dequantize_mean2(qv[:, 0], qv[:, 1]).astype(np.float64)
    assert rep["views"] == 2 and rep["n_images"] == 48
    assert rep["decision_agreement"] == pytest.approx((acc_q == (fl >= meta.threshold)).mean())
    assert rep["max_abs_dlogit"] == pytest.approx(np.abs(dq - fl).max(), rel=1e-6)
    with pytest.raises(ValueError, match="views"):
        accuracy.measure(theta, imgs, meta.threshold, crop, views=3)


@pytest.mark.slow
def test_accuracy_cli_on_lfw(tmp_path, capsys) -> None:
    require_shared("data", "lfw")
    store = make_store(tmp_path / "users")
    out = tmp_path / "acc.json"
    assert accuracy.main(["--users", str(store.root), "--user", "bob", "--limit", "200", "--views", "2",
                          "--out", str(out), "--json"]) == 0
    rep = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == rep  # --json prints what --out writes
    assert rep["n_images"] == 200 and rep["user"] == "bob" and rep["views"] == 2
    assert rep["n_disagree"] == round((1 - rep["decision_agreement"]) * 200)
    assert accuracy.main(["--users", str(store.root), "--user", "bob", "--limit", "200", "--views", "2"]) == 0
    text = capsys.readouterr().out  # without --json: a summary line
    assert text.startswith("bob on 200 lfw images [int8, 2 view(s)]") and f"({rep['n_disagree']} differ" in text


def test_accuracy_cli_unknown_user(tmp_path, capsys) -> None:
    store = make_store(tmp_path / "users")
    with pytest.raises(SystemExit) as e:
        accuracy.main(["--users", str(store.root), "--user", "nobody"])
    assert e.value.code == EXIT_ERROR
    assert "unknown user 'nobody'" in capsys.readouterr().err


def test_bench_writes_json(tmp_path, capsys) -> None:
    out = tmp_path / "bench.json"
    assert bench.main(["--random", "2", "--target", "host", "--format", "blob", "--out", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert [r["user"] for r in rep["rows"]] == ["random0", "random1"]
    for r in rep["rows"]:
        assert r["seconds"]["total_s"] > 0 and "quantize_s" in r["seconds"] and "project_s" in r["seconds"]
        assert r["theta_flash_bytes"] == blob_size() + SIGNED_OVERHEAD + SLOT_HEADER_BYTES and r["n_files"] > 10
    assert "random0" in capsys.readouterr().out
    assert bench.main(["--random", "1", "--target", "none", "--format", "blob", "--out", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)  # --json: stdout is the report alone
    assert printed == json.loads(out.read_text()) and printed["rows"][0]["target"] is None


def test_bench_refuses_an_empty_store(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        bench.main(["--users", str(tmp_path / "none"), "--out", str(tmp_path / "b.json")])
    assert e.value.code == EXIT_ERROR
    assert "no users" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        bench.main(["--random", "1", "--target", "esp8266"])
    assert e.value.code == EXIT_USAGE and "unknown target 'esp8266'" in capsys.readouterr().err


def test_int8_pair_scores_quantize_each_theta_with_its_own_crop(face_images: np.ndarray) -> None:
    """codegen.accuracy --model: row i is f_int8(crop[cols[i]]; quantize(θ[rows[i]], crop[rows[i]]))."""
    from codegen.accuracy import int8_pair_logits

    crops = face_images[:4]
    thetas = torch.stack([random_theta(s) for s in range(4)])
    rows, cols = np.array([2, 0, 2, 1]), np.array([1, 3, 0, 2])
    got = int8_pair_logits(thetas, rows, cols, crops, progress=False)
    for i, (r, c) in enumerate(zip(rows, cols)):
        qf = quantize(thetas[r].numpy(), enroll_u8=crops[r])
        assert got[i] == qf.dequantize_logit(run_int8(qf, crops[c:c + 1]))[0]


def test_mirror_scores_average_the_probe_and_its_mirror_image(face_images: np.ndarray) -> None:
    """codegen.accuracy --views 2: each directed logit is the mean of f on the probe and on the probe
    mirrored left-right, in int8 (one quantized θ for both views) as in float."""
    from codegen.accuracy import int8_pair_logits
    from training.backbones.base import mirrored

    crops = face_images[:3]
    m = mirrored(crops)
    assert np.array_equal(m[:, :, 0], crops[:, :, -1]) and np.array_equal(mirrored(m), crops)
    thetas = torch.stack([random_theta(s) for s in range(3)])
    rows, cols = np.array([0, 1, 2]), np.array([1, 2, 0])
    plain = int8_pair_logits(thetas, rows, cols, crops, progress=False)
    both = int8_pair_logits(thetas, rows, cols, crops, progress=False, mirror=True)
    for i, (r, c) in enumerate(zip(rows, cols)):
        qf = quantize(thetas[r].numpy(), enroll_u8=crops[r])  # calibrated on the unmirrored enrollment crop
        q1, q2 = int(run_int8(qf, crops[c:c + 1])[0]), int(run_int8(qf, m[c:c + 1])[0])
        assert plain[i] == qf.dequantize_logit(q1)
        # the device's two-view score (PV_VIEWS 2): float32 (q1 + q2 - 2 zp) * scale / 2, bit for bit
        assert both[i] == qf.dequantize_mean2(q1, q2)
        assert both[i] == pytest.approx((plain[i] + qf.dequantize_logit(q2)) / 2, abs=1e-5)
    assert not np.array_equal(both, plain)


def test_mirror_float_logits_average_both_views(face_images: np.ndarray) -> None:
    from training.backbones.base import ARCFACE112, mirrored
    from training.evaluate import PairSet, directed_logits

    crops = face_images[:3]
    pairs = PairSet("t", {ARCFACE112: crops}, np.array([0]), np.array([1]), np.array([True]), None)
    thetas = torch.stack([random_theta(s) for s in range(3)])
    rows, cols = np.array([0, 1, 2]), np.array([1, 2, 0])
    got = directed_logits(pairs, None, rows, cols, progress=False, thetas=thetas, mirror=True)
    with torch.no_grad():
        want = [(f_apply(to_input(crops[c:c + 1]), thetas[r]) + f_apply(to_input(mirrored(crops)[c:c + 1]), thetas[r]))
                .item() / 2 for r, c in zip(rows, cols)]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_int8_layers_one_step_at_a_time(face_images: np.ndarray) -> None:
    """codegen.int8_layers: no step = the float f; the head's output fake-quantized = the golden model's
    dequantized logit rounding of the float logit (within one output step); every step changes something."""
    from codegen.int8_layers import logits_with_one_step, steps

    theta = random_theta(3).numpy()
    imgs = face_images[:8]
    qf = quantize(theta, enroll_u8=imgs[0])
    with torch.no_grad():
        fl = f_apply(to_input(imgs), torch.as_tensor(theta)).double().numpy()
    np.testing.assert_allclose(logits_with_one_step(theta, qf, imgs, None), fl, rtol=1e-5, atol=1e-6)
    aq = logits_with_one_step(theta, qf, imgs, "aq:head")
    assert np.abs(aq - fl).max() <= 0.5 * qf.logit_scale + 1e-6
    weighted = sum(isinstance(la, Conv | Dense) for la in F_SPEC.layers)
    assert len(steps()) == 2 * weighted + 1  # weights and output of every weighted layer, output of the pool
    assert not np.array_equal(logits_with_one_step(theta, qf, imgs, "wq:stem"), fl)
