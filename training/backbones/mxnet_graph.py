"""Run an MXNet symbol graph (``*-symbol.json``) in PyTorch — inference only, no MXNet needed.

:class:`MXNetGraph` walks the JSON nodes in their stored (topological) order, keeps the ones the graph's
head depends on, and turns each operator into a small ``torch.nn`` module loaded with the matching
arrays from the ``.params`` file. Only the operators below are understood; any other raises
:class:`UnsupportedOp` naming it. Semantics follow MXNet 1.x defaults for attributes the JSON omits
(notably BatchNorm ``eps=1e-3`` and ``fix_gamma=True``).

    null                        graph input (``data``) or a parameter / auxiliary state
    _plus/_minus/_mul/_div_scalar   x ∘ scalar
    elemwise_add, _Plus         x + y
    Convolution                 2-D, kernel/stride/dilate/pad/num_group/no_bias, NCHW only
    BatchNorm                   running statistics; gamma taken as 1 when fix_gamma
    LeakyReLU                   act_type prelu / leaky / elu
    Activation                  relu / sigmoid / tanh / softrelu
    Pooling                     max / avg, global_pool, pooling_convention valid
    Flatten, Dropout (identity), FullyConnected (flatten, no_bias)
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class UnsupportedOp(NotImplementedError):
    """The symbol uses an operator (or an attribute value) this interpreter does not implement."""


def _attrs(node: dict) -> dict[str, str]:
    # MXNet ≥ 0.12 writes "attrs"; older files used "param" / "attr".
    return node.get("attrs") or node.get("param") or node.get("attr") or {}


def _tuple(s: str | None, default: tuple[int, ...]) -> tuple[int, ...]:
    if s is None:
        return default
    v = ast.literal_eval(s)
    return tuple(int(x) for x in (v if isinstance(v, (tuple, list)) else (v,)))


def _bool(s: str | None, default: bool) -> bool:
    if s is None:
        return default
    if s.lower() in ("true", "1"):
        return True
    if s.lower() in ("false", "0"):
        return False
    raise ValueError(f"not a boolean: {s!r}")


class _Scalar(nn.Module):
    def __init__(self, op: str, scalar: float):
        super().__init__()
        self.op, self.scalar = op, scalar

    def forward(self, x):
        if self.op == "plus":
            return x + self.scalar
        if self.op == "minus":
            return x - self.scalar
        if self.op == "mul":
            return x * self.scalar
        return x / self.scalar

    def extra_repr(self):
        return f"{self.op} {self.scalar}"


class _Add(nn.Module):
    def forward(self, x, y):
        return x + y


class _Identity(nn.Module):
    def forward(self, x):
        return x


class _Flatten(nn.Module):
    def forward(self, x):
        return x.flatten(1)


class _Activation(nn.Module):
    _FNS = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "softrelu": F.softplus}

    def __init__(self, act_type: str):
        super().__init__()
        self.act_type = act_type

    def forward(self, x):
        return self._FNS[self.act_type](x)


class _BatchNorm(nn.Module):
    """MXNet BatchNorm at inference: (x - moving_mean) / sqrt(moving_var + eps) * gamma + beta on axis 1.
    With ``fix_gamma`` MXNet ignores the stored gamma and uses 1."""

    def __init__(self, channels: int, eps: float, fix_gamma: bool):
        super().__init__()
        self.eps, self.fix_gamma = eps, fix_gamma
        self.weight = nn.Parameter(torch.ones(channels), requires_grad=not fix_gamma)
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x):
        weight = None if self.fix_gamma else self.weight
        return F.batch_norm(x, self.running_mean, self.running_var, weight, self.bias, False, 0.0, self.eps)

    def extra_repr(self):
        return f"{self.weight.numel()}, eps={self.eps}, fix_gamma={self.fix_gamma}"


class _FullyConnected(nn.Linear):
    def __init__(self, in_features: int, out_features: int, bias: bool, flatten: bool):
        super().__init__(in_features, out_features, bias=bias)
        self.flatten = flatten

    def forward(self, x):
        return super().forward(x.flatten(1) if self.flatten else x)


class _Pool(nn.Module):
    def __init__(self, pool_type: str, kernel, stride, pad, global_pool: bool, count_include_pad: bool):
        super().__init__()
        self.pool_type, self.kernel, self.stride, self.pad = pool_type, kernel, stride, pad
        self.global_pool, self.count_include_pad = global_pool, count_include_pad

    def forward(self, x):
        if self.global_pool:
            return x.amax((2, 3), keepdim=True) if self.pool_type == "max" else x.mean((2, 3), keepdim=True)
        if self.pool_type == "max":
            return F.max_pool2d(x, self.kernel, self.stride, self.pad)
        return F.avg_pool2d(x, self.kernel, self.stride, self.pad, count_include_pad=self.count_include_pad)


def _build_op(op: str, a: dict[str, str], params: list[np.ndarray], name: str) -> nn.Module:
    """One module for one graph node; ``params`` are the node's non-data inputs, in MXNet's input order."""

    def need(n: int):
        if len(params) != n:
            raise ValueError(f"node {name!r} ({op}) expects {n} parameter inputs, got {len(params)}")

    if op in ("_plus_scalar", "_minus_scalar", "_mul_scalar", "_div_scalar"):
        need(0)
        return _Scalar(op[1:].split("_")[0], float(a["scalar"]))
    if op in ("elemwise_add", "_Plus", "_plus"):
        need(0)
        return _Add()
    if op == "Convolution":
        kernel = _tuple(a.get("kernel"), ())
        if len(kernel) != 2 or a.get("layout", "NCHW") not in ("NCHW", "None"):
            raise UnsupportedOp(f"node {name!r}: only 2-D NCHW Convolution is supported (kernel {kernel})")
        no_bias = _bool(a.get("no_bias"), False)
        need(1 if no_bias else 2)
        w = params[0]
        groups = int(a.get("num_group", 1))
        if w.shape[0] != int(a["num_filter"]) or tuple(w.shape[2:]) != kernel:
            raise ValueError(f"node {name!r}: weight shape {w.shape} does not match attrs {a}")
        m = nn.Conv2d(
            w.shape[1] * groups, w.shape[0], kernel,
            stride=_tuple(a.get("stride"), (1, 1)), padding=_tuple(a.get("pad"), (0, 0)),
            dilation=_tuple(a.get("dilate"), (1, 1)), groups=groups, bias=not no_bias,
        )
        _copy(m.weight, w, name)
        if not no_bias:
            _copy(m.bias, params[1], name)
        return m
    if op == "BatchNorm":
        need(4)
        if int(a.get("axis", 1)) != 1:
            raise UnsupportedOp(f"node {name!r}: BatchNorm axis {a['axis']} (only 1 is supported)")
        m = _BatchNorm(params[0].shape[0], float(a.get("eps", 1e-3)), _bool(a.get("fix_gamma"), True))
        for t, arr in zip((m.weight, m.bias, m.running_mean, m.running_var), params):
            _copy(t, arr, name)
        return m
    if op == "LeakyReLU":
        act = a.get("act_type", "leaky")
        if act == "prelu":
            need(1)
            m = nn.PReLU(params[0].size)
            _copy(m.weight, params[0], name)
            return m
        need(0)
        if act == "leaky":
            return nn.LeakyReLU(float(a.get("slope", 0.25)))
        if act == "elu":
            return nn.ELU(float(a.get("slope", 0.25)))
        raise UnsupportedOp(f"node {name!r}: LeakyReLU act_type {act!r}")
    if op == "Activation":
        need(0)
        if a["act_type"] not in _Activation._FNS:
            raise UnsupportedOp(f"node {name!r}: Activation act_type {a['act_type']!r}")
        return _Activation(a["act_type"])
    if op == "FullyConnected":
        no_bias = _bool(a.get("no_bias"), False)
        need(1 if no_bias else 2)
        w = params[0]
        m = _FullyConnected(w.shape[1], w.shape[0], not no_bias, _bool(a.get("flatten"), True))
        _copy(m.weight, w, name)
        if not no_bias:
            _copy(m.bias, params[1], name)
        return m
    if op == "Flatten":
        need(0)
        return _Flatten()
    if op == "Dropout":
        need(0)
        return _Identity()
    if op == "Pooling":
        need(0)
        if a.get("pooling_convention", "valid") != "valid" or a.get("pool_type", "max") not in ("max", "avg"):
            raise UnsupportedOp(f"node {name!r}: Pooling {a} (only max/avg with pooling_convention valid)")
        glob = _bool(a.get("global_pool"), False)
        kernel = _tuple(a.get("kernel"), (1, 1))
        return _Pool(a.get("pool_type", "max"), kernel, _tuple(a.get("stride"), (1,) * len(kernel)),
                     _tuple(a.get("pad"), (0,) * len(kernel)), glob, _bool(a.get("count_include_pad"), True))
    raise UnsupportedOp(f"MXNet operator {op!r} (node {name!r}) is not supported by mxnet_graph")


def _copy(dst: torch.Tensor, src: np.ndarray, name: str) -> None:
    if tuple(dst.shape) != tuple(src.shape):
        raise ValueError(f"node {name!r}: parameter shape {src.shape}, module expects {tuple(dst.shape)}")
    with torch.no_grad():
        dst.copy_(torch.from_numpy(np.ascontiguousarray(src, dtype=np.float32)))


class MXNetGraph(nn.Module):
    """A PyTorch module equivalent (at inference) to an MXNet symbol + its parameters.

    ``params`` maps names *without* the ``arg:``/``aux:`` prefix to arrays. Every ``null`` node the
    output depends on must be a graph input (``input_names``) or have a parameter; with ``strict``
    (the default) every parameter must also be consumed, so a mismatch between symbol and weights
    cannot pass silently. ``forward`` takes the inputs positionally in ``input_names`` order and
    returns the output of the first head (``head`` picks another).
    """

    def __init__(self, symbol: dict, params: dict[str, np.ndarray], input_names=("data",),
                 head: int = 0, strict: bool = True):
        super().__init__()
        nodes = symbol["nodes"]
        head_id, head_out, *_ = symbol["heads"][head]
        if head_out != 0:
            raise UnsupportedOp(f"head {symbol['heads'][head]} reads output {head_out} of a node")
        self.input_names = tuple(input_names)
        self.head_name = nodes[head_id]["name"]

        # nodes the head depends on
        needed = {head_id}
        for nid in range(head_id, -1, -1):
            if nid in needed:
                needed.update(i[0] for i in nodes[nid]["inputs"])

        self.ops = nn.ModuleDict()
        self.op_types: dict[str, str] = {}
        self._inputs: dict[int, int] = {}  # node id -> position in forward(*inputs)
        self._steps: list[tuple[int, str, list[int]]] = []  # (node id, module key, data-input node ids)
        used: set[str] = set()
        for nid, node in enumerate(nodes):
            if nid not in needed:
                continue
            op, name = node["op"], node["name"]
            if op == "null":
                if name in self.input_names:
                    self._inputs[nid] = self.input_names.index(name)
                elif name not in params:
                    raise KeyError(
                        f"graph variable {name!r} is neither an input {self.input_names} nor a parameter"
                    )
                continue
            data_ids, param_arrays = [], []
            for src, out, *_ in node["inputs"]:
                src_node = nodes[src]
                if src_node["op"] == "null" and src_node["name"] not in self.input_names:
                    param_arrays.append(params[src_node["name"]])
                    used.add(src_node["name"])
                else:
                    if out != 0:
                        raise UnsupportedOp(f"node {name!r} reads output {out} of {src_node['name']!r}")
                    data_ids.append(src)
            key = name.replace(".", "_")
            if key in self.ops:
                raise ValueError(f"duplicate node name {name!r}")
            self.ops[key] = _build_op(op, _attrs(node), param_arrays, name)
            self.op_types[name] = op
            self._steps.append((nid, key, data_ids))
        missing_inputs = set(self.input_names) - {nodes[i]["name"] for i in self._inputs}
        if missing_inputs:
            raise KeyError(f"inputs {sorted(missing_inputs)} do not occur in the graph")
        self.unused_params = sorted(set(params) - used)
        if strict and self.unused_params:
            raise KeyError(f"{len(self.unused_params)} parameters are not used by the graph: "
                           f"{self.unused_params[:5]}")
        # free each intermediate after its last consumer
        last_use: dict[int, int] = {}
        for step, (_, _, data_ids) in enumerate(self._steps):
            for src in data_ids:
                last_use[src] = step
        self._free_after = [{s for s in ids if last_use[s] == step and s != head_id}
                            for step, (_, _, ids) in enumerate(self._steps)]
        self._head_id = head_id
        self.eval()

    @classmethod
    def from_files(cls, symbol_json: str | Path, params_file: str | Path, **kw) -> MXNetGraph:
        from training.backbones.mxnet_params import load_params, split_arg_aux

        arg, aux = split_arg_aux(load_params(params_file))
        overlap = set(arg) & set(aux)
        if overlap:
            raise ValueError(f"names in both arg: and aux: {sorted(overlap)[:5]}")
        symbol = json.loads(Path(symbol_json).read_text())
        return cls(symbol, {**arg, **aux}, **kw)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if len(inputs) != len(self.input_names):
            raise TypeError(f"expected {len(self.input_names)} inputs {self.input_names}, got {len(inputs)}")
        values: dict[int, torch.Tensor] = {nid: inputs[pos] for nid, pos in self._inputs.items()}
        for (nid, key, data_ids), free in zip(self._steps, self._free_after):
            values[nid] = self.ops[key](*(values[i] for i in data_ids))
            for i in free:
                values.pop(i)
        return values[self._head_id]
