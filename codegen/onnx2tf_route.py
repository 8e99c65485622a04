"""The second route to an int8 .tflite: torch → ONNX → onnx2tf (TensorFlow's converter) → .tflite.

It runs in its own venv (``.venv-onnx2tf``, made by ``.ci/setup-onnx2tf``) because onnx2tf 1.29.24 pins
TensorFlow 2.19 and a stack that conflicts with the main one. This module runs in the main venv and
drives that venv through subprocesses:

1. ``<venv>/bin/python -m codegen.onnx2tf_route export`` (torch + onnx live there): θ → f as a
   ``VerifierModule`` → ``f.onnx`` (legacy TorchScript exporter, opset 17, input NCHW float; f's L2
   normalization in the one ONNX form that ends as TFLite's L2_NORMALIZATION: :func:`_l2_normalize_for_onnx`).
2. ``<venv>/bin/onnx2tf`` with full-int8 quantization (per-channel weights, int8 input and output),
   calibrated on the same faces as our quantizer (NHWC floats in [0, 1], normalized by mean 0.5 /
   std 0.5 to f's [-1, 1] input). Offline pitfall: onnx2tf downloads a sample-image file for any
   4-D 3-channel input even with ``-cind``; a stand-in file in its working directory stops that.
3. The main venv checks the result in TFLM against the float f (:func:`compare`).

onnx2tf does its own quantization (its ranges, TF's converter), so its model needn't be bit-exact with
our golden model; what we report is its agreement with the float f and with ours.

CLI: ``python -m codegen.onnx2tf_route --user alice [--work DIR] [--limit N] [--json] [--out FILE]`` converts
a stored user's θ and prints the agreement figures (``--json``: the report as JSON; ``--out``: written there).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pvcore.atomic import atomic_write_json
from pvcore.cli import add_user_store_args, fail, setup_logging
from pvcore.paths import REPO_ROOT

log = logging.getLogger(__name__)

VENV_ENV = "ONNX2TF_VENV"
SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"


class Onnx2tfError(RuntimeError):
    pass


def venv_dir() -> Path:
    return Path(os.environ.get(VENV_ENV) or REPO_ROOT / ".venv-onnx2tf")


def available() -> bool:
    v = venv_dir()
    return (v / "bin" / "onnx2tf").is_file() and (v / "bin" / "python").is_file()


def _run(cmd: list[str], cwd: Path, what: str) -> None:
    env = dict(os.environ)
    env["PATH"] = f"{venv_dir() / 'bin'}{os.pathsep}{env.get('PATH', '')}"  # onnxsim must be on PATH
    env["PYTHONPATH"] = str(REPO_ROOT)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["CUDA_VISIBLE_DEVICES"] = ""
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    (cwd / f"{what}.log").write_text(res.stdout + res.stderr)
    if res.returncode != 0:
        raise Onnx2tfError(f"{what} failed (exit {res.returncode}); log: {cwd / f'{what}.log'}\n{res.stderr[-2000:]}")


def convert(theta: np.ndarray, calib_u8: np.ndarray, work: Path) -> Path:
    """θ → int8 .tflite by the onnx2tf route, in ``work``; returns the .tflite's path."""
    if not available():
        raise Onnx2tfError(f"no onnx2tf venv at {venv_dir()}: run .ci/setup-onnx2tf (or set {VENV_ENV})")
    work.mkdir(parents=True, exist_ok=True)
    np.save(work / "theta.npy", np.asarray(theta, np.float32))
    py = str(venv_dir() / "bin" / "python")
    _run([py, "-m", "codegen.onnx2tf_route", "export", str(work / "theta.npy"), str(work / "f.onnx")], work, "export")
    calib = np.ascontiguousarray(np.asarray(calib_u8, np.float32) / 255.0)  # NHWC in [0, 1]
    np.save(work / "calib_nhwc.npy", calib)
    np.save(work / SAMPLE_FILE, np.zeros((20, 128, 128, 3), np.float32))  # the offline pitfall
    out = work / "tf"
    _run(
        [
            str(venv_dir() / "bin" / "onnx2tf"),
            "-i", "f.onnx", "-o", str(out), "-oiqt", "-qt", "per-channel",
            "-cind", "input", "calib_nhwc.npy", "[[[[0.5,0.5,0.5]]]]", "[[[[0.5,0.5,0.5]]]]",
            "-iqd", "int8", "-oqd", "int8",
        ],
        work,
        "onnx2tf",
    )
    found = sorted(out.glob("*_full_integer_quant.tflite"))
    if not found:  # a quantization failure can exit 0 without writing the int8 file
        raise Onnx2tfError(f"onnx2tf wrote no *_full_integer_quant.tflite in {out}; log: {work / 'onnx2tf.log'}")
    return found[0]


def _export(theta_path: str, onnx_path: str) -> None:
    """Runs in the onnx2tf venv (torch + onnx): θ → f.onnx, with f's L2 normalization as
    ``Div(x, ReduceL2(x))`` (:func:`_l2_normalize_for_onnx`)."""
    from unittest import mock

    import torch

    from pvcore.spec import L2Norm
    from training.verifier import functional
    from training.verifier.functional import VerifierModule

    theta = torch.from_numpy(np.load(theta_path))
    m = VerifierModule(theta).eval()
    normalize, calls = _l2_normalize_for_onnx()
    with mock.patch.object(functional, "l2_normalize", normalize):
        torch.onnx.export(m, torch.zeros(1, 3, 112, 112), onnx_path, dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["logit"])
    n_norm = sum(isinstance(la, L2Norm) for la in m.spec.layers)
    if calls[0] != n_norm:  # f's forward no longer normalizes through functional.l2_normalize
        raise RuntimeError(f"the export traced {calls[0]} L2 normalizations, f has {n_norm}")


def _l2_normalize_for_onnx():
    """``functional.l2_normalize`` (F.normalize over the last axis), traced as the two ONNX nodes
    ``Div(x, ReduceL2(x, axes=[-1], keepdims=1))``, and a one-element list counting its calls.

    That form is what becomes TFLite's L2_NORMALIZATION (int8: output 1/128, zero point 0 — the op our own
    writer emits): onnx2tf writes ReduceL2 as sqrt(sum(square(x))), which TF's converter fuses with the
    division. F.normalize's own export (ReduceL2, Clip to ε, Expand, Div) and ONNX LpNormalization (onnx2tf:
    x / tf.norm(x), i.e. MUL, SUM, RSQRT, MUL) do not fuse; the former even leaves float ops in the
    "full integer" model. The ε (1e-6 on the norm) is dropped from the graph: TFLite's kernel has its own."""
    import torch

    from training.verifier.functional import l2_normalize

    calls = [0]

    class L2Normalize(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: ARG004 (autograd's signature)
            return l2_normalize(x)

        @staticmethod
        def symbolic(g, x):  # noqa: ANN001, ANN205 (the TorchScript exporter's graph and value)
            calls[0] += 1
            return g.op("Div", x, g.op("ReduceL2", x, axes_i=[-1], keepdims_i=1))

    return L2Normalize.apply, calls


# --------------------------------------------------------------------------------------------------
# Checking the result in TFLM
# --------------------------------------------------------------------------------------------------
@dataclass
class GraphSummary:
    ops: list[str]
    input: dict
    output: dict
    conv_groups: list[int]
    bytes: int


def summarize(model: bytes) -> GraphSummary:
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb

    names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    tnames = {v: k for k, v in vars(fb.TensorType).items() if not k.startswith("_")}
    m = fb.ModelT.InitFromPackedBuf(bytearray(model), 0)
    sg = m.subgraphs[0]
    ops, groups = [], []
    for op in sg.operators:
        oc = m.operatorCodes[op.opcodeIndex]
        code = max(oc.builtinCode, oc.deprecatedBuiltinCode)
        ops.append(names.get(code, str(code)))
        if code == fb.BuiltinOperator.CONV_2D:
            cin = sg.tensors[op.inputs[0]].shape[-1]
            groups.append(int(cin // sg.tensors[op.inputs[1]].shape[-1]))

    def t(i: int) -> dict:
        x = sg.tensors[i]
        q = x.quantization
        return {"shape": [int(s) for s in x.shape], "type": tnames[x.type],
                "scale": float(q.scale[0]) if q is not None and q.scale is not None else None,
                "zero_point": int(q.zeroPoint[0]) if q is not None and q.zeroPoint is not None else None}

    return GraphSummary(ops, t(sg.inputs[0]), t(sg.outputs[0]), groups, len(model))


def tflm_float_logits(model: bytes, images_u8: np.ndarray) -> np.ndarray:
    """Run an int8 model in TFLM on uint8 images: f's float input (u − 128)/128 quantized with the model's
    input parameters, the int8 output dequantized with its output parameters."""
    from tflite_micro import runtime

    s = summarize(model)
    it = runtime.Interpreter.from_bytes(bytes(model), arena_size=1 << 21)
    in_s, in_zp = s.input["scale"], s.input["zero_point"]
    out_s, out_zp = s.output["scale"], s.output["zero_point"]
    res = []
    for img in np.asarray(images_u8):
        x = (img.astype(np.float32) - 128.0) / 128.0
        q = np.clip(np.round(x / in_s) + in_zp, -128, 127).astype(np.int8)
        it.set_input(q.reshape(s.input["shape"]), 0)
        it.invoke()
        res.append((int(np.array(it.get_output(0)).reshape(-1)[0]) - out_zp) * out_s)
    return np.array(res, np.float64)


def compare(model: bytes, theta: np.ndarray, images_u8: np.ndarray, threshold: float,
            golden_logits: np.ndarray | None = None) -> dict:
    """Agreement of the onnx2tf int8 model (in TFLM) with the float f at ``threshold`` (and with our int8
    model's dequantized logits, if given)."""
    import torch

    from training.verifier.functional import f_apply, to_input

    theirs = tflm_float_logits(model, images_u8)
    with torch.no_grad():
        fl = f_apply(to_input(np.ascontiguousarray(images_u8)), torch.as_tensor(theta)).double().numpy()
    d = np.abs(theirs - fl)
    out = {
        "n_images": int(len(images_u8)),
        "threshold": float(threshold),
        "agreement_vs_float": float(((theirs >= threshold) == (fl >= threshold)).mean()),
        "mean_abs_dlogit_vs_float": float(d.mean()),
        "max_abs_dlogit_vs_float": float(d.max()),
        "float_logit_std": float(fl.std()),
        "output_scale": summarize(model).output["scale"],
    }
    if golden_logits is not None:
        g = np.asarray(golden_logits, np.float64)
        out["agreement_vs_golden"] = float(((theirs >= threshold) == (g >= threshold)).mean())
        out["mean_abs_dlogit_vs_golden"] = float(np.abs(theirs - g).mean())
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["export"]:  # internal: runs in the onnx2tf venv
        _export(argv[1], argv[2])
        return 0
    ap = argparse.ArgumentParser(prog="python -m codegen.onnx2tf_route",
                                 description="Convert a stored user's θ by torch → ONNX → onnx2tf and check "
                                             "the int8 .tflite in TFLM against the float f.")
    ap.add_argument("--user", required=True)
    add_user_store_args(ap)
    ap.add_argument("--work", type=Path, help="work folder: ONNX, SavedModel, .tflite (default: runs/onnx2tf/<user>)")
    ap.add_argument("--dataset", default="lfw", help="faces to compare on: lfw or an image folder")
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--json", action="store_true", help="print the report as JSON (instead of a summary)")
    ap.add_argument("--out", type=Path, help="write the JSON report here")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    setup_logging(args.verbose)
    from codegen.faces import load_crops
    from codegen.golden import run_int8
    from codegen.quantize import calibration_images, quantize
    from pvcore.user_store import UserStore, UserStoreError

    try:
        theta, meta = UserStore(args.users).load(args.user)
    except UserStoreError as e:
        fail(str(e))
    work = args.work or REPO_ROOT / "runs" / "onnx2tf" / args.user
    t0 = time.perf_counter()
    try:
        path = convert(theta, calibration_images(), work)
    except Onnx2tfError as e:
        fail(str(e))
    t_conv = time.perf_counter() - t0
    imgs, _ = load_crops(args.dataset, args.limit)
    qf = quantize(theta)
    golden = qf.dequantize_logit(run_int8(qf, imgs))
    model = path.read_bytes()
    rep = {"tflite": str(path), "convert_s": round(t_conv, 1), "graph": asdict(summarize(model)),
           **compare(model, theta, imgs, meta.threshold, golden)}
    if args.out:
        atomic_write_json(args.out, rep)
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        print(f"{path} ({rep['convert_s']} s): on {rep['n_images']} {args.dataset} images at threshold "
              f"{rep['threshold']:.4f}, decisions agree with float f {100 * rep['agreement_vs_float']:.2f} % "
              f"(|Δlogit| mean {rep['mean_abs_dlogit_vs_float']:.4f} max {rep['max_abs_dlogit_vs_float']:.4f}), "
              f"with our golden model {100 * rep['agreement_vs_golden']:.2f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
