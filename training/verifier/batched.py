"""Many generated verifiers applied to many images: the nB×nB logit matrix of the training step.

``pairwise_logits(x, thetas)`` gives ``logits[j, k] = f(x_k; θ_j)``; with ``columns`` (pair subsampling)
verifier j sees only the images ``columns[j]``. Three implementations, equal to 2e-5 (float summation order):

* :func:`pairwise_logits` — the fast one, used in training. What makes it fast is, in order (the
  figures, measured with ``python -m training.bench_train``: docs/results.md, "Costs"):

  1. **channels_last (NHWC) activations.** oneDNN's grouped 3×3 convolution with 4 channels per group
     runs its *backward* several times faster in NHWC than in NCHW, and the backward dominates a
     training step. Every layer keeps NHWC: the stem writes it, convolutions preserve it, the one
     explicit pad is made NHWC again.
  2. **Networks folded into channels, in small chunks.** ``chunk`` verifiers are run as one
     convolution with ``chunk × groups`` groups (activations (m, chunk·C, H, W)). Folding *all* nB
     networks (one call per layer, what vmap's batching rule produces) is slower than a loop: the
     activations (tens to hundreds of MB) leave the caches and every ReLU, pad and ReLU-backward
     becomes a memory-bound pass. Chunks of a few networks keep each call's tensors in L2/L3 while
     still cutting the number of calls.
  3. **The stem as one GEMM.** The 4×4/stride-4 stem is a patchify convolution: with the images'
     non-overlapping patches P (M·28·28, 48), the stem of a chunk of networks is
     ``P @ W_chunkᵀ`` — the output (M·28·28, chunk·24) is already the NHWC activation, no permute.
     P is built once per call and shared by all chunks (and, with ``columns``, gathered per network).
  4. **Weight standardization for all θ at once**, on (N, out, …) tensors split from θ with
     ``torch.split`` (whose backward is one concatenation, where slicing would allocate and zero a
     full-size gradient per slot).

  Alternatives measured and dropped (docs/results.md, "Costs"): the vmap version, all networks folded
  in one call (NCHW or NHWC), im2col/unfold + einsum for the grouped 3×3 layers (its inner dimensions,
  36×4, are far too small for a GEMM), and densifying the groups (6× the MACs).

* :func:`pairwise_logits_loop` — the obvious loop over networks in NCHW (the reference for the tests
  and the baseline of the benchmark); ``memory_format=torch.channels_last`` gives the loop with only
  idea 1, to show how much of the gain is the layout alone.
* :func:`pairwise_logits_vmap` — ``torch.func.vmap`` over θ (a third reference, compared in the
  benchmark).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.func import vmap

from pvcore.spec import F_SPEC, ArchSpec, AvgPool, Conv, Dense, L2Norm, same_pads
from training.verifier.functional import apply_effective, effective_weights, filters, l2_normalize

CL = torch.channels_last
# Verifiers folded per call. With one thread chunk 1 is slightly best; with two, a single network per call
# leaves too little work to split and chunk 4 is much faster. 4 is the compromise (python -m
# training.bench_train; the figures: docs/results.md, "Costs").
DEFAULT_CHUNK = 4


def effective_weights_batched(thetas: torch.Tensor, spec: ArchSpec = F_SPEC) -> dict[str, torch.Tensor]:
    """:func:`effective_weights` for a stack of θ: (N, θ_size) → {"<layer>.weight": (N, *shape), ...}."""
    if thetas.ndim != 2 or thetas.shape[1] != spec.theta_size:
        raise ValueError(f"thetas must be (N, {spec.theta_size}) for {spec.name}, got {tuple(thetas.shape)}")
    n = thetas.shape[0]
    parts = torch.split(thetas, [s.size for s in spec.layout], dim=1)
    raw = {f"{s.layer}.{s.tensor}": p for s, p in zip(spec.layout, parts)}
    out: dict[str, torch.Tensor] = {}
    for layer in spec.layers:
        if isinstance(layer, Conv | Dense):
            shape = layer.weight_shape
            w = filters(raw[f"{layer.name}.weight"].reshape(n, shape[0], -1), layer)
            w = w * (1.0 + raw[f"{layer.name}.gain"]).unsqueeze(2)  # generated per-channel gains
            out[f"{layer.name}.weight"] = w.reshape(n, *shape)
            out[f"{layer.name}.bias"] = raw[f"{layer.name}.bias"]
    return out


def _is_patchify(layer: Conv) -> bool:
    return layer.kernel == layer.stride and layer.groups == 1 and layer.padding == "valid"


def _patches(x: torch.Tensor, k: int) -> torch.Tensor:
    """(M, C, H, W) → (M, H/k·W/k, C·k·k): the non-overlapping k×k patches, in the (C, kh, kw) order of
    a PyTorch OIHW filter, so that a patch times a flattened filter is that filter's convolution."""
    m, c, h, w = x.shape
    if h % k or w % k:
        raise ValueError(f"patchify stem: input {h}×{w} is not a multiple of {k}")
    p = x.reshape(m, c, h // k, k, w // k, k).permute(0, 2, 4, 1, 3, 5)
    return p.reshape(m, (h // k) * (w // k), c * k * k)


def _conv(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor, layer: Conv, groups: int) -> torch.Tensor:
    """One (folded) convolution with the spec's TF-'same' padding, keeping channels_last."""
    pad: tuple[int, int] = (0, 0)
    if layer.padding == "same":
        ph = same_pads(h.shape[-2], layer.kernel, layer.stride)
        pw = same_pads(h.shape[-1], layer.kernel, layer.stride)
        if ph[0] == ph[1] and pw[0] == pw[1]:
            pad = (ph[0], pw[0])  # symmetric: oneDNN pads inside the kernel, no copy
        else:
            # TF's extra pad at the end (stride 2 on even sizes) has no conv2d equivalent: pad explicitly.
            # F.pad returns NCHW; converting back keeps oneDNN on its fast NHWC path.
            h = F.pad(h, (pw[0], pw[1], ph[0], ph[1])).contiguous(memory_format=CL)
    y = F.conv2d(h, w, b, stride=layer.stride, groups=groups, padding=pad)
    return y.relu_() if layer.relu else y  # in place: conv2d's backward does not need its output


def _stem(x: torch.Tensor, patches: torch.Tensor | None, cols: torch.Tensor | None,
          w: torch.Tensor, b: torch.Tensor, layer: Conv, ho: int, wo: int) -> torch.Tensor:
    """The first convolution for a chunk of n networks → (m, n·out, ho, wo) channels_last.

    ``w`` (n, out, C, k, k), ``b`` (n, out); ``cols`` (n, m) image indices per network or None (all M).
    """
    n, out = w.shape[0], layer.out_ch
    if patches is not None:  # patchify stem as a GEMM, output already NHWC
        if cols is None:
            y = torch.addmm(b.reshape(-1), patches.reshape(-1, patches.shape[-1]), w.reshape(n * out, -1).t())
            m = patches.shape[0]
        else:
            m = cols.shape[1]
            p = patches[cols].reshape(n, m * ho * wo, -1)  # (n, m·ho·wo, C·k·k)
            y = torch.baddbmm(b.unsqueeze(1), p, w.reshape(n, out, -1).transpose(1, 2))  # (n, m·ho·wo, out)
            if n > 1:
                y = y.reshape(n, m * ho * wo, out).transpose(0, 1)  # → (m·ho·wo, n, out)
            y = y.reshape(m * ho * wo, n * out)
        if layer.relu:
            y = y.relu_()
        return y.reshape(m, ho, wo, n * out).permute(0, 3, 1, 2)  # NCHW view with channels_last strides
    # general first layer: an ordinary (folded) convolution
    if cols is None and layer.groups == 1:
        h = x.contiguous(memory_format=CL)
        return _conv(h, w.reshape(n * out, *w.shape[2:]), b.reshape(-1), layer, groups=1)
    if cols is None:  # grouped: fold the networks as groups over a replicated input, so channels stay (net, ch)
        cols = torch.arange(x.shape[0]).expand(n, -1)
    m = cols.shape[1]
    h = x[cols].transpose(0, 1).reshape(m, n * x.shape[1], *x.shape[2:]).contiguous(memory_format=CL)
    return _conv(h, w.reshape(n * out, *w.shape[2:]), b.reshape(-1), layer, groups=n * layer.groups)


def _check(x: torch.Tensor, thetas: torch.Tensor, spec: ArchSpec, columns: torch.Tensor | None) -> None:
    if x.ndim != 4 or x.shape[1] != spec.input_ch:
        raise ValueError(f"x must be (M, {spec.input_ch}, H, W), got {tuple(x.shape)}")
    if thetas.ndim != 2:
        raise ValueError(f"thetas must be (N, θ_size), got {tuple(thetas.shape)}")
    if columns is not None:
        if columns.ndim != 2 or columns.shape[0] != thetas.shape[0]:
            raise ValueError(f"columns must be (N={thetas.shape[0]}, m), got {tuple(columns.shape)}")
        if columns.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"columns must be an integer tensor, got {columns.dtype}")
        if columns.numel() and (int(columns.min()) < 0 or int(columns.max()) >= x.shape[0]):
            raise ValueError(f"columns index images 0..{x.shape[0] - 1}; "
                             f"got {int(columns.min())}..{int(columns.max())}")


def pairwise_logits(x: torch.Tensor, thetas: torch.Tensor, spec: ArchSpec = F_SPEC,
                    columns: torch.Tensor | None = None, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """logits[j, k] = f(x_k; θ_j).  x: (M, C, H, W) float, thetas: (N, θ_size) → (N, M).

    ``columns`` (N, m) int: verifier j sees only the images ``columns[j]`` (pair subsampling); the result
    is then (N, m) with ``logits[j, i] = f(x[columns[j, i]]; θ_j)``. ``chunk``: verifiers per folded call
    (speed only; every value gives the same result up to float rounding).
    """
    _check(x, thetas, spec, columns)
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    eff = effective_weights_batched(thetas, spec)
    first = spec.layers[0]
    if not isinstance(first, Conv | AvgPool | L2Norm):
        raise NotImplementedError(f"{spec.name}: the first layer must be a convolution or the global pool")
    # the pooled features: a global pool, or (spec v5) the L2 normalization of the 1×1 map before it
    pool_at = next((i for i, layer in enumerate(spec.layers) if isinstance(layer, AvgPool | L2Norm)), None)
    if pool_at is None:
        raise NotImplementedError(f"{spec.name}: f must end in a global pool and dense layers")
    normalize = isinstance(spec.layers[pool_at], L2Norm)
    convs, dense = spec.layers[:pool_at], spec.layers[pool_at + 1:]
    if not all(isinstance(layer, Conv) for layer in convs):
        raise NotImplementedError(f"{spec.name}: only convolutions may come before the global pool")
    m = x.shape[0] if columns is None else columns.shape[1]
    if convs:
        h1, w1, _ = spec.shapes[1]
        patches = _patches(x, first.kernel) if _is_patchify(first) else None
    else:  # a dense-only suffix (personal_from = the global pool): x are features, pooled ONCE per image
        pooled = x.mean(dim=(2, 3))  # (M, C)
        if normalize:
            pooled = l2_normalize(pooled)
    # torch.split, not slicing: the backward of a split is one concatenation, where each slice would
    # allocate and zero a full-size gradient (a few % of the step: docs/results.md, "Costs").
    parts = {key: torch.split(v, chunk) for key, v in eff.items()}
    n_chunks = len(next(iter(parts.values())))
    col_parts = (None,) * n_chunks if columns is None else torch.split(columns, chunk)
    outs = []
    for i, cols in enumerate(col_parts):
        p = {key: v[i] for key, v in parts.items()}
        n = next(iter(p.values())).shape[0]
        if convs:
            h = _stem(x, patches, cols, p[f"{first.name}.weight"], p[f"{first.name}.bias"], first, h1, w1)
            for layer in convs[1:]:
                w = p[f"{layer.name}.weight"]
                h = _conv(h, w.reshape(n * layer.out_ch, *w.shape[2:]), p[f"{layer.name}.bias"].reshape(-1),
                          layer, groups=n * layer.groups)
            h = h.mean(dim=(2, 3)).reshape(m, n, -1)
            if normalize:
                h = l2_normalize(h)
        else:
            h = pooled[:, None, :].expand(-1, n, -1) if cols is None else pooled[cols.t()]  # (m, n, C)
        outs.append(_dense_head(h, p, dense, spec))
    return torch.cat(outs, dim=1).t()


def _dense_head(h: torch.Tensor, p: dict[str, torch.Tensor], layers: tuple, spec: ArchSpec) -> torch.Tensor:
    """The dense layers of a chunk of n verifiers on pooled features h (m, n, C) → (m, n) logits."""
    for layer in layers:
        if not isinstance(layer, Dense):
            raise NotImplementedError(f"{spec.name}: {layer.name} after the global pool is not a dense layer")
        h = torch.einsum("mni,noi->mno", h, p[f"{layer.name}.weight"]) + p[f"{layer.name}.bias"]
        if layer.relu:
            h = h.relu_()
    if h.shape[-1] != 1:
        raise NotImplementedError(f"{spec.name}: f must end in a dense layer with one output")
    return h[..., 0]


def pairwise_logits_loop(x: torch.Tensor, thetas: torch.Tensor, spec: ArchSpec = F_SPEC,
                         columns: torch.Tensor | None = None,
                         memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """Reference: one network at a time with :func:`apply_effective` (NCHW unless ``memory_format``)."""
    _check(x, thetas, spec, columns)
    xs = x.contiguous(memory_format=memory_format)
    rows = []
    for j, th in enumerate(thetas):
        xj = xs if columns is None else xs[columns[j]].contiguous(memory_format=memory_format)
        rows.append(apply_effective(xj, effective_weights(th, spec), spec))
    return torch.stack(rows)


def pairwise_logits_vmap(x: torch.Tensor, thetas: torch.Tensor, spec: ArchSpec = F_SPEC,
                         columns: torch.Tensor | None = None) -> torch.Tensor:
    """``torch.func.vmap`` over θ (its conv2d batching rule makes one grouped convolution of all nB)."""
    _check(x, thetas, spec, columns)
    eff = vmap(lambda th: effective_weights(th, spec))(thetas)
    if columns is None:
        return vmap(lambda p: apply_effective(x, p, spec))(eff)
    return vmap(lambda p, xs: apply_effective(xs, p, spec))(eff, x[columns])


def pair_macs(spec: ArchSpec = F_SPEC) -> int:
    """Multiply-accumulates of one f(x; θ) evaluation (one pair)."""
    return int(math.fsum(spec.macs()))


# --------------------------------------------------------------------------------------------------
# Partial personalization: a shared prefix of f, computed once per image


def split_spec(spec: ArchSpec, first_personal: str) -> tuple[ArchSpec, ArchSpec, int]:
    """Cut f before layer ``first_personal`` → (prefix spec, suffix spec, θ values of the prefix).

    The θ layout follows the layer order, so the prefix's parameters are θ[:n] and the suffix's θ[n:]."""
    names = [layer.name for layer in spec.layers]
    if first_personal not in names:
        raise ValueError(f"{spec.name} has no layer {first_personal!r} (layers: {', '.join(names)})")
    i = names.index(first_personal)
    if i == 0:
        raise ValueError("the first personal layer must not be the first layer (use full personalization)")
    h, w, c = spec.shapes[i]
    prefix = ArchSpec(f"{spec.name}[:{first_personal}]", spec.input_hw, spec.input_ch, spec.layers[:i], spec.version)
    suffix = ArchSpec(f"{spec.name}[{first_personal}:]", (h, w), c, spec.layers[i:], spec.version)
    return prefix, suffix, prefix.theta_size


def prefix_features(x: torch.Tensor, theta_prefix: torch.Tensor, prefix: ArchSpec) -> torch.Tensor:
    """Run the convolutional prefix with ONE θ on images x (M, C, H, W) → (M, C', H', W') channels_last."""
    eff = effective_weights_batched(theta_prefix[None], prefix)
    first = prefix.layers[0]
    if not isinstance(first, Conv) or not all(isinstance(layer, Conv) for layer in prefix.layers):
        raise NotImplementedError(f"{prefix.name}: a shared prefix must be convolutions only")
    h1, w1, _ = prefix.shapes[1]
    patches = _patches(x, first.kernel) if _is_patchify(first) else None
    h = _stem(x, patches, None, eff[f"{first.name}.weight"], eff[f"{first.name}.bias"], first, h1, w1)
    for layer in prefix.layers[1:]:
        h = _conv(h, eff[f"{layer.name}.weight"][0], eff[f"{layer.name}.bias"][0], layer, groups=layer.groups)
    return h


def pairwise_logits_split(x: torch.Tensor, thetas: torch.Tensor, first_personal: str, spec: ArchSpec = F_SPEC,
                          columns: torch.Tensor | None = None, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """:func:`pairwise_logits` for θ whose layers before ``first_personal`` are the SAME in every row.

    The shared prefix runs once per image (M passes instead of N·M), only the personal suffix runs per
    (verifier, image) pair. Equal to :func:`pairwise_logits` (to float rounding) when the rows' prefix
    parts are equal; the prefix of row 0 is used (in training they are one shared parameter)."""
    _check(x, thetas, spec, columns)
    prefix, suffix, n = split_spec(spec, first_personal)
    feats = prefix_features(x, thetas[0, :n], prefix)
    return pairwise_logits(feats, thetas[:, n:], suffix, columns=columns, chunk=chunk)
