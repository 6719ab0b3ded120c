"""An MLP that ends in one score, at inference, as one compiled pass (``_mlp_kernels.cpp``).

The attention unit scores every (candidate, position) pair, and the output MLP every row,
with a chain of linear layers and activations ending in a single output. Composed of
torch's ops, each layer is a matrix product and an activation that write activations of
(rows x units) to memory and read them back, and the last product has one column, the
slowest shape a matrix product has. Inference (no autograd, modules in eval mode) on the
CPU instead runs the compiled kernel: a tile of rows goes through every layer in
registers. It computes the same function to float rounding (about 1e-6 relative: a
different order of the sums, and Dice's exponential is the compiled kernels'), like the
compiled Dice (:mod:`._kernels`), and is chosen the same way (``SKLEARN_DIN_KERNELS``).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from . import _kernels

# The kernel's activation kinds (enum Kind in _mlp_kernels.cpp).
KINDS = {"identity": 0, "dice": 1, "prelu": 2, "relu": 3}
# Columns are padded to a multiple of this (kPad in _mlp_kernels.cpp).
PAD = 16


# Per owner module (an attention unit, a network): its packed MLP. Kept out of the module
# itself, so that pickles, deep copies and state dicts carry none of it.
_PACKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def mlp_scores(owner: nn.Module, lead: nn.Module | None, rest: nn.Sequential,
               score: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``score(rest(lead(x)))`` as shape (rows,): the compiled kernel where it applies."""
    scores = _fused(owner, lead, rest, score)(x)
    if scores is None:
        scores = score(rest(x if lead is None else lead(x))).squeeze(1)
    return scores


def shared_mlp_scores(owner: nn.Module, lead: nn.Module | None, rest: nn.Sequential,
                      score: nn.Linear, query: torch.Tensor, per_key: torch.Tensor,
                      key_items: torch.Tensor, w_query: torch.Tensor, w_product: torch.Tensor
                      ) -> torch.Tensor | None:
    """The scores (C, L) of candidates ``query`` (C, dim) against one shared history, whose
    first layer at pair (c, k) is ``per_key[k] + (w_query + w_product diag(key_items[k]))
    query[c]``, or None where the kernel does not apply (the caller then runs the modules;
    see ``LocalActivationUnit.score_shared``)."""
    fused = _fused(owner, lead, rest, score)
    ops = fused.ops(per_key, query, key_items, w_query, w_product)
    if ops is None:
        return None
    units = per_key.shape[1]
    pad = _padded(units) - units
    # M_k transposed, (L, dim, padded units): the candidate's part of position k's layer.
    mixed_t = torch.addcmul(nn.functional.pad(w_query.T, (0, pad)), key_items[:, :, None],
                            nn.functional.pad(w_product.T, (0, pad))[None]).contiguous()
    return ops.shared_mlp_scores(query.contiguous(), nn.functional.pad(per_key, (0, pad)),
                                 mixed_t, *fused.pack(units))


def pair_mlp_scores(owner: nn.Module, lead: nn.Module | None, rest: nn.Sequential,
                    score: nn.Linear, query: torch.Tensor, per_row: torch.Tensor,
                    keys: torch.Tensor, rows: torch.Tensor, first_weight: torch.Tensor
                    ) -> torch.Tensor | None:
    """The scores (N,) of N (row, position) pairs, whose first layer at pair p is
    ``per_row[rows[p]] + first_weight @ [keys[p], query[rows[p]] * keys[p, :dim]]``, or
    None where the kernel does not apply (the caller then runs the modules; see
    ``LocalActivationUnit.forward``)."""
    fused = _fused(owner, lead, rest, score)
    ops = fused.ops(per_row, query, keys, first_weight)
    if ops is None:
        return None
    units = per_row.shape[1]
    pad = _padded(units) - units
    return ops.pair_mlp_scores(
        query.contiguous(), nn.functional.pad(per_row, (0, pad)), keys.contiguous(),
        rows.contiguous(), nn.functional.pad(first_weight.T, (0, pad)).contiguous(),
        *fused.pack(units))


def _fused(owner: nn.Module, lead: nn.Module | None, rest: nn.Sequential, score: nn.Linear
           ) -> FusedMLP:
    fused = _PACKED.get(owner)
    if fused is None or not fused.packs(lead, rest, score):
        fused = _PACKED[owner] = FusedMLP(lead, rest, score)
    return fused


class FusedMLP:
    """``score(rest(lead(x)))`` of a network's modules, packed for the compiled kernel.

    Parameters
    ----------
    lead : module or None
        The activation applied to ``x`` first (the attention's first activation, whose
        input is computed outside), or None.
    rest : sequence of modules
        Linear layers, each followed by its activation (Dice, PReLU or ReLU), and
        dropout layers (identities at inference).
    score : nn.Linear
        The last layer, with one output.

    The packed weights are kept until a parameter or buffer changes (an optimizer step or
    ``load_state_dict`` bumps its version counter), as Dice keeps its inference constants.
    """

    def __init__(self, lead: nn.Module | None, rest: Sequence[nn.Module], score: nn.Linear
                 ) -> None:
        self.lead = lead
        self.modules = (lead, *rest, score)
        self.layers: list[tuple[nn.Linear, nn.Module]] = []  # (linear, its activation)
        self.supported = score.out_features == 1 and _kind(lead, allow_none=True) is not None
        pending: nn.Linear | None = None
        for module in rest:
            if isinstance(module, nn.Dropout):
                continue
            if isinstance(module, nn.Linear) and pending is None:
                pending = module
            elif pending is not None and _kind(module) is not None:
                self.layers.append((pending, module))
                pending = None
            else:  # batch norm, two linear layers in a row, an unknown activation
                self.supported = False
        if pending is not None:
            self.supported = False
        self.score = score
        self._packed: tuple[tuple, tuple] | None = None

    def packs(self, lead: nn.Module | None, rest: Sequence[nn.Module], score: nn.Linear
              ) -> bool:
        """Whether these are the modules packed (a module replaced makes a new pack)."""
        modules = (lead, *rest, score)
        return len(modules) == len(self.modules) and all(
            a is b for a, b in zip(modules, self.modules, strict=True))

    def __call__(self, x: torch.Tensor) -> torch.Tensor | None:
        """The scores (rows,) of ``x`` (rows, inputs), or None where the kernel does not
        apply: the caller then runs the modules."""
        ops = self.ops(x)
        if ops is None:
            return None
        return ops.mlp_scores(x.contiguous(), *self.pack(x.shape[1]))

    def ops(self, x: torch.Tensor, *others: torch.Tensor) -> Any:
        """The compiled ops for input ``x`` (and the kernel's other float inputs), or None
        where they do not apply: autograd, training mode, another dtype or device, tracing,
        torch's ops chosen."""
        if not self.supported or torch.is_grad_enabled() or x.dim() != 2:
            return None
        if any(m is not None and m.training for m in self.modules):
            return None
        return _kernels.compiled_ops(x, *others, self.score.weight)

    def pack(self, inputs: int) -> tuple:
        """The kernel's arguments after ``x``, for inputs of this width: built again only
        when a parameter or buffer changed."""
        # The leaf modules' own dicts, read anew each call (m.parameters() costs 10x more,
        # and a conversion such as .double() replaces the buffers themselves).
        key = (inputs, *((t._version, t.data_ptr()) for m in self.modules if m is not None
                         for d in (m._parameters, m._buffers) for t in d.values()
                         if t is not None))
        packed = self._packed
        if packed is None or packed[0] != key:
            with torch.no_grad():
                packed = self._packed = (key, self._build(inputs))
        return packed[1]

    def _build(self, inputs: int) -> tuple:
        lead_kind = _kind(self.lead, allow_none=True)
        lead_params = _activation_params(self.lead, inputs)
        weights, biases, params, kinds = [], [], [], []
        for linear, activation in self.layers:
            width = _padded(linear.out_features)
            weight_t = linear.weight.new_zeros((linear.in_features, width))
            weight_t[:, : linear.out_features] = linear.weight.T
            bias = linear.weight.new_zeros(width)
            if linear.bias is not None:
                bias[: linear.out_features] = linear.bias
            weights.append(weight_t)
            biases.append(bias)
            params.append(_activation_params(activation, linear.out_features))
            kinds.append(_kind(activation))
        last = self.layers[-1][0].out_features if self.layers else inputs
        score_w = self.score.weight.new_zeros(_padded(last))
        score_w[:last] = self.score.weight[0]
        score_b = (self.score.bias.reshape(1).clone() if self.score.bias is not None
                   else self.score.weight.new_zeros(1))
        return lead_kind, lead_params, weights, biases, params, kinds, score_w, score_b


def _padded(width: int) -> int:
    return -(-width // PAD) * PAD


def _kind(module: nn.Module | None, allow_none: bool = False) -> int | None:
    from ._network import Dice  # the network imports this module

    if module is None:
        return KINDS["identity"] if allow_none else None
    # The exact classes: a subclass may compute something else in its forward.
    if type(module) is Dice:
        return KINDS["dice"]
    if type(module) is nn.PReLU:
        return KINDS["prelu"]
    if type(module) is nn.ReLU:
        return KINDS["relu"]
    return None


def _activation_params(module: nn.Module | None, width: int) -> torch.Tensor:
    """(4, padded width): shift, scale, alpha, keep (Dice); alpha in row 2 (PReLU); empty
    for activations without parameters."""
    from ._network import Dice

    if type(module) not in (Dice, nn.PReLU):
        return torch.zeros(0)
    params = torch.zeros((4, _padded(width)))
    if type(module) is Dice:
        shift, scale, keep = module._inference_constants()
        for row, values in enumerate((shift, scale, module.alpha, keep)):
            params[row, :width] = values
    else:
        params[2, :width] = module.weight.expand(width)
    return params
