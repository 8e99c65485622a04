"""The ONE description of the personal verifier f, as data.

Everything else is derived from this spec: the functional PyTorch f(x, θ) used in training, the layout
of the flat θ vector, the parameter and MAC counts, the int8 golden model, the .tflite graph, the C
header and the C kernel's static configuration. ``arch_hash()`` fingerprints the spec; it travels in
every θ file, θ blob and firmware image, and anything whose hash differs is refused.

Design (why it looks like this):
- **Input**: the aligned 112×112 RGB crop, uint8 u ↦ x = (u − 128) / 128. In int8 that is exactly
  q = u − 128 with scale 1/128 and zero point 0: no rounding at the device's input.
- **Stem 4×4 / stride 4** (patchify): cheap, and a microcontroller can stream the input 4 rows at a time
  through it without ever holding the 37.6 KB image (the stem output, 28×28×24, is 18.8 KB).
- **Grouped 3×3 convolutions** (4 input channels per group) for space, **1×1 convolutions** (dense or
  2 groups) to mix channels between groups — grouped convs stay single CONV_2D ops in TFLite.
- **Non-parametric normalization = weight standardization** of every generated filter: each output
  channel's weights are centred and scaled to unit L2 norm (times a fixed gain) inside f. It has no
  learned parameters, makes the hypernetwork's output scale irrelevant, and bounds every activation
  (|y| ≤ gain·‖patch‖ + |b|), which is what makes int8 ranges predictable. It acts on θ, not on
  activations, so it folds into the int8 weights at code generation: the deployed graph is only
  CONV_2D (+fused ReLU), one L2_NORMALIZATION (spec v5; in the 16x8 model between two QUANTIZE ops) and
  FULLY_CONNECTED — TFLM builtins, and a small fixed kernel.
- **Generated per-channel gains** (θ holds, per layer, weight, bias and gain slots): the effective filter
  of output channel c is ``standardize(w_c) · gain_layer · (1 + g_c)``. Without them, every filter has a
  fixed norm and f cannot scale its own features: the logits of a generated f then barely vary from
  image to image (docs/training.md). With them h can sharpen or mute channels per
  person, as NF-Nets' learned gains do. L_norm pulls g towards 0 (gain 1); like the standardization,
  the gains fold into the per-channel int8 weight scales, so the deployed graph does not change.
- **Padding "same" with TensorFlow's rule** (extra pad at the end for stride 2 on even sizes), so the
  .tflite needs no PAD op and every implementation pads the same way.
- **Head** (spec v4): b5_dw at stride 2 (7×7 → 4×4, 2 channels per group), then a **learned spatial pooling**
  "gdc" (a depthwise 4×4 convolution, MobileFaceNet's global depthwise conv) → fully connected (24, linear) →
  fully connected → one logit ("this is the enrolled person"). Faces are aligned, so where a feature fires
  carries identity that a global average pool throws away; gdc starts as that average pool (w = (1 +
  0.1·θ_w)/16, not standardized: a zero-mean filter could not average) and learns the weighting. Its output
  passes a 1×1 "pool" (an identity kept so that every stage still finds f's pooled features in one place).
  Measured in docs/research/verifier_experiments_2026-12.md, section 11.
- **The pooled features normalized** (spec v5): "pool" is an L2 normalization of gdc's 96 outputs, whose
  bias holds minus the cohort's mean feature μ (``training.centering``), so the tail reads (s − μ)/‖s − μ‖:
  the length of a face's features about the mean varies with a coefficient of variation of 0.24, and a
  linear score grows with it; the normalized score (a cosine-like one, as the teacher's) lowers the false
  rejects at a fixed false-accept rate (docs/research/verifier_experiments_2026-12.md, section 14). It is
  TFLM's L2_NORMALIZATION (int8 in, int8 out at scale 1/128). fc1's gain carries the features' typical
  length (``FEATURE_LENGTH`` × its spec-v4 gain), so h's generated heads see the magnitude they were trained on.
- **fc1 without ReLU** (spec v3): with a ReLU there, training drove most of fc1's units dead for every
  generated θ (docs/training.md) — the constant output that minimizes the loss when features are weak.
  The pooled features (gdc's weighted sums of 96 post-ReLU channels × 16 positions) cannot all die.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Literal

INPUT_SCALE = 1.0 / 128.0  # the input u8 crop u is x = (u - 128) / 128 in f: int8 q = u - 128 exactly

Padding = Literal["same", "valid"]


@dataclass(frozen=True)
class Conv:
    name: str
    in_ch: int
    out_ch: int
    kernel: int
    stride: int
    groups: int
    padding: Padding
    relu: bool
    gain: float  # weight-standardization gain: filters get L2 norm `gain` (standardize=False: see below)
    # False (the learned spatial pooling "gdc" only): the filter is an average over its window plus `gain`
    # times the raw weights, w = (1 + gain·θ_w) / fan_in — a zero-mean standardized filter could not average.
    standardize: bool = True

    kind = "conv"

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:  # PyTorch OIHW
        return (self.out_ch, self.in_ch // self.groups, self.kernel, self.kernel)


@dataclass(frozen=True)
class AvgPool:
    name: str
    kernel: int  # global: equals the spatial size at that point

    kind = "avgpool"


@dataclass(frozen=True)
class L2Norm:
    """x / ‖x‖ over the channels of a 1×1 map (TFLite's L2_NORMALIZATION; no parameters)."""

    name: str

    kind = "l2norm"


@dataclass(frozen=True)
class Dense:
    name: str
    in_features: int
    out_features: int
    relu: bool
    gain: float

    kind = "dense"

    @property
    def weight_shape(self) -> tuple[int, int]:
        return (self.out_features, self.in_features)


Layer = Conv | AvgPool | L2Norm | Dense


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding (before, after) along one axis."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def out_size(size: int, kernel: int, stride: int, padding: Padding) -> int:
    return math.ceil(size / stride) if padding == "same" else (size - kernel) // stride + 1


@dataclass(frozen=True)
class ParamSlot:
    """Where one tensor lives in the flat θ vector."""

    layer: str
    tensor: Literal["weight", "bias", "gain"]
    offset: int
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class ArchSpec:
    name: str
    input_hw: tuple[int, int]
    input_ch: int
    layers: tuple[Layer, ...]
    version: int = 5  # 2: generated per-channel gains (θ layout weight, bias, gain per layer); 3: linear fc1;
    # 4: learned spatial pooling (gdc) on a 4×4 map; 5: the pooled features L2-normalized

    # -- derived -----------------------------------------------------------------------------------
    @cached_property
    def layout(self) -> tuple[ParamSlot, ...]:
        slots, off = [], 0
        for layer in self.layers:
            if isinstance(layer, Conv | Dense):
                w = layer.weight_shape
                slots.append(ParamSlot(layer.name, "weight", off, w))
                off += math.prod(w)
                b = (w[0],)
                slots.append(ParamSlot(layer.name, "bias", off, b))
                off += b[0]
                slots.append(ParamSlot(layer.name, "gain", off, b))
                off += b[0]
        return tuple(slots)

    @cached_property
    def pool_index(self) -> int:
        """Index of the layer whose output is f's pooled features, what the dense tail reads: the global
        pool, or (spec v5) the L2 normalization of gdc's 1×1 map."""
        for i, layer in enumerate(self.layers):
            if isinstance(layer, AvgPool | L2Norm):
                return i
        raise ValueError(f"{self.name} has no global pool")

    @property
    def theta_size(self) -> int:
        last = self.layout[-1]
        return last.offset + last.size

    @cached_property
    def shapes(self) -> tuple[tuple[int, int, int], ...]:
        """Activation shape (H, W, C) after every layer; index 0 is the input."""
        h, w = self.input_hw
        c = self.input_ch
        out = [(h, w, c)]
        for layer in self.layers:
            if isinstance(layer, Conv):
                if layer.in_ch != c:
                    raise ValueError(f"{layer.name}: expects {layer.in_ch} channels, gets {c}")
                h = out_size(h, layer.kernel, layer.stride, layer.padding)
                w = out_size(w, layer.kernel, layer.stride, layer.padding)
                c = layer.out_ch
            elif isinstance(layer, AvgPool):
                if (h, w) != (layer.kernel, layer.kernel):
                    raise ValueError(f"{layer.name}: global pool of {layer.kernel} over {h}×{w}")
                h = w = 1
            elif isinstance(layer, L2Norm):
                if (h, w) != (1, 1):
                    raise ValueError(f"{layer.name}: normalizes a 1×1 map, gets {h}×{w}")
            else:
                if layer.in_features != h * w * c:
                    raise ValueError(f"{layer.name}: expects {layer.in_features} features, gets {h * w * c}")
                h = w = 1
                c = layer.out_features
            out.append((h, w, c))
        return tuple(out)

    def macs(self) -> list[int]:
        """Multiply-accumulates per layer (the analytic count; model_info checks it with ptflops)."""
        res = []
        for layer, (h, w, _c) in zip(self.layers, self.shapes[1:]):
            if isinstance(layer, Conv):
                res.append(h * w * layer.out_ch * (layer.in_ch // layer.groups) * layer.kernel ** 2)
            elif isinstance(layer, Dense):
                res.append(layer.in_features * layer.out_features)
            else:
                res.append(0)
        return res

    def to_dict(self) -> dict:
        return {"name": self.name, "version": self.version, "input_hw": list(self.input_hw),
                "input_ch": self.input_ch,
                "layers": [{"kind": layer.kind, **asdict(layer)} for layer in self.layers]}

    def arch_hash(self) -> str:
        """16 hex digits of SHA-256 over the canonical JSON of the spec."""
        canon = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()[:16]


# Fixed gains, LSUV-style (python -m training.verifier.calibrate_gains): with them, at initialization, on
# real faces, every layer's pre-activation output has unit standard deviation. With He's √2 instead, the
# zero-mean (standardized) filters cancel most of the strongly correlated input (a 4×4 patch of a face is
# mostly its mean) and every layer shrinks the signal until training cannot start (docs/training.md).

# The typical length ‖s − μ‖ of f's pooled features about the cohort mean (10.2 for the default model, 11.6
# for the validated one: section 14), folded into fc1's gain: fc1 then meets normalized features at the scale
# of spec v4's, which h's generated heads were trained on.
FEATURE_LENGTH = 11.0

F_SPEC = ArchSpec(
    name="pv-gconv-s",
    input_hw=(112, 112),
    input_ch=3,
    layers=(
        Conv("stem", 3, 24, kernel=4, stride=4, groups=1, padding="valid", relu=True, gain=4.18),  # 28×28×24
        Conv("b1_dw", 24, 24, kernel=3, stride=1, groups=6, padding="same", relu=True, gain=1.85),
        Conv("b2_down", 24, 48, kernel=3, stride=2, groups=6, padding="same", relu=True, gain=2.04),  # 14×14×48
        Conv("b2_mix", 48, 48, kernel=1, stride=1, groups=1, padding="valid", relu=True, gain=1.74),
        Conv("b3_dw", 48, 48, kernel=3, stride=1, groups=12, padding="same", relu=True, gain=1.82),
        Conv("b4_down", 48, 96, kernel=3, stride=2, groups=12, padding="same", relu=True, gain=1.75),  # 7×7×96
        Conv("b4_mix", 96, 96, kernel=1, stride=1, groups=4, padding="valid", relu=True, gain=1.7),
        Conv("b5_dw", 96, 96, kernel=3, stride=2, groups=48, padding="same", relu=True, gain=1.81),  # 4×4×96
        Conv("gdc", 96, 96, kernel=4, stride=1, groups=96, padding="valid", relu=False, gain=0.1,
             standardize=False),  # learned spatial pooling: 1×1×96
        L2Norm("pool"),  # f's pooled features (s − μ) / ‖s − μ‖: see "The pooled features normalized" above
        Dense("fc1", 96, 24, relu=False, gain=5.6 * FEATURE_LENGTH),  # linear: see "fc1 without ReLU" above
        Dense("head", 24, 1, relu=False, gain=1.99),
    ),
)
