"""Two steps on f's float weights before they become int8: cross-layer equalization and GPTQ rounding.

Both change only which int8 numbers codegen writes; the deployed graph, the blob layout and the C kernel
stay as they are, and every int8 path still equals the golden model bit for bit. Both read only the
*package* calibration faces (``calibration_images(None)``: no user's image), so the int8 weights of a
layer depend on θ alone, never on whose enrollment crop calibrated the activations — a shared prefix
quantizes to the same base for every user of the model (``codegen.shared_prefix``).

**Cross-layer equalization** (:func:`equalize`, Nagel et al. 2019, "Data-Free Quantization"): TFLM's
activations are per tensor, and the channels of one layer's output differ in range, so the weak channels
get few of the 256 codes. For a conv ``a`` with ReLU followed by a conv ``b``, ReLU(k·z) = k·ReLU(z) for
k > 0: scaling output channel c of ``a`` (its filter and bias) by ``k_c`` and input channel c of ``b`` by
``1/k_c`` is the same f. ``k_c = (R / r_c)^alpha`` (R / r_c capped at ``EQ_MAX_RATIO``) with ``r_c`` the
channel's percentile on the calibration faces and R the largest: alpha = 1 would give every channel the full range,
but it moves the spread into ``b``'s per-output-channel weight scales, so alpha < 1 balances the two.
Only conv → conv pairs (:func:`equalization_pairs`): the pool's weights are fixed (all 1).

**GPTQ rounding** (:func:`gptq_conv`, Frantar et al. 2022, the error-compensating rounding of Optimal
Brain Quantization): round-to-nearest rounds each weight alone; GPTQ rounds a filter's weights one at a
time and moves each rounding error onto the weights not yet rounded, along the inverse of the Hessian
``H = E[x xᵀ]`` of the layer's input patches, so the filter's *output* on real inputs changes least. The
per-channel scales stay ``max|w_c| / 127``, values stay in [-127, 127]. The dense layers keep
round-to-nearest: fc1's folded row has 96 inputs and the calibration set gives only a few dozen pooled
vectors to estimate its Hessian from.

What each step buys, the alpha sweep and what was tried around them: docs/quantization.md, "What each
step bought" (``python -m codegen.accuracy --model M``, ``python -m codegen.int8_layers``).
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
import torch.nn.functional as F

from pvcore.spec import ArchSpec, Conv
from training.verifier.functional import pad_same

EQ_MAX_RATIO = 100.0  # cap on R / r_c: a channel silent on the calibration faces is not blown up without bound
GPTQ_DAMP = 0.01  # Hessian damping, × mean diagonal (GPTQ's default): H of ~40 faces is near-singular
GPTQ_MAX_ROWS = 8192  # input patches per Hessian (every k-th of the calibration faces' patches)


def channel_percentiles(act: torch.Tensor, percentile: float) -> np.ndarray:
    """Per-channel ``percentile`` of a conv output (N, C, H, W) over images and positions: (C,)."""
    c = act.shape[1]
    v = act.detach().transpose(0, 1).reshape(c, -1).double().numpy()
    return np.quantile(v, percentile / 100.0, axis=1)


def equalization_pairs(spec: ArchSpec) -> list[tuple[Conv, Conv]]:
    """Consecutive (a, b) that :func:`equalize` balances: both conv, a with ReLU (positive homogeneity)."""
    ls = spec.layers
    return [(a, b) for a, b in zip(ls[:-1], ls[1:]) if isinstance(a, Conv) and isinstance(b, Conv) and a.relu]


def equalize(params: dict[str, torch.Tensor], acts: dict[str, torch.Tensor], spec: ArchSpec,
             alpha: float, percentile: float) -> dict[str, torch.Tensor]:
    """The same f with the output channels of every :func:`equalization_pairs` conv ``a`` scaled by
    ``k = (R / r)^alpha`` and the matching input channels of ``b`` by ``1 / k``. ``acts``: the float
    outputs of ``params`` on the calibration faces (one forward suffices: scaling (a, b) leaves b's
    output, hence every later range, unchanged)."""
    out = dict(params)
    for a, b in equalization_pairs(spec):
        r = channel_percentiles(acts[a.name], percentile)
        top = float(r.max())
        if top <= 0.0:
            continue  # a dead layer on these faces: nothing to balance
        ratio = np.clip(top / np.maximum(r, top / EQ_MAX_RATIO), 1.0, EQ_MAX_RATIO)
        k = ratio**alpha
        kt = torch.from_numpy(k)
        wa, ba = out[f"{a.name}.weight"].double(), out[f"{a.name}.bias"].double()
        out[f"{a.name}.weight"] = (wa * kt.view(-1, 1, 1, 1)).float()
        out[f"{a.name}.bias"] = (ba * kt).float()
        wb = out[f"{b.name}.weight"].double()  # (O, I/groups, kh, kw)
        cin_g, og = b.in_ch // b.groups, b.out_ch // b.groups
        k_in = kt.view(b.groups, 1, cin_g).expand(b.groups, og, cin_g).reshape(b.out_ch, cin_g)
        out[f"{b.name}.weight"] = (wb / k_in[:, :, None, None]).float()
    return out


def _group_patches(x: torch.Tensor, layer: Conv, max_rows: int) -> np.ndarray:
    """The conv's input patches (groups, n, I/groups·kh·kw), in the order of its flattened OIHW filters;
    every k-th patch when there are more than ``max_rows`` (a Hessian of 36..96 inputs needs no more)."""
    u = F.unfold(pad_same(x, layer), layer.kernel, stride=layer.stride)  # (N, C·k·k, L): c, kh, kw
    n, d_all, positions = u.shape
    u = u.transpose(1, 2).reshape(n * positions, layer.groups, d_all // layer.groups)
    u = u[:: max(1, -(-len(u) // max_rows))]
    return np.ascontiguousarray(u.transpose(0, 1).numpy())


def gptq_groups(w: np.ndarray, scales: np.ndarray, h: np.ndarray, damp: float = GPTQ_DAMP) -> np.ndarray:
    """GPTQ of G groups at once: ``w`` (G, rows, d) float64 filters, the rows of group g sharing the input
    Hessian ``h[g]`` (d, d); fixed per-row ``scales`` (G, rows). Each group's columns are taken in
    decreasing order of its Hessian's diagonal ("act order"). Returns int8 (G, rows, d)."""
    g, _rows, d = w.shape
    diag = np.diagonal(h, axis1=1, axis2=2)
    h = h + (damp * np.maximum(diag.mean(axis=1), 1e-12))[:, None, None] * np.eye(d)
    perm = np.argsort(-np.diagonal(h, axis1=1, axis2=2), axis=1, kind="stable")  # (G, d)
    h = np.take_along_axis(np.take_along_axis(h, perm[:, :, None], axis=1), perm[:, None, :], axis=2)
    w = np.take_along_axis(w, perm[:, None, :], axis=2).copy()
    ht = torch.from_numpy(np.ascontiguousarray(h))
    u = torch.linalg.cholesky(torch.linalg.inv(ht)).transpose(1, 2).numpy()  # upper Cholesky factors of H⁻¹
    s = scales.astype(np.float64)
    q = np.zeros_like(w)
    for j in range(d):
        q[:, :, j] = np.clip(np.rint(w[:, :, j] / s), -127, 127)
        e = (w[:, :, j] - q[:, :, j] * s) / u[:, j, j][:, None]
        w[:, :, j + 1 :] -= e[:, :, None] * u[:, None, j, j + 1 :]
    out = np.empty_like(q)
    np.put_along_axis(out, np.broadcast_to(perm[:, None, :], q.shape), q, axis=2)
    return out.astype(np.int8)


def per_channel_scales(w: np.ndarray) -> np.ndarray:
    """Symmetric int8 scales per output channel (axis 0): max|w_c| / 127, 1/127 for an all-zero filter."""
    amax = np.abs(w.reshape(w.shape[0], -1).astype(np.float64)).max(axis=1)
    return np.where(amax > 0, amax / 127.0, 1.0 / 127.0).astype(np.float32)


def gptq_conv(w_oihw: torch.Tensor, layer: Conv, x_in: torch.Tensor, max_rows: int = GPTQ_MAX_ROWS
              ) -> tuple[np.ndarray, np.ndarray]:
    """int8 filters (OIHW) and their float32 per-channel scales for ``layer``, rounded by GPTQ on the
    Hessians of its float input ``x_in`` (N, C, H, W) — the calibration faces' activations."""
    w = w_oihw.detach().double().numpy()
    x = x_in.detach().double().contiguous()
    key = (layer, max_rows, hashlib.sha1(w.tobytes()).hexdigest(), hashlib.sha1(x.numpy().tobytes()).hexdigest())
    if key in _GPTQ_CACHE:  # every user of a shared-prefix model has the same prefix: round it once
        q, scales = _GPTQ_CACHE[key]
        return q.copy(), scales.copy()
    scales = per_channel_scales(w)
    groups, og = layer.groups, layer.out_ch // layer.groups
    p = torch.from_numpy(_group_patches(x, layer, max_rows))  # (G, n, d)
    h = (torch.bmm(p.transpose(1, 2), p) / p.shape[1]).numpy()
    q = gptq_groups(w.reshape(groups, og, -1), scales.reshape(groups, og), h).reshape(w.shape)
    if len(_GPTQ_CACHE) >= 64:
        _GPTQ_CACHE.pop(next(iter(_GPTQ_CACHE)))
    _GPTQ_CACHE[key] = (q.copy(), scales.copy())
    return q, scales


_GPTQ_CACHE: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}  # (layer, rows, sha1 w, sha1 x) → result, FIFO
