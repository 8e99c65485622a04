"""C header emitters (jinja2 templates in codegen/templates/):

- :func:`render_theta_header` → ``<user>_theta.h``: every number of one user's int8 f as const arrays per
  layer (int8 weights, int32 biases, Q31 multipliers, shifts, zero points, clamps), arch hash, threshold,
  and the θ blob itself (``pv_theta_blob``) for ``pv_blob_parse`` — the compiled-in way to give a board θ.
- :func:`render_model_header` → ``<user>_model.h``: the .tflite as a 16-byte aligned C array for TFLM.

Both are C99 and stb-style: declarations always, definitions only where ``PV_THETA_IMPLEMENTATION`` /
``PV_MODEL_IMPLEMENTATION`` is defined (one translation unit), so ``-Wall -Wextra -Werror`` stays clean.
"""

from __future__ import annotations

import re

import jinja2
import numpy as np

from codegen.tflite_writer import TFLM_16X8_NOTE
from pvcore.blob import KIND_CODES, format_version
from pvcore.paths import REPO_ROOT
from pvcore.qtheta import QuantizedF, QuantLayer, act_limits
from pvcore.spec import F_SPEC, ArchSpec, AvgPool, Conv, L2Norm

TEMPLATES = REPO_ROOT / "codegen" / "templates"
PRODUCER = "codegen.c_header"


def jinja_env(*dirs) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(d) for d in dirs] or [str(TEMPLATES)]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def c_float(x: float) -> str:
    """A float32 value as a C float literal body (without the f suffix) that reads back exactly."""
    s = repr(float(np.float32(x)))
    if s in ("inf", "-inf", "nan"):
        raise ValueError(f"non-finite value {s} cannot go into a C header")
    return s if ("." in s or "e" in s) else s + ".0"


def c_ident(user_id: str) -> str:
    """A C identifier fragment for a user id (letters, digits, underscores)."""
    s = re.sub(r"[^A-Za-z0-9_]", "_", user_id)
    return s if not s[0].isdigit() else "u" + s


def c_array(values: np.ndarray, per_line: int = 16, fmt: str = "{}") -> str:
    flat = [fmt.format(int(v)) for v in np.asarray(values).reshape(-1)]
    lines = [", ".join(flat[i : i + per_line]) for i in range(0, len(flat), per_line)]
    return ",\n".join("    " + ln for ln in lines)


def _layer_desc(layer, q: QuantLayer) -> str:
    if isinstance(layer, Conv):
        return (f"CONV_2D {layer.in_ch}->{layer.out_ch} k{layer.kernel} s{layer.stride} g{layer.groups} "
                f"{layer.padding}{' +ReLU' if layer.relu else ''}")
    if isinstance(layer, AvgPool):
        return f"global mean {layer.kernel}x{layer.kernel} ({'exact int16 sums' if q.exact_sum else 'requantized'})"
    if isinstance(layer, L2Norm):
        return "L2_NORMALIZATION over the channels (int8 out, scale 1/128)"
    return f"FULLY_CONNECTED {layer.in_features}->{layer.out_features}{' +ReLU' if layer.relu else ''}"


def render_theta_header(qf: QuantizedF, user_id: str, threshold: float, blob: bytes,
                        spec: ArchSpec = F_SPEC) -> str:
    qf.check(spec)
    layers = []
    for q, layer in zip(qf.layers, spec.layers):
        d = dict(name=layer.name, desc=_layer_desc(layer, q), kind_code=KIND_CODES[q.kind], relu=int(q.relu),
                 per_channel=int(q.per_channel), exact_sum=int(q.exact_sum), in_zp=q.in_zp, out_zp=q.out_zp,
                 act_min=q.act_min, act_max=q.act_max, in_scale=c_float(q.in_scale), out_scale=c_float(q.out_scale),
                 n_weights=0, n_out=0, n_quant=0)
        assert q.multiplier is not None and q.shift is not None
        d.update(n_quant=int(q.multiplier.size), multiplier=c_array(q.multiplier, 6), shift=c_array(q.shift, 16))
        if q.weights is not None:  # the pool has none: its weights are 1 and its bias 0
            assert q.bias is not None
            d.update(n_weights=int(q.weights.size), n_out=int(q.bias.size), weights=c_array(q.weights, 24),
                     bias=c_array(q.bias, 8))
        layers.append(d)
    fname = f"{user_id}_theta.h"
    return jinja_env().get_template("theta.h.j2").render(
        fname=fname, guard=f"PV_THETA_{c_ident(user_id).upper()}_H", user_id=user_id, arch=spec.name,
        arch_hash=qf.arch_hash, arch_hash_bytes=", ".join(f"0x{b:02x}" for b in bytes.fromhex(qf.arch_hash)),
        threshold=c_float(threshold), threshold_q=qf.threshold_q(threshold), input_scale=c_float(qf.input_scale),
        input_zp=qf.input_zp, logit_scale=c_float(qf.logit_scale), logit_zp=qf.logit_zp, layers=layers,
        blob_len=len(blob), blob=c_array(np.frombuffer(blob, np.uint8), 16, "0x{:02x}"),
        blob_version=format_version(qf), producer=PRODUCER,
        kind="16x8 (int16 activations, int8 weights)" if qf.activations == "int16" else "int8",
        act_type=qf.activations, never=act_limits(qf.activations)[1] + 1,
    )


def render_model_header(model: bytes, qf: QuantizedF, user_id: str, threshold: float, arena_bytes: int,
                        spec: ArchSpec = F_SPEC) -> str:
    """The .tflite of ``qf`` as a C array with its facts: arch hash, user, threshold, arena, and the activation
    type, the logit's scale and zero point and the integer threshold (for a TFLM app's own decision)."""
    int16 = qf.activations == "int16"
    return jinja_env().get_template("model.h.j2").render(
        kind="16x8 (int16 activations, int8 weights)" if int16 else "int8", act_type="int16" if int16 else "int8",
        int16=int(int16), int16_note=TFLM_16X8_NOTE, logit_scale=c_float(qf.logit_scale), logit_zp=qf.logit_zp,
        threshold_q=qf.threshold_q(threshold),
        fname=f"{user_id}_model.h", guard=f"PV_MODEL_{c_ident(user_id).upper()}_H", user_id=user_id,
        arch=spec.name, arch_hash=qf.arch_hash, threshold=c_float(threshold), size=len(model), arena=arena_bytes,
        data=c_array(np.frombuffer(model, np.uint8), 16, "0x{:02x}"),
    )
