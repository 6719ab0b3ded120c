"""The Deep Interest Network as a plain PyTorch module.

It knows nothing of pandas or scikit-learn: it takes integer id tensors and
returns one logit per row. Layout of the inputs (B rows):

- ``candidate`` (B, F): ids of the candidate item and its attributes; feature
  ``f`` shares its embedding table with history feature ``f``.
- ``history`` (B, F + G, L): the same features for the L most recent behaviours,
  position 0 = most recent, followed by G context features that only behaviours
  have (e.g. how long before the row each behaviour happened), each with its own table.
- ``history_length`` (B,): how many leading positions of ``history`` are real;
  every later position is padding and is never read.
- ``sparse`` (B, S): other categorical ids (the user first, when there is one),
  each with its own table.
- ``dense`` (B, D): numeric features, fed to the MLP as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from . import _kernels
from ._fused_mlp import mlp_scores, pair_mlp_scores, shared_mlp_scores

ACTIVATIONS = ("dice", "prelu", "relu")
POOLINGS = ("attention", "sum", "mean")
ATTENTION_NORMALIZATIONS = (None, "softmax", "mean")
# attention_scorer's names for the built-in scorers (defined below).
SCORER_NAMES = ("local_activation", "dot")
# A history of L behaviours falls in bucket floor(log2 L), the last one open: 1, 2-3, 4-7,
# 8-15, 16-31, 32+ behaviours. Each bucket's attention scores get their own learnt scale
# (attention_length_scale=True).
LENGTH_BUCKET_STARTS = (2, 4, 8, 16, 32)
# The k-th most recent behaviour (k = 1, 2, ...) falls in bucket 1 + floor(log2 k): 1, 2-3,
# 4-7, 8-15, 16-31, 32-63, 64+ (row 0 of the table unused, as id 0 is padding). Each bucket
# has a learnt embedding that the attention's scorer reads (attention_position=True).
POSITION_BUCKET_STARTS = (2, 4, 8, 16, 32, 64)


class Dice(nn.Module):
    """Data-adaptive activation of the DIN paper (Zhou et al., 2018, Eq. 9).

    ``f(s) = p(s) * s + (1 - p(s)) * alpha * s`` with
    ``p(s) = sigmoid((s - E[s]) / sqrt(Var[s] + eps))``: the expectation and
    variance are the mini-batch statistics in training and their running
    averages at inference. Unlike DeepCTR's variant there is no learnable
    scale or shift inside the normalisation; ``alpha`` is learnt per channel,
    starting at 0.

    Examples
    --------
    >>> import torch
    >>> from sklearn_din import Dice
    >>> dice = Dice(3)
    >>> x = torch.tensor([[-1.0, 0.0, 2.0], [1.0, 0.0, -2.0]])
    >>> dice(x).shape                     # batch statistics in training mode
    torch.Size([2, 3])
    >>> bool((dice.eval()(x)[:, 1] == 0).all())   # running statistics at inference
    True
    """

    def __init__(self, num_features: int, eps: float = 1e-8, momentum: float = 0.1) -> None:
        super().__init__()
        self.eps = eps
        self.momentum = momentum
        self.alpha = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # A single row has no variance: it is normalised with the running statistics.
        batch_stats = self.training and x.shape[0] > 1
        if not torch.is_grad_enabled():
            if not batch_stats:
                return self._infer(x)
        elif (x.dim() == 2 and x.device.type == "cpu"
              and (x.requires_grad or self.alpha.requires_grad)
              and not torch.compiler.is_compiling()):
            # Training on CPU: one autograd node with a hand-written backward (see
            # _DiceFunction). The plain path below without anything to differentiate
            # (torch.export's trace), under torch.compile, which fuses the plain ops itself,
            # and on accelerators, whose caching allocators leave nothing to gain.
            return _DiceFunction.apply(x, self.alpha, self.running_mean, self.running_var,
                                       batch_stats, self.momentum, self.eps)
        # batch_norm without weight and bias is exactly (s - E[s]) / sqrt(Var[s] + eps), with
        # the running averages updated as in BatchNorm; its fused kernel is ~10x faster than
        # var_mean + arithmetic.
        normalised = nn.functional.batch_norm(
            x, self.running_mean, self.running_var, None, None, batch_stats, self.momentum,
            self.eps,
        )
        p = torch.sigmoid(normalised)
        # p * s + (1 - p) * alpha * s == s * (alpha + p * (1 - alpha))
        return x * torch.addcmul(self.alpha, p, 1.0 - self.alpha)

    def _infer(self, x: torch.Tensor) -> torch.Tensor:
        """The same function without autograd: one temporary, updated in place.

        At inference the attention's activations are (positions x units) tensors of
        megabytes; a fresh tensor per elementwise step costs as much in page faults as
        the arithmetic, so the gate is built in one buffer and then multiplied into it;
        the compiled kernel (:mod:`._kernels`), where available, is one pass.
        """
        shift, scale, keep = self._inference_constants()
        ops = _kernels.dice_ops(x, self.alpha)
        if ops is not None:
            return ops.dice_forward(x.contiguous(), shift, scale, self.alpha, keep, False)[0]
        gate = torch.addcmul(shift, x, scale).sigmoid_()
        # alpha + (1 - alpha) * p in one pass, written over p.
        torch.addcmul(self.alpha, gate, keep, out=gate)
        return gate.mul_(x)

    def __getstate__(self) -> dict:
        # The inference constants are a cache of the buffers: pickles and copies leave it.
        state = self.__dict__.copy()
        state.pop("_constants", None)
        return state

    def _inference_constants(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-E[s] / sqrt(Var[s] + eps), 1 / sqrt(Var[s] + eps) and 1 - alpha.

        Five small tensor operations that a serving request would otherwise repeat for
        every block of activations; kept until the statistics or alpha change (an
        optimizer step or ``load_state_dict`` bumps their version counters).
        """
        key = (self.running_mean._version, self.running_var._version, self.alpha._version,
               self.running_mean.data_ptr(), self.running_var.data_ptr(),
               self.alpha.data_ptr(), self.eps)
        cached = self.__dict__.get("_constants")
        if cached is None or cached[0] != key:
            with torch.no_grad():
                scale = torch.rsqrt(self.running_var + self.eps)
                cached = (key, (-self.running_mean * scale, scale, 1.0 - self.alpha))
            self.__dict__["_constants"] = cached
        return cached[1]


class _DiceFunction(torch.autograd.Function):
    """Dice's forward and backward as one autograd node, in cache-sized blocks of rows.

    Composed of torch's own ops, Dice records five nodes whose forward and backward
    allocate about ten activation-sized tensors a step and save three, each op one pass
    over memory: on the attention's (positions x units) activations, tens of MB, every
    fresh tensor costs more in page faults than its arithmetic (past glibc's 32 MiB mmap
    threshold, about five times a pass over reused memory). Here the forward allocates
    only the output and the gate (saved with the input), the backward only the input's
    gradient, and both run their chain of elementwise steps block by block (about 2 MB a
    block, in cache) with one block-sized work buffer. The statistics and running averages
    come from ``batch_norm_update_stats``, the kernel ``batch_norm`` itself uses. Where
    the compiled kernels are available (:mod:`._kernels`), each direction is instead one
    pass of ``_dice_kernels.cpp`` (two for the backward with batch statistics), and only
    the input is saved: the backward recomputes the gate.

    With ``gate = sigmoid((x - mean) * rstd)``, ``out = x * (alpha + (1 - alpha) gate)``:

    - ``d alpha = sum_n dout x (1 - gate)``;
    - ``d xhat = (1 - alpha) dout x gate (1 - gate)``;
    - ``d x = dout (alpha + (1 - alpha) gate) + rstd (d xhat - mean_n(d xhat)
      - xhat mean_n(d xhat xhat))``, the last two terms only with batch statistics.
    """

    BLOCK_ELEMENTS = 1 << 19

    @staticmethod
    def _block_rows(x: torch.Tensor) -> int:
        # One cache-sized share per intra-op thread: each thread's slice of a block stays
        # in its core's cache, and fewer, larger ops keep the threads busy.
        elements = _DiceFunction.BLOCK_ELEMENTS * torch.get_num_threads()
        return max(1, elements // max(x.shape[1], 1))

    @staticmethod
    def _blocks(x: torch.Tensor) -> list[slice]:
        step = _DiceFunction._block_rows(x)
        return [slice(s, s + step) for s in range(0, x.shape[0], step)]

    @staticmethod
    def forward(ctx, x, alpha, running_mean, running_var, batch_stats, momentum, eps):
        if batch_stats:
            # Mean and biased variance; the running averages updated as batch_norm does.
            mean, var = torch.batch_norm_update_stats(x, running_mean, running_var, momentum)
        else:
            mean, var = running_mean, running_var
        rstd = torch.rsqrt(var + eps)
        shift = -mean * rstd
        keep = 1.0 - alpha
        ctx.ops = _kernels.dice_ops(x, alpha)
        if ctx.ops is not None:
            # No gate saved: the backward recomputes it from x, which costs less than
            # another activation-sized buffer of fresh pages written and read back.
            x = x.contiguous()
            out, gate = ctx.ops.dice_forward(x, shift, rstd, alpha, keep, False)
        else:
            gate, out = torch.empty_like(x), torch.empty_like(x)
            for block in _DiceFunction._blocks(x):
                g = torch.addcmul(shift, x[block], rstd, out=gate[block]).sigmoid_()
                torch.addcmul(alpha, g, keep, out=out[block]).mul_(x[block])
        ctx.batch_stats = batch_stats
        ctx.save_for_backward(x, gate, alpha, rstd, shift)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dout):
        x, gate, alpha, rstd, shift = ctx.saved_tensors
        keep = 1.0 - alpha
        if ctx.ops is not None:
            grad_x, grad_alpha = ctx.ops.dice_backward(
                dout.contiguous(), x, gate, alpha, keep, rstd, shift, ctx.batch_stats)
            return grad_x, grad_alpha, None, None, None, None, None
        scale = rstd * keep  # d x gets rstd d xhat = scale * work
        blocks = _DiceFunction._blocks(x)
        grad_x = torch.empty_like(x)
        buffer = x.new_empty((min(_DiceFunction._block_rows(x), len(x)), x.shape[1]))
        sum_dout_x, sum_dout_x_gate, sum_work, sum_work_x = x.new_zeros((4, x.shape[1]))
        for block in blocks:
            d, xb, g, gx = dout[block], x[block], gate[block], grad_x[block]
            work = torch.mul(d, xb, out=buffer[: len(d)])
            sum_dout_x += work.sum(0)
            work.mul_(g)
            sum_dout_x_gate += work.sum(0)
            work.addcmul_(work, g, value=-1.0)  # dout x gate (1 - gate) = d xhat / keep
            torch.addcmul(alpha, g, keep, out=gx).mul_(d)  # dout (alpha + keep gate)
            gx.addcmul_(work, scale)
            if ctx.batch_stats:
                sum_work += work.sum(0)
                sum_work_x += work.mul_(xb).sum(0)
        grad_alpha = sum_dout_x - sum_dout_x_gate
        if ctx.batch_stats:
            # mean_n(d xhat) and mean_n(d xhat xhat), xhat = x rstd + shift, enter every
            # row: - rstd (mean_d + xhat mean_dx) == x c1 + c0, added once the sums are known.
            n = x.shape[0]
            mean_d = keep * sum_work / n
            mean_dx = keep * (rstd * sum_work_x + shift * sum_work) / n
            c1 = -rstd * rstd * mean_dx
            c0 = -rstd * (mean_d + shift * mean_dx)
            for block in blocks:
                grad_x[block].addcmul_(x[block], c1).add_(c0)
        return grad_x, grad_alpha, None, None, None, None, None


def _activation(name: str, width: int) -> nn.Module:
    if name == "dice":
        return Dice(width)
    if name == "prelu":
        return nn.PReLU(width)
    if name == "relu":
        return nn.ReLU()
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}.")


def _mlp(
    in_features: int,
    units: Sequence[int],
    activation: str,
    dropout: float = 0.0,
    batch_norm: bool = False,
) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in units:
        layers.append(nn.Linear(in_features, width))
        if batch_norm:
            layers.append(nn.BatchNorm1d(width))
        layers.append(_activation(activation, width))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        in_features = width
    return nn.Sequential(*layers)


class AttentionScorer(nn.Module):
    """How the network weighs each history position against its candidate: the hook.

    A scorer is built by the network as ``cls(dim, units=..., activation=...,
    context_dim=...)`` (``dim``: width of the candidate's embedding; ``context_dim``:
    of each behaviour's context features; ``units`` and ``activation``: the
    classifier's ``attention_units`` and ``activation``, for scorers that have an MLP)
    and implements :meth:`forward`. The network then normalises the scores as
    ``attention_normalization`` says (``softmax`` over each row's real positions,
    ``mean``, or None: raw), unless the scorer fixes its own ``normalization``, and pools
    the history with them. Padding positions are never scored.

    Built in: :class:`LocalActivationUnit` (the paper's, ``"local_activation"``),
    :class:`DotProductScorer` (``"dot"``), and :class:`SumPooling` and
    :class:`MeanPooling` (``pooling="sum"`` and ``"mean"``: the paper's base model).

    Examples
    --------
    A scorer that prefers recent behaviours (its keys' context part holds the
    recency embedding; ignored here) is a few lines:

    >>> import torch
    >>> from sklearn_din import AttentionScorer, DeepInterestNetwork
    >>> class CosineScorer(AttentionScorer):
    ...     def __init__(self, dim, context_dim=0, **_):
    ...         super().__init__()
    ...         self.dim = dim
    ...     def forward(self, query, keys, rows):
    ...         return torch.cosine_similarity(query.index_select(0, rows),
    ...                                        keys[:, : self.dim], dim=1)
    >>> net = DeepInterestNetwork([10, 5], attention_scorer=CosineScorer)
    >>> logits = net(torch.tensor([[3, 2]]), torch.tensor([[[5, 6], [2, 3]]]),
    ...              torch.tensor([2]), torch.zeros(1, 0, dtype=torch.long), torch.zeros(1, 0))
    >>> logits.shape
    torch.Size([1])
    """

    #: A fixed normalisation (None or "mean") that replaces the network's
    #: ``attention_normalization``; ``"network"`` (the default) uses the network's.
    normalization: str | None = "network"

    def forward(self, query: torch.Tensor, keys: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Scores of ``keys`` (N, dim + context_dim: item features, then context
        features), whose candidates are ``query[rows]`` (query: (B, dim)); shape (N,)."""
        raise NotImplementedError

    def score_shared(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """Scores of every key (L, dim + context_dim) against every candidate (C, dim),
        shape (C, L): one visitor's request. By default :meth:`forward` over the C x L
        pairs; a scorer may do the keys' own work once per position instead."""
        n_candidates, n_keys = query.shape[0], keys.shape[0]
        rows = torch.arange(n_candidates, device=query.device).repeat_interleave(n_keys)
        return self(query, keys.repeat(n_candidates, 1), rows).view(n_candidates, n_keys)


class DotProductScorer(AttentionScorer):
    """Scaled dot product of the candidate's and the behaviour's item embeddings,
    ``q . k / sqrt(dim)`` (no weights of its own; context features are not scored)."""

    def __init__(self, dim: int, context_dim: int = 0, **_: object) -> None:
        super().__init__()
        self.dim = dim
        self.context_dim = context_dim

    def forward(self, query: torch.Tensor, keys: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        q = query.index_select(0, rows)
        return (q * keys[:, : self.dim]).sum(dim=1) * self.dim ** -0.5

    def score_shared(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return query @ keys[:, : self.dim].T * self.dim ** -0.5


class SumPooling(AttentionScorer):
    """Every real position weighs 1: the history's embeddings summed (the base model)."""

    normalization = None

    def __init__(self, dim: int = 0, context_dim: int = 0, **_: object) -> None:
        super().__init__()

    def forward(self, query: torch.Tensor, keys: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return keys.new_ones(keys.shape[0])

    def score_shared(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return keys.new_ones((query.shape[0], keys.shape[0]))


class MeanPooling(SumPooling):
    """Every real position weighs 1 / the history's length: the embeddings averaged."""

    normalization = "mean"


class LocalActivationUnit(AttentionScorer):
    """Scores each history position against the candidate (DIN paper, Fig. 2).

    Mathematically an MLP over ``[q, k, q - k, q * k, c]`` followed by a linear
    score, ``c`` being the behaviour's context features (none by default). Its first
    layer is evaluated as ``(W_q + W_d) q + (W_k - W_d) k + W_c c + W_p (q * k)``:
    the candidate's part once per row instead of once per position, and nothing at
    all for padding positions, which are never scored.
    """

    def __init__(
        self, dim: int, units: Sequence[int], activation: str, context_dim: int = 0
    ) -> None:
        super().__init__()
        units = tuple(units)
        if not units:
            raise ValueError("attention_units must have at least one layer.")
        self.dim = dim
        self.context_dim = context_dim
        self.first = nn.Linear(4 * dim + context_dim, units[0])
        self.first_activation = _activation(activation, units[0])
        self.rest = _mlp(units[0], units[1:], activation)
        self.score = nn.Linear(units[-1], 1)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Scores of ``keys`` (N, dim + context_dim), whose candidates are ``query[rows]``.

        ``keys`` holds each behaviour's item features, then its context features; the
        result has shape (N,).
        """
        dim = self.dim
        w_q, w_k, w_d, w_p, w_c = self.first.weight.split([dim] * 4 + [self.context_dim], dim=1)
        per_row = nn.functional.linear(query, w_q + w_d, self.first.bias)
        per_pair_weight = torch.cat([w_k - w_d, w_c, w_p], dim=1)  # keys, then the product
        # At inference on the CPU: one compiled pass over tiles of pairs.
        scores = pair_mlp_scores(self, self.first_activation, self.rest, self.score, query,
                                 per_row, keys, rows, per_pair_weight)
        if scores is not None:
            return scores
        # index_select, not query[rows]: on CPU advanced indexing is ~5x slower forward and
        # its backward is an accumulating index_put instead of an index_add.
        q = query.index_select(0, rows)
        per_pair = torch.cat([keys, q * keys[:, :dim]], dim=1)
        # The rows' part is added inside the matrix product, in place: the gathered rows are
        # a fresh tensor, which out-of-place addmm would first copy into its result (1.1-1.3x
        # this layer's forward and backward, the same bits). Autocast casts only
        # out-of-place ops, so under it the dtypes may differ: addmm then.
        gathered = per_row.index_select(0, rows)
        if torch.is_autocast_enabled(gathered.device.type):
            pre_activation = torch.addmm(gathered, per_pair, per_pair_weight.T)
        else:
            pre_activation = gathered.addmm_(per_pair, per_pair_weight.T)
        return mlp_scores(self, self.first_activation, self.rest, self.score, pre_activation)

    # (candidate, position) pairs scored per block by score_shared; None: one block, which
    # a traced graph (export_onnx's shared-history graph) needs, since a loop over blocks
    # would fix the number of candidates.
    block_pairs: int | None = 2048

    def score_shared(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """Scores of every key (L, dim + context_dim) against every candidate (C, dim).

        The same function as :meth:`forward` over the C x L pairs, for candidates that
        share one history (one visitor's request): the keys' part of the first layer is
        computed once per position, and the candidates' part, product term included,
        as one matrix product over all positions, so no (C, L, dim) tensor is built.
        Candidates go through in blocks of about ``block_pairs`` (candidate, position)
        pairs (the attribute), so that each block's activations stay in the CPU's cache
        between the layers (a third faster than one block of 200 x 50 pairs). Returns
        shape (C, L).
        """
        n_candidates, n_keys, dim = query.shape[0], keys.shape[0], self.dim
        w_q, w_k, w_d, w_p, w_c = self.first.weight.split([dim] * 4 + [self.context_dim], dim=1)
        # The keys' own part, context features included: once per position.
        per_key = torch.addmm(self.first.bias, keys, torch.cat([w_k - w_d, w_c], dim=1).T)
        w_query = w_q + w_d
        # At inference on the CPU: one compiled pass over (candidates, position) tiles.
        scores = shared_mlp_scores(self, self.first_activation, self.rest, self.score, query,
                                   per_key, keys[:, :dim], w_query, w_p)
        if scores is not None:
            return scores
        per_key = per_key.reshape(1, -1)  # (1, L * U)
        # (W_q + W_d) q + W_p (q * k) == M_k q with M_k = W_q + W_d + W_p diag(k): the
        # candidate's whole part of position k's first layer is one product with M_k.
        mixed = torch.addcmul(w_query, keys[:, None, :dim], w_p[None])  # (L, U, dim)
        mixed = mixed.reshape(-1, dim).T
        block_pairs = self.block_pairs
        if block_pairs is None or n_candidates * n_keys <= block_pairs:
            return self._score_block(query, per_key, mixed, n_keys)
        scores = query.new_empty((n_candidates, n_keys))
        step = max(1, block_pairs // max(n_keys, 1))
        for start in range(0, n_candidates, step):
            scores[start : start + step] = self._score_block(
                query[start : start + step], per_key, mixed, n_keys)
        return scores

    def _score_block(self, query: torch.Tensor, per_key: torch.Tensor, mixed: torch.Tensor,
                     n_keys: int) -> torch.Tensor:
        """score_shared's scores (c, L) of one block of c candidates."""
        pre_activation = torch.addmm(per_key, query, mixed)  # (c, L * U)
        return mlp_scores(self, self.first_activation, self.rest, self.score,
                          pre_activation.view(query.shape[0] * n_keys, -1)
                          ).view(query.shape[0], n_keys)


class DeepInterestNetwork(nn.Module):
    """Deep Interest Network (Zhou et al., KDD 2018) over integer id tensors.

    Parameters
    ----------
    history_vocab_sizes : sequence of int
        Table size of each history feature (item first, then its attributes),
        shared by the candidate and the history. Id 0 is padding, 1 unknown.
    sparse_vocab_sizes : sequence of int, default=()
        Table sizes of the other categorical inputs (user first, if any).
    context_vocab_sizes : sequence of int, default=()
        Table sizes of the history's context features (ids after the shared
        features in ``history``): features of a behaviour that a candidate does not
        have, such as its recency bucket. They enter the attention's input and the
        pooled history.
    n_dense : int, default=0
        Number of numeric inputs.
    dense_mean, dense_scale : sequence of float or None, default=None
        Given together, one value per numeric input: the MLP reads
        ``(dense - dense_mean) / dense_scale`` (buffers, saved with the weights and part
        of every exported graph), so raw numeric columns need no scaler in front.
    embed_dim : int, default=8
        Width of every embedding.
    attention_units : sequence of int, default=(80, 40)
        Hidden layers of the local activation unit.
    hidden_units : sequence of int, default=(200, 80)
        Hidden layers of the output MLP.
    activation : {"dice", "prelu", "relu"}, default="dice"
        Activation of both MLPs.
    attention_normalization : {None, "softmax", "mean"}, default=None
        None keeps the raw scores as weights (the paper); "softmax" normalises
        them over each row's real history positions (the official code); "mean"
        divides the raw scores by the history's length, so that all-equal scores
        give mean pooling as raw scores give sum pooling.
    pooling : {"attention", "sum", "mean"}, default="attention"
        "sum" and "mean" pool the history without attention: the paper's base model
        (the :class:`SumPooling` and :class:`MeanPooling` scorers).
    attention_scorer : {"local_activation", "dot"} or AttentionScorer class, \
            default="local_activation"
        What scores each history position against its candidate when
        ``pooling="attention"``: the paper's :class:`LocalActivationUnit`, a
        :class:`DotProductScorer`, or a class of your own (see :class:`AttentionScorer`).
    dropout : float, default=0.0
        Dropout after each hidden layer of the output MLP.
    batch_norm : bool, default=False
        Batch normalisation before each activation of the output MLP.
    pooled_product : bool, default=False
        Also feed the output MLP the element-wise product of the candidate's
        embedding and the pooled history's item features, as the DIN of the DIEN
        authors' code does: their agreement then reaches the MLP directly instead of
        being learnt from the two vectors apart.
    id_frequencies : sequence of array-like or None, default=None
        How often each id occurs in the training data, one array per table (history
        tables, then sparse tables); used by :meth:`embedding_penalty`.
    sparse_gradients : bool, default=False
        Give the embedding tables sparse gradients (only the rows a batch looks up),
        for optimizers such as ``torch.optim.SparseAdam``.
    attention_embedding_gradient : float, default=1.0
        Share of the attention scorer's gradient that training passes back into the
        embeddings the scorer reads (the candidate's and the history's). 1 is plain
        backpropagation; 0 lets the embeddings learn only from what the output MLP reads
        (the candidate and the pooled history), as pooling's embeddings do, while the
        scorer still learns from them. The forward pass, and so every prediction, is
        the same whatever the value.
    attention_length_scale : bool, default=False
        Multiply the attention scores of a row with L behaviours by a learnt
        ``exp(length_log_scale[b])``, ``b`` the bucket of L (1, 2-3, 4-7, 8-15, 16-31
        and 32+ behaviours; each starts at 1). With softmax a bucket's scale going down
        flattens its weights towards mean pooling, going up focuses them on the
        best-scored behaviours: short histories are best averaged, long ones picked
        from. Only with ``pooling="attention"``.
    attention_position : bool, default=False
        Give the attention's scorer each behaviour's place in the history: the k-th most
        recent (k = 1, 2, ...) gets the learnt embedding of its bucket (1, 2-3, 4-7,
        ..., 32-63, 64+), added to the embedding of its first context feature (the
        time gap, ``hist_gap``), or read as a context feature of its own where there is
        none (the scorer's ``context_dim`` then grows by ``embed_dim``). Only the scores
        see it: the pooled history is that of the behaviours alone. The scorer can then
        tell the 3rd most recent behaviour from the 30th where both fall in one time-gap
        bucket (a burst of ratings). Only with ``pooling="attention"``.
    attention_sink : bool or "auto", default=False
        Give the softmax a learnt null behaviour whose value is zero (an attention
        sink): a row's weights are ``exp(s_i) / (exp(b) + sum_j exp(s_j))``, ``b`` a
        learnt logit starting at 0, so they sum to less than 1 where the history as a
        whole supports the candidate little, which sum pooling can express and plain
        softmax cannot. True needs the scores to get softmax (a ValueError otherwise);
        "auto" adds the sink where they do and nothing where they do not (raw scores,
        a scorer that fixes its own normalisation). No effect on sum or mean pooling.
    behaviour_dropout : float, default=0.0
        In training only, drop each real history position with this probability, for
        every row and batch anew (the kept ones keep their order and their context
        features, and the row's length shrinks): the pooled history learns not to
        hang on any one behaviour. Predictions, in ``eval()`` mode, read the whole
        history. Applies to attention and to sum and mean pooling alike.

    Examples
    --------
    >>> import torch
    >>> from sklearn_din import DeepInterestNetwork
    >>> net = DeepInterestNetwork([10, 5], sparse_vocab_sizes=[7], n_dense=1)
    >>> candidate = torch.tensor([[3, 2], [4, 2]])            # item, category
    >>> history = torch.tensor([[[5, 6, 0], [2, 3, 0]],       # (rows, features, positions)
    ...                         [[7, 0, 0], [4, 0, 0]]])
    >>> logits = net(candidate, history, torch.tensor([2, 1]),  # history lengths
    ...              torch.tensor([[2], [3]]), torch.tensor([[0.5], [1.0]]))
    >>> logits.shape
    torch.Size([2])
    """

    def __init__(
        self,
        history_vocab_sizes: Sequence[int],
        sparse_vocab_sizes: Sequence[int] = (),
        n_dense: int = 0,
        *,
        context_vocab_sizes: Sequence[int] = (),
        embed_dim: int = 8,
        attention_units: Sequence[int] = (80, 40),
        hidden_units: Sequence[int] = (200, 80),
        activation: str = "dice",
        attention_normalization: str | None = None,
        pooling: str = "attention",
        dropout: float = 0.0,
        batch_norm: bool = False,
        id_frequencies: Sequence[Sequence[int]] | None = None,
        sparse_gradients: bool = False,
        pooled_product: bool = False,
        attention_scorer: str | type = "local_activation",
        attention_length_scale: bool = False,
        attention_embedding_gradient: float = 1.0,
        behaviour_dropout: float = 0.0,
        attention_sink: bool | str = False,
        attention_position: bool = False,
        dense_mean: Sequence[float] | None = None,
        dense_scale: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}.")
        if attention_normalization not in ATTENTION_NORMALIZATIONS:
            raise ValueError(
                f"attention_normalization must be one of {ATTENTION_NORMALIZATIONS}, "
                f"got {attention_normalization!r}."
            )
        if not 0.0 <= attention_embedding_gradient <= 1.0:
            raise ValueError("attention_embedding_gradient must be in [0, 1], got "
                             f"{attention_embedding_gradient!r}.")
        if not 0.0 <= behaviour_dropout < 1.0:
            raise ValueError(f"behaviour_dropout must be in [0, 1), got {behaviour_dropout!r}.")
        self.pooling = pooling
        self.behaviour_dropout = float(behaviour_dropout)
        self.pooled_product = pooled_product
        self.attention_embedding_gradient = float(attention_embedding_gradient)
        self.attention_normalization = attention_normalization
        self.history_embeddings = nn.ModuleList(
            nn.Embedding(n, embed_dim, padding_idx=0, sparse=sparse_gradients)
            for n in history_vocab_sizes
        )
        self.context_embeddings = nn.ModuleList(
            nn.Embedding(n, embed_dim, padding_idx=0, sparse=sparse_gradients)
            for n in context_vocab_sizes
        )
        # The tables of the ``sparse`` input (the other id columns), whatever the gradient
        # (DINClassifier's sparse_embeddings, a bool, is about sparse gradients): the name
        # stays, since it is in the weights' keys of every saved model.
        self.sparse_embeddings = nn.ModuleList(
            nn.Embedding(n, embed_dim, padding_idx=0, sparse=sparse_gradients)
            for n in sparse_vocab_sizes
        )
        if context_vocab_sizes and not history_vocab_sizes:
            raise ValueError("context features need history features to belong to.")
        item_dim = embed_dim * len(history_vocab_sizes)
        context_dim = embed_dim * len(context_vocab_sizes)
        scorer = scorer_class(attention_scorer)  # checked whatever the pooling
        scores_positions = bool(attention_position) and pooling == "attention" and item_dim
        # With context features the position joins the first one's embedding (a sum, as a
        # transformer adds positions to tokens); without, it is a context slot of its own.
        position_slot = scores_positions and not context_vocab_sizes
        # None with sum or mean pooling: _scorer() gives the pooling's scorer then.
        self.attention = (
            scorer(item_dim, units=attention_units, activation=activation,
                   context_dim=context_dim + (embed_dim if position_slot else 0))
            if pooling == "attention" and item_dim
            else None
        )
        # A parameter only where it scales something: sum and mean pooling have no scores.
        self.length_log_scale = (
            nn.Parameter(torch.zeros(len(LENGTH_BUCKET_STARTS) + 1))
            if attention_length_scale and self.attention is not None
            else None
        )
        # The sink's logit; a parameter only where there is a softmax to add it to. The
        # normalisation is the one the scores get (_scorer: a scorer may fix its own).
        # "auto": a sink wherever there is that softmax, none elsewhere; True insists.
        if attention_sink not in (True, False, "auto"):
            raise ValueError("attention_sink must be True, False or 'auto', got "
                             f"{attention_sink!r}.")
        self.sink_logit = None
        if attention_sink and self.attention is not None:
            normalization = self._scorer()[1]
            if normalization == "softmax":
                self.sink_logit = nn.Parameter(torch.zeros(()))
            elif attention_sink is True:
                raise ValueError("attention_sink=True needs softmax attention; this scorer's "
                                 f"scores get normalization {normalization!r}.")
        # On the network's device without a copy per batch; not state: no saved weight.
        self.register_buffer("length_bucket_starts", torch.tensor(LENGTH_BUCKET_STARTS),
                             persistent=False)
        self.register_buffer("position_bucket_starts", torch.tensor(POSITION_BUCKET_STARTS),
                             persistent=False)
        self.standardizes_dense = dense_mean is not None or dense_scale is not None
        if self.standardizes_dense:
            mean = torch.as_tensor(dense_mean, dtype=torch.float32).reshape(-1)
            scale = torch.as_tensor(dense_scale, dtype=torch.float32).reshape(-1)
            if mean.shape != (n_dense,) or scale.shape != (n_dense,):
                raise ValueError(f"dense_mean and dense_scale need one value per numeric input "
                                 f"({n_dense}); got {tuple(mean.shape)} and "
                                 f"{tuple(scale.shape)}.")
            if not (torch.isfinite(mean).all() and torch.isfinite(scale).all()
                    and (scale > 0).all()):
                raise ValueError("dense_mean must be finite and dense_scale finite and "
                                 "positive.")
            self.register_buffer("dense_mean", mean)
            self.register_buffer("dense_scale", scale)
        in_features = ((3 if pooled_product else 2) * item_dim + context_dim
                       + embed_dim * len(sparse_vocab_sizes)
                       + n_dense)
        if in_features == 0:
            raise ValueError("the network has no input: give it ids or dense features.")
        self.mlp = _mlp(in_features, hidden_units, activation, dropout, batch_norm)
        self.output = nn.Linear(hidden_units[-1] if hidden_units else in_features, 1)
        self.reset_embeddings()
        tables = self.embedding_tables()
        if id_frequencies is not None and len(id_frequencies) != len(tables):
            raise ValueError(f"id_frequencies needs one array per table ({len(tables)}).")
        for t, table in enumerate(tables):
            counts = torch.ones(table.num_embeddings)
            if id_frequencies is not None:
                counts = torch.as_tensor(id_frequencies[t], dtype=torch.float32)
                if counts.shape != (table.num_embeddings,):
                    raise ValueError(
                        f"id_frequencies[{t}] has shape {tuple(counts.shape)}, "
                        f"expected ({table.num_embeddings},)."
                    )
            self.register_buffer(f"inverse_frequency_{t}", 1.0 / counts.clamp(min=1.0))
        # Not an id table (no penalty, no sparse gradient): a parameter of the scorer's
        # input. Made last, so that the other weights draw the same initial values with it
        # as without it.
        self.position_embedding = None
        if scores_positions:
            self.position_embedding = nn.Embedding(len(POSITION_BUCKET_STARTS) + 2, embed_dim)
            nn.init.normal_(self.position_embedding.weight, std=0.05)

    def embedding_tables(self) -> list[nn.Embedding]:
        """Every embedding table: the shared features' (item first), the context
        features', then the other ids'."""
        return [*self.history_embeddings, *self.context_embeddings, *self.sparse_embeddings]

    def reset_embeddings(self, std: float = 0.05) -> None:
        """Small normal initialisation: large enough to learn fast, small enough that a
        50-item sum-pooled history does not saturate the MLP at the start."""
        for table in self.embedding_tables():
            nn.init.normal_(table.weight, std=std)
            with torch.no_grad():
                table.weight[0].zero_()

    def _embed_features(self, ids: torch.Tensor) -> torch.Tensor:
        """(..., F) or (..., F + G) ids -> their concatenated embeddings."""
        tables = self.embedding_tables()[: ids.shape[-1]]  # history tables come first
        return torch.cat([_lookup(t, ids[..., f]) for f, t in enumerate(tables)], dim=-1)

    def attend(
        self, candidate: torch.Tensor, history: torch.Tensor, history_length: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pool the history for each row.

        Returns the candidate embedding (B, D), the pooled history (B, D + C: item
        features, then context features) and the weight of each history position
        (B, L'), L' = the longest history in the batch; padding positions weigh
        exactly 0.
        """
        query = self._embed_features(candidate)
        n_rows, n_features, max_len = history.shape
        length = history_length.clamp(0, max_len)
        longest = int(length.max()) if n_rows else 0
        positions = torch.arange(longest, device=history.device)
        valid = positions < length[:, None]  # (B, L')
        rows, cols = valid.nonzero(as_tuple=True)
        # Real positions as flat indices into (B * L'): every gather and scatter below is
        # then an index_select / index_copy, the fast kernels (see LocalActivationUnit).
        flat = rows * longest + cols
        by_position = history[:, :, :longest].transpose(1, 2).reshape(-1, n_features)
        # Only real positions are embedded and scored: padding costs nothing.
        keys = self._embed_features(by_position.index_select(0, flat))  # (N, D)
        scorer, normalization = self._scorer()
        share = self.attention_embedding_gradient
        # float32 even under autocast: the pooling below accumulates in the keys' dtype.
        scores = scorer(_scaled_gradient(query, share),
                        self._scored_keys(_scaled_gradient(keys, share), cols, longest),
                        rows).to(keys.dtype)
        if self.length_log_scale is not None:
            scores = scores * self.length_scales(length).index_select(0, rows)
        if normalization == "mean":
            scores = scores / length.index_select(0, rows).to(keys.dtype)
        cells = torch.zeros(n_rows * longest, device=keys.device, dtype=keys.dtype)
        if normalization == "softmax":
            logits = torch.full_like(cells, float("-inf")).index_copy(0, flat, scores)
            # Rows without history have no finite logit: their weights stay 0, not NaN.
            weights = self._softmax(logits.view(n_rows, longest)).nan_to_num(0.0)
            scores = weights.view(-1).index_select(0, flat)
        else:
            weights = cells.index_copy(0, flat, scores).view(n_rows, longest)
        pooled = keys.new_zeros(n_rows, keys.shape[1]).index_add(0, rows, keys * scores[:, None])
        return query, pooled, weights

    def _scored_keys(self, keys: torch.Tensor, positions: torch.Tensor,
                     n_positions: int) -> torch.Tensor:
        """What the scorer reads of each behaviour: ``keys`` (N, D + C); with
        ``attention_position`` the embedding of its position's bucket added to its first
        context feature's (``positions``: 0 for the most recent behaviour), or after the
        keys where there is no context feature. ``n_positions``: one more than the largest
        position (a shape, so that a traced graph reads it at run time)."""
        if self.position_embedding is None:
            return keys
        # One embedding per position up to the longest (comparisons, as length_scales: exact
        # for every position, and plain ONNX ops), then one gather per key: a pass over
        # (N, 6) comparisons and an embedding lookup per key cost more.
        span = torch.arange(1, n_positions + 1, device=positions.device)
        bucket = 1 + (span[:, None] >= self.position_bucket_starts).sum(dim=1)
        position = self.position_embedding(bucket).to(keys.dtype).index_select(0, positions)
        start = len(self.history_embeddings) * self.position_embedding.embedding_dim
        if not len(self.context_embeddings):
            return torch.cat([keys, position], dim=1)
        scored = keys.clone()
        scored[:, start : start + position.shape[1]] += position
        return scored

    def _softmax(self, logits: torch.Tensor) -> torch.Tensor:
        """Softmax over each row's positions (B, L); with an attention sink, over the
        sink's logit and them, the sink's own weight dropped (its value is zero)."""
        if self.sink_logit is None:
            return torch.softmax(logits, dim=1)
        sink = self.sink_logit.to(logits.dtype).expand(logits.shape[0], 1)
        return torch.softmax(torch.cat([sink, logits], dim=1), dim=1)[:, 1:]

    def length_scales(self, history_length: torch.Tensor) -> torch.Tensor:
        """The factor each row's attention scores are multiplied by, shape (B,): 1 for
        every row unless the network was built with ``attention_length_scale=True``."""
        if self.length_log_scale is None:
            return torch.ones(history_length.shape, device=history_length.device)
        # Comparisons, not floor(log2 L): exact for every length, and plain ONNX ops.
        bucket = (history_length[:, None] >= self.length_bucket_starts).sum(dim=1)
        return self.length_log_scale.exp().index_select(0, bucket)

    def _scorer(self) -> tuple[nn.Module, str | None]:
        """The attention's scorer and the normalisation its scores get.

        A network without a scorer of its own (``attention`` is None: sum or mean
        pooling, or a subclass that switched it off) pools by ``pooling``.
        """
        scorer = self.attention if self.attention is not None else _POOLING_SCORERS[
            self.pooling]
        fixed = getattr(scorer, "normalization", "network")
        return scorer, self.attention_normalization if fixed == "network" else fixed

    def embedding_penalty(
        self,
        candidate: torch.Tensor,
        history: torch.Tensor,
        history_length: torch.Tensor,
        sparse: torch.Tensor,
        dense: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mini-batch aware L2 penalty of the DIN paper (Eqs. 4-6).

        ``0.5 * sum_j ||w_j||^2 / n_j`` over the ids ``j`` present in this batch
        (padding excluded) of every embedding table, ``n_j`` being the id's
        frequency in the training data: its gradient moves only the rows the batch
        uses, each by ``w_j / n_j``, as in the paper's update (Eq. 6). ``dense`` is
        not read (numeric features have no embedding rows): it is accepted so that the
        forward pass's inputs can be passed as they are, ``embedding_penalty(**inputs)``.
        """
        max_len = history.shape[2]
        valid = torch.arange(max_len, device=history.device) < history_length[:, None]
        # Positions past a row's length read as padding (id 0), which is never penalised.
        history = torch.where(valid[:, None, :], history, 0)
        n_shared = len(self.history_embeddings)
        used = [(candidate[:, f], history[:, f, :]) for f in range(n_shared)]
        used += [(history[:, n_shared + g, :],) for g in range(len(self.context_embeddings))]
        used += [(sparse[:, j],) for j in range(len(self.sparse_embeddings))]
        tables = self.embedding_tables()
        total = torch.zeros((), device=candidate.device)
        for t, (table, ids) in enumerate(zip(tables, used, strict=True)):
            ids = _distinct_ids(ids, table.num_embeddings)
            inverse = getattr(self, f"inverse_frequency_{t}")[ids]
            # Looked up like the inputs, so that sparse tables get a sparse gradient here too.
            rows = nn.functional.embedding(ids, table.weight, sparse=table.sparse)
            total = total + (rows.pow(2).sum(dim=1) * inverse).sum()
        return 0.5 * total

    def forward(
        self,
        candidate: torch.Tensor,
        history: torch.Tensor,
        history_length: torch.Tensor,
        sparse: torch.Tensor,
        dense: torch.Tensor,
    ) -> torch.Tensor:
        """One logit per row, shape (B,)."""
        parts = []
        if self.training and self.behaviour_dropout > 0:
            history, history_length = drop_behaviours(history, history_length,
                                                      self.behaviour_dropout)
        if len(self.history_embeddings):
            query, pooled, _ = self.attend(candidate, history, history_length)
            parts += self._history_parts(query, pooled)
        return self._logits(parts, sparse, dense)

    def _history_parts(self, query: torch.Tensor, pooled: torch.Tensor) -> list[torch.Tensor]:
        """What the MLP reads of the candidate and its pooled history."""
        if not self.pooled_product:
            return [query, pooled]
        return [query, pooled, query * pooled[:, : query.shape[1]]]

    def _logits(
        self, parts: list[torch.Tensor], sparse: torch.Tensor, dense: torch.Tensor
    ) -> torch.Tensor:
        """The output MLP over the pooled parts, the other embeddings and the dense inputs."""
        parts = [*parts, *(_lookup(t, sparse[:, j]) for j, t in enumerate(self.sparse_embeddings))]
        if dense.shape[1]:
            if self.standardizes_dense:
                dense = (dense - self.dense_mean) / self.dense_scale
            parts.append(dense)
        return mlp_scores(self, None, self.mlp, self.output, torch.cat(parts, dim=1))

    # ------------------------------------------------------------- serving paths
    def forward_masked(
        self,
        candidate: torch.Tensor,
        history: torch.Tensor,
        history_length: torch.Tensor,
        sparse: torch.Tensor,
        dense: torch.Tensor,
    ) -> torch.Tensor:
        """:meth:`forward` with a mask instead of a trim: shapes never depend on values.

        Every history position is embedded and scored and padding is masked out
        afterwards, so the graph traces with :func:`torch.export.export` and exports to
        ONNX with dynamic batch and history length. Costs the padding's work that
        :meth:`forward` skips: training and ``predict_proba`` keep :meth:`forward`.
        Padding ids are never looked up (masked to 0 first), so whatever the padding
        positions hold cannot change a logit.
        """
        parts = []
        if len(self.history_embeddings):
            n_rows, _, max_len = history.shape
            length = history_length.clamp(0, max_len)
            valid = torch.arange(max_len, device=history.device)[None, :] < length[:, None]
            by_position = history.transpose(1, 2).masked_fill(~valid[:, :, None], 0)
            query = self._embed_features(candidate)
            keys = self._embed_features(by_position)  # (B, L, D)
            scorer, normalization = self._scorer()
            rows = torch.arange(n_rows, device=history.device)[:, None].expand(n_rows, max_len)
            rows = rows.reshape(-1)
            positions = torch.arange(max_len, device=history.device)[None, :].expand(
                n_rows, max_len).reshape(-1)
            scores = scorer(query, self._scored_keys(keys.reshape(n_rows * max_len, -1),
                                                     positions, max_len), rows)
            scores = scores.to(keys.dtype).view(n_rows, max_len)
            if self.length_log_scale is not None:
                scores = scores * self.length_scales(length)[:, None]
            if normalization == "mean":
                scores = scores / length.clamp(min=1)[:, None].to(keys.dtype)
            if normalization == "softmax":
                # A row without history softmaxes only -inf (NaN): where() drops it.
                scores = self._softmax(scores.masked_fill(~valid, float("-inf")))
            weights = torch.where(valid, scores, torch.zeros_like(scores))
            pooled = (weights[:, :, None] * keys).sum(dim=1)
            parts += self._history_parts(query, pooled)
        return self._logits(parts, sparse, dense)

    def forward_shared_history(
        self,
        candidate: torch.Tensor,
        history: torch.Tensor,
        sparse: torch.Tensor,
        dense: torch.Tensor,
    ) -> torch.Tensor:
        """Logits of C candidates that share one history: one visitor's request.

        Parameters
        ----------
        candidate : tensor of shape (C, F)
        history : tensor of shape (F + G, L)
            The real positions only (most recent first, no padding), shared features
            then context features, as in :meth:`forward`; L may be 0.
        sparse : tensor of shape (C, S)
        dense : tensor of shape (C, D)

        Returns
        -------
        logits : tensor of shape (C,)
            What :meth:`forward` gives the C rows with this history repeated in each.
            The history is embedded once, and the attention's key-only work done once
            per position instead of once per (candidate, position).
        """
        parts = []
        if len(self.history_embeddings):
            query = self._embed_features(candidate)
            keys = self._embed_features(history.T)  # (L, D + context)
            # shape[0], not len(): len() fixes the size in a traced graph (export).
            n_keys = keys.shape[0]
            if n_keys == 0:
                pooled = keys.new_zeros((query.shape[0], keys.shape[1]))
            else:
                scorer, normalization = self._scorer()
                positions = torch.arange(n_keys, device=keys.device)
                weights = scorer.score_shared(
                    query, self._scored_keys(keys, positions, n_keys)).to(keys.dtype)
                if self.length_log_scale is not None:
                    # The length as a tensor made from the keys' shape: a traced graph
                    # (export) then reads it at run time instead of fixing it.
                    length = torch.arange(1, n_keys + 1, device=keys.device)[-1:]
                    weights = weights * self.length_scales(length)
                if normalization == "mean":
                    weights = weights / n_keys
                if normalization == "softmax":
                    weights = self._softmax(weights)
                pooled = weights @ keys
            parts += self._history_parts(query, pooled)
        return self._logits(parts, sparse, dense)


def _distinct_ids(parts: Sequence[torch.Tensor], table_size: int) -> torch.Tensor:
    """The distinct non-zero ids of ``parts`` (tensors of any shape), ascending.

    ``torch.cat(parts).unique()`` without 0. Where the table is small next to the ids
    (MBA's penalty: a batch's ids of a table of up to about four times as many rows), a
    presence mask over the table's rows gives the same ids 5-15x faster than ``unique``,
    which sorts them (the penalty's two sorts were 5% of a training step at the paper's
    sizes).
    """
    n_ids = sum(part.numel() for part in parts)
    if table_size <= 4 * n_ids:
        present = torch.zeros(table_size, dtype=torch.bool, device=parts[0].device)
        for part in parts:
            present.index_fill_(0, part.reshape(-1).long(), True)
        present[0] = False
        return present.nonzero().squeeze(1)
    ids = torch.cat([part.reshape(-1) for part in parts]).unique()
    return ids[ids != 0]


def _lookup(table: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
    """``table(ids)``, with a faster backward for tables of dense gradients.

    The same rows as ``nn.Embedding``'s forward. Its CPU backward sorts the ids to add
    their gradients up, 2-3x the time of ``index_select``'s ``index_add`` for the 16-40k
    ids of a batch's history; the padding row still gets no gradient, as
    ``padding_idx`` gives it, because the rows of padding ids are multiplied by 0 when
    training (their embedding is that zero row anyway). On the CPU only: on a GPU
    ``index_add`` adds with atomics, in no fixed order, and the embedding's backward is
    fast there.
    """
    if (table.sparse or table.max_norm is not None or table.padding_idx not in (None, 0)
            or table.weight.device.type != "cpu"):
        return table(ids)
    flat = ids.reshape(-1)
    rows = table.weight.index_select(0, flat)
    if table.padding_idx is not None and torch.is_grad_enabled() and table.weight.requires_grad:
        rows = rows * (flat != 0).unsqueeze(1).to(rows.dtype)
    return rows.view(*ids.shape, table.embedding_dim)


def drop_behaviours(
    history: torch.Tensor, history_length: torch.Tensor, rate: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each real position of each row's history dropped with probability ``rate``.

    Returns the history with the kept positions moved to the front, in their order and
    with every feature of theirs (the rest of a row is left as it was: positions past the
    new length are never read), and the new lengths. One draw per (row, position) of
    ``history``'s full width, from torch's generator.
    """
    max_len = history.shape[2]
    positions = torch.arange(max_len, device=history.device)
    valid = positions < history_length.clamp(0, max_len)[:, None]
    kept = valid & (torch.rand(valid.shape, device=history.device) >= rate)
    # A stable sort on "dropped" brings the kept positions first, in their order.
    order = torch.sort((~kept).to(torch.uint8), dim=1, stable=True).indices
    history = history.gather(2, order[:, None, :].expand_as(history))
    return history, kept.sum(dim=1).to(history_length.dtype)


def _scaled_gradient(x: torch.Tensor, share: float) -> torch.Tensor:
    """``x``'s values, with ``share`` of the gradient that reaches them passed back to ``x``.

    ``x - x.detach()`` is exactly 0, so the values are ``x``'s to the bit; only the
    gradient is scaled.
    """
    if share == 1.0 or not x.requires_grad:
        return x
    kept = x.detach()
    return kept if share == 0.0 else kept + share * (x - kept)


# The scorers of sum and mean pooling: no weights, shared by every network.
_POOLING_SCORERS = {"sum": SumPooling(), "mean": MeanPooling()}
_SCORERS = {"local_activation": LocalActivationUnit, "dot": DotProductScorer}


def scorer_class(scorer: str | type) -> type:
    """The class ``attention_scorer`` names: a built-in's name, or a scorer class."""
    if isinstance(scorer, str) and scorer in _SCORERS:
        return _SCORERS[scorer]
    if isinstance(scorer, type) and issubclass(scorer, nn.Module):
        return scorer
    raise ValueError(f"attention_scorer must be one of {SCORER_NAMES} or an AttentionScorer "
                     f"class, got {scorer!r}.")
