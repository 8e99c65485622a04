"""f(x; θ) as a pure function of a flat θ vector, derived from the spec.

``f_apply(x, theta)`` runs ONE verifier; batching over many θ (the nB×nB training step) is done with
``torch.func.vmap`` by the caller. ``effective_weights`` gives the standardized weights that f really
uses — codegen quantizes exactly these.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from pvcore.spec import F_SPEC, INPUT_SCALE, ArchSpec, AvgPool, Conv, Dense, L2Norm, Layer, same_pads

WS_EPS = 1e-5
L2NORM_EPS = 1e-6  # TFLite's float L2_NORMALIZATION: x / max(‖x‖, 1e-6)
INPUT_ZERO = 128.0


def to_input(images_u8: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, H, W, 3) uint8 RGB → (N, 3, H, W) float32 in [-1, 1)."""
    t = torch.as_tensor(np.asarray(images_u8)) if not isinstance(images_u8, torch.Tensor) else images_u8
    return (t.permute(0, 3, 1, 2).float() - INPUT_ZERO) * INPUT_SCALE


def standardize_rows(w: torch.Tensor, gain: float) -> torch.Tensor:
    """Weight standardization of filters laid out as rows (..., out, fan_in): each centred, with L2 norm ``gain``."""
    w = w - w.mean(dim=-1, keepdim=True)
    return w * (gain / (w.norm(dim=-1, keepdim=True) + WS_EPS))


def standardize(w: torch.Tensor, gain: float) -> torch.Tensor:
    """Weight standardization: every output channel's filter centred, with L2 norm ``gain``."""
    return standardize_rows(w.reshape(w.shape[0], -1), gain).reshape(w.shape)


def filters(w: torch.Tensor, layer: Conv | Dense) -> torch.Tensor:
    """The filters a layer applies, before the generated gains, from raw weights (..., out, fan_in) — any
    leading batch dimensions: standardized (:func:`standardize`), or for a ``standardize=False`` conv an
    average over the window plus ``gain`` times the raw weights, (1 + gain·w) / fan_in."""
    if not getattr(layer, "standardize", True):
        return (1.0 + layer.gain * w) / w.shape[-1]
    return standardize_rows(w, layer.gain)


def unflatten(theta: torch.Tensor, spec: ArchSpec = F_SPEC) -> dict[str, torch.Tensor]:
    """Flat θ → {"<layer>.weight": tensor, "<layer>.bias": tensor} (views, raw — not standardized)."""
    if theta.shape[-1] != spec.theta_size:
        raise ValueError(f"θ has {theta.shape[-1]} values; {spec.name} needs {spec.theta_size}")
    return {f"{s.layer}.{s.tensor}": theta[..., s.offset:s.offset + s.size].reshape(*theta.shape[:-1], *s.shape)
            for s in spec.layout}


def flatten(params: dict[str, torch.Tensor], spec: ArchSpec = F_SPEC) -> torch.Tensor:
    """Inverse of :func:`unflatten`."""
    return torch.cat([params[f"{s.layer}.{s.tensor}"].reshape(-1) for s in spec.layout])


def effective_weights(theta: torch.Tensor, spec: ArchSpec = F_SPEC) -> dict[str, torch.Tensor]:
    """The weights f actually applies: :func:`filters` times (1 + generated gain), raw biases."""
    p = unflatten(theta, spec)
    out = {}
    for layer in spec.layers:
        if isinstance(layer, Conv | Dense):
            raw = p[f"{layer.name}.weight"]
            w = filters(raw.reshape(raw.shape[0], -1), layer).reshape(raw.shape)
            g = 1.0 + p[f"{layer.name}.gain"]
            out[f"{layer.name}.weight"] = w * g.reshape(-1, *([1] * (w.ndim - 1)))
            out[f"{layer.name}.bias"] = p[f"{layer.name}.bias"]
    return out


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """Rows (..., C) divided by their L2 norm: the spec's L2Norm in float (TFLite's epsilon)."""
    return F.normalize(x, dim=-1, eps=L2NORM_EPS)


def pad_same(x: torch.Tensor, layer: Conv) -> torch.Tensor:
    """x (N, C, H, W) padded as the conv's TF-'same' rule pads it (unchanged for "valid" or no padding)."""
    if layer.padding != "same":
        return x
    ph = same_pads(x.shape[-2], layer.kernel, layer.stride)
    pw = same_pads(x.shape[-1], layer.kernel, layer.stride)
    return F.pad(x, (pw[0], pw[1], ph[0], ph[1])) if any(ph + pw) else x


def layer_outputs(x: torch.Tensor, params: dict[str, torch.Tensor], spec: ArchSpec = F_SPEC,
                  after: Callable[[Layer, torch.Tensor], torch.Tensor] | None = None,
                  ) -> Iterator[tuple[Layer, torch.Tensor, torch.Tensor]]:
    """Walk f layer by layer: yields (layer, pre-activation output, output after its ReLU).

    The ONE float forward of f (TF-'same' padding, conv / global pool / L2 normalization / dense, ReLU):
    :func:`apply_effective`, codegen's calibration (``codegen.quantize.float_activations``) and the LSUV
    gain calibration read it.
    ``after(layer, output)``, if given, replaces each layer's output before the next layer sees it (e.g.
    a fake quantization: ``codegen.int8_layers``)."""
    for layer in spec.layers:
        if isinstance(layer, Conv):
            x = pad_same(x, layer)
            x = F.conv2d(x, params[f"{layer.name}.weight"], params[f"{layer.name}.bias"],
                         stride=layer.stride, groups=layer.groups)
        elif isinstance(layer, AvgPool):
            x = F.avg_pool2d(x, layer.kernel).flatten(1)
        elif isinstance(layer, L2Norm):
            x = l2_normalize(x.flatten(1))
        else:
            x = F.linear(x, params[f"{layer.name}.weight"], params[f"{layer.name}.bias"])
        pre = x
        if getattr(layer, "relu", False):
            x = F.relu(x)
        if after is not None:
            x = after(layer, x)
        yield layer, pre, x


def apply_effective(x: torch.Tensor, params: dict[str, torch.Tensor], spec: ArchSpec = F_SPEC) -> torch.Tensor:
    """Run f with already-standardized weights. x: (N, 3, H, W) → (N,) logits."""
    *_, (_layer, _pre, out) = layer_outputs(x, params, spec)  # the last layer's output
    return out.reshape(out.shape[0])


def f_apply(x: torch.Tensor, theta: torch.Tensor, spec: ArchSpec = F_SPEC) -> torch.Tensor:
    """f(x; θ) for one flat θ: x (N, 3, H, W) float → (N,) logits."""
    return apply_effective(x, effective_weights(theta, spec), spec)


def f_logits_u8(theta: np.ndarray | torch.Tensor, images_u8: np.ndarray, views: int = 1,
                batch: int = 64) -> np.ndarray:
    """float64 (N,) logits of the float32 f(x; θ) on uint8 crops (N, 112, 112, 3); ``views`` 2: the mean
    over each crop and its mirror image — the float twin of ``codegen.golden.run_int8_views`` scored by
    ``QuantizedF.dequantize_mean2`` (the two-view firmware)."""
    from training.backbones.base import mirrored

    if views not in (1, 2):
        raise ValueError(f"views must be 1 or 2, not {views}")
    eff = effective_weights(torch.as_tensor(np.asarray(theta, np.float32)))
    sets = [np.asarray(images_u8)] + ([mirrored(images_u8)] if views == 2 else [])
    out = np.zeros(len(images_u8), np.float64)
    with torch.no_grad():
        for imgs in sets:
            out += np.concatenate([apply_effective(to_input(np.ascontiguousarray(imgs[s : s + batch])), eff).numpy()
                                   for s in range(0, len(imgs), batch)] or [np.zeros(0, np.float32)])
    return out / len(sets)


class VerifierModule(torch.nn.Module):
    """f as an ordinary nn.Module holding one θ's effective weights — for FLOP counters and ONNX export."""

    def __init__(self, theta: torch.Tensor, spec: ArchSpec = F_SPEC) -> None:
        super().__init__()
        self.spec = spec
        eff = effective_weights(theta.detach(), spec)
        # ParameterDict keys may not contain "."
        self.params = torch.nn.ParameterDict({k.replace(".", "__"): torch.nn.Parameter(v) for k, v in eff.items()})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        params = {k.replace("__", "."): v for k, v in self.params.items()}
        return apply_effective(x, params, self.spec).reshape(-1, 1)


def random_theta(seed: int = 0, spec: ArchSpec = F_SPEC) -> torch.Tensor:
    """A random θ (He-like scale; the standardization makes the scale irrelevant except for biases)."""
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(spec.theta_size, generator=g)
    for s in spec.layout:
        if s.tensor in ("bias", "gain"):
            theta[s.offset:s.offset + s.size] *= 0.1
    return theta
