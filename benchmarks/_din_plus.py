"""Prototype (ablations only): DIN whose MLP also sees the mean-pooled history and the
candidate x pooled-history products, as the DIN of the DIEN authors' code feeds its MLP
([item, sum of history, item * sum of history, attention output])."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.utils import check_random_state
from skorch.callbacks import Callback

from sklearn_din import DeepInterestNetwork, DINClassifier
from sklearn_din._batching import TensorBatchIterator
from sklearn_din._network import _mlp, _scaled_gradient


def _dims(net: DeepInterestNetwork) -> tuple[int, int]:
    """Width of the candidate's item features, and of a pooled history (context included)."""
    width = net.history_embeddings[0].embedding_dim
    item_dim = len(net.history_embeddings) * width
    return item_dim, item_dim + len(net.context_embeddings) * width


def _widen_mlp(net: DeepInterestNetwork, extra: int) -> None:
    """Rebuild the output MLP with ``extra`` more inputs (same hidden units, activation)."""
    hidden = [m.out_features for m in net.mlp if isinstance(m, torch.nn.Linear)]
    act = "dice" if type(net.mlp[1]).__name__ == "Dice" else "prelu"
    net.mlp = _mlp(net.mlp[0].in_features + extra, hidden, act)


def _mean_pooled(net: DeepInterestNetwork, candidate, history, history_length):
    """The history mean-pooled by the same network (its attention switched off)."""
    pooling, attention = net.pooling, net.attention
    net.pooling, net.attention = "mean", None
    try:
        return net.attend(candidate, history, history_length)[1]
    finally:
        net.pooling, net.attention = pooling, attention


def _gathered(net, candidate, history, history_length):
    """What DeepInterestNetwork.attend gathers before scoring: the candidates' embeddings,
    the real history positions' embeddings and ids, each position's row and flat index
    into (rows x longest), the number of rows and the longest history."""
    n_rows, n_features, max_len = history.shape
    length = history_length.clamp(0, max_len)
    longest = int(length.max()) if n_rows else 0
    valid = torch.arange(longest, device=history.device) < length[:, None]
    rows, cols = valid.nonzero(as_tuple=True)
    flat = rows * longest + cols
    by_position = history[:, :, :longest].transpose(1, 2).reshape(-1, n_features)
    ids = by_position.index_select(0, flat)
    return (net._embed_features(candidate), net._embed_features(ids), ids, rows, flat, n_rows,
            longest)


class DINPlus(DeepInterestNetwork):
    """Used with ``pooled_product=False`` (the product is its own ``product``)."""

    def __init__(self, *args, plus_mean: bool = False, product: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.plus_mean, self.product = plus_mean, product
        item_dim, pooled_dim = _dims(self)
        _widen_mlp(self, (pooled_dim if plus_mean else 0)
                   + (item_dim * (1 + plus_mean) if product else 0))

    def forward(self, candidate, history, history_length, sparse, dense):
        query, pooled, _ = self.attend(candidate, history, history_length)
        parts = [query, pooled]
        d = query.shape[1]
        if self.plus_mean:
            mean = _mean_pooled(self, candidate, history, history_length)
            parts.append(mean)
        if self.product:
            parts.append(query * pooled[:, :d])
            if self.plus_mean:
                parts.append(query * mean[:, :d])
        parts += [t(sparse[:, j]) for j, t in enumerate(self.sparse_embeddings)]
        if dense.shape[1]:
            parts.append(dense)
        return self.output(self.mlp(torch.cat(parts, dim=1))).squeeze(1)


class DINMeanToo(DeepInterestNetwork):
    """DIN whose MLP reads the mean-pooled history (and its product with the candidate) next
    to the attention-pooled one: the pooled model's inputs are then a subset of DIN's."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        item_dim, pooled_dim = _dims(self)
        _widen_mlp(self, pooled_dim + (item_dim if self.pooled_product else 0))

    def forward(self, candidate, history, history_length, sparse, dense):
        query, pooled, _ = self.attend(candidate, history, history_length)
        mean = _mean_pooled(self, candidate, history, history_length)
        parts = self._history_parts(query, pooled) + self._history_parts(query, mean)[1:]
        return self._logits(parts, sparse, dense)


class DINHeads(DeepInterestNetwork):
    """DIN with ``heads`` softmax attention heads: the local activation unit scores each
    behaviour ``heads`` times (one output per head), each head pools the history with its
    own softmax, and the MLP reads every head's pooled vector (and product)."""

    def __init__(self, *args, heads: int = 2, **kwargs):
        super().__init__(*args, **kwargs)
        self.heads = heads
        if self.attention is None:
            return
        units = self.attention.score.in_features
        self.attention.score = torch.nn.Linear(units, heads)
        item_dim, pooled_dim = _dims(self)
        _widen_mlp(self, (heads - 1) * (pooled_dim + (item_dim if self.pooled_product else 0)))

    def attend(self, candidate, history, history_length):
        if self.attention is None:
            return super().attend(candidate, history, history_length)
        query, keys, ids, rows, flat, n_rows, longest = _gathered(self, candidate, history,
                                                                  history_length)
        scores = self.attention(query, keys, rows).reshape(len(rows), self.heads)
        logits = keys.new_full((n_rows * longest, self.heads), float("-inf"))
        logits = logits.index_copy(0, flat, scores)
        weights = torch.softmax(logits.view(n_rows, longest, self.heads), dim=1).nan_to_num(0.0)
        w = weights.view(-1, self.heads).index_select(0, flat)  # (N, H)
        pooled = keys.new_zeros(n_rows, self.heads, keys.shape[1]).index_add(
            0, rows, keys[:, None, :] * w[:, :, None])
        self._pooled_heads = pooled
        return query, pooled.reshape(n_rows, -1), weights.mean(2)

    def _history_parts(self, query, pooled):
        if self.attention is None:
            return super()._history_parts(query, pooled)
        heads = self._pooled_heads
        parts = [query, pooled]
        if self.pooled_product:
            d = query.shape[1]
            parts += [query * heads[:, h, :d] for h in range(self.heads)]
        return parts


class _ScaledScores(torch.nn.Module):
    """A scorer whose scores are multiplied by a learnt temperature ``exp(log_scale)``."""

    def __init__(self, scorer: torch.nn.Module, scale: float) -> None:
        super().__init__()
        self.scorer = scorer
        self.log_scale = torch.nn.Parameter(torch.tensor(float(scale)).log())

    def forward(self, query, keys, rows):
        return self.scorer(query, keys, rows) * self.log_scale.exp()


class DINSharp(DeepInterestNetwork):
    """DIN whose softmax attention has a learnt sharpness: the local activation unit's
    scores times ``exp(log_scale)``, a scalar starting at ``scale``. Adam moves a scalar
    in log space by about the learning rate per step, so the sharpness can change within
    an epoch, which the score layer's weights (small steps each) do slowly."""

    def __init__(self, *args, scale: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.scale = scale
        if self.attention is not None:
            self.attention = _ScaledScores(self.attention, scale)


class DINFromMean(DeepInterestNetwork):
    """DIN that starts as mean pooling: the local activation unit's last layer starts at
    zero, so every behaviour scores the same and the softmax weights are uniform until
    training finds scores that help (the earlier layers get gradients from the second
    step on)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.attention is not None:
            torch.nn.init.zeros_(self.attention.score.weight)
            torch.nn.init.zeros_(self.attention.score.bias)


class DINMatch(DeepInterestNetwork):
    """Softmax DIN with two target-aware signals that pooling cannot compute.

    ``intensity``: the MLP also reads ``log(1 + sum_i exp(s_i))`` over the row's real
    positions, the softmax's log-normaliser (0 without history). Softmax weights sum to 1,
    so they drop how strongly the history as a whole supports the candidate, which the
    paper keeps by not normalising; this scalar gives it back.
    ``match``: each shared feature (item, category, ...) adds a learnt bonus to a
    behaviour's score where its id equals the candidate's, an exact comparison that the
    scorer otherwise learns from the two embeddings.
    """

    def __init__(self, *args, intensity: bool = True, match: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.intensity, self.match = intensity, match
        if self.attention is None:
            return
        if match:
            self.match_bonus = torch.nn.Parameter(torch.zeros(len(self.history_embeddings)))
        if intensity:
            _widen_mlp(self, 1)

    def attend(self, candidate, history, history_length):
        if self.attention is None:
            return super().attend(candidate, history, history_length)
        query, keys, ids, rows, flat, n_rows, longest = _gathered(self, candidate, history,
                                                                  history_length)
        scores = self.attention(query, keys, rows).to(keys.dtype)
        if self.match:
            n_shared = len(self.history_embeddings)
            same = ids[:, :n_shared] == candidate.index_select(0, rows)[:, :n_shared]
            scores = scores + same.to(keys.dtype) @ self.match_bonus
        logits = keys.new_full((n_rows * longest,), float("-inf")).index_copy(0, flat, scores)
        logits = logits.view(n_rows, longest)
        weights = torch.softmax(logits, dim=1).nan_to_num(0.0)
        if self.intensity:
            self._intensity = torch.logsumexp(
                torch.cat([logits.new_zeros(n_rows, 1), logits], dim=1), dim=1)[:, None]
        w = weights.view(-1).index_select(0, flat)
        pooled = keys.new_zeros(n_rows, keys.shape[1]).index_add(0, rows, keys * w[:, None])
        return query, pooled, weights

    def _history_parts(self, query, pooled):
        parts = super()._history_parts(query, pooled)
        if self.attention is not None and self.intensity:
            parts.append(self._intensity)
        return parts


class _DetachedKeys(torch.nn.Module):
    """A scorer that reads the history's embeddings without sending its gradient back into
    them (the candidate's get it whole)."""

    def __init__(self, scorer: torch.nn.Module) -> None:
        super().__init__()
        self.scorer = scorer

    def forward(self, query, keys, rows):
        return self.scorer(query, _scaled_gradient(keys, 0.0), rows)


class DINDetachedKeys(DeepInterestNetwork):
    """DIN whose history embeddings learn only from what the MLP reads (the pooled
    history), as mean pooling's do, while the candidate's also learn from the attention
    scorer. Cutting the scorer's gradient into both is the built-in
    ``attention_embedding_gradient=0``; this is the history-only half of it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.attention is not None:
            self.attention = _DetachedKeys(self.attention)


class WeightAverage(Callback):
    """Prototype (ablations only): score and keep an exponential moving average of the
    weights, not the last step's.

    After every training step the average moves towards the network's floating-point
    state (parameters and buffers, Dice's running moments included) by
    ``1 / (horizon * steps per epoch)``: it remembers about ``horizon`` epochs, on a log of
    any size. Validation batches, and so early stopping's choice and the weights it
    restores, see the average; training continues from the raw weights. Without a
    validation split the average is loaded when training ends.
    """

    def __init__(self, horizon: float = 1.0) -> None:
        self.horizon = horizon

    def _state(self, net) -> list[torch.Tensor]:
        return [t for t in net.module_.state_dict(keep_vars=True).values()
                if t.is_floating_point()]

    def on_train_begin(self, net, **kwargs) -> None:
        self.average_, self.raw_ = None, None

    def on_epoch_begin(self, net, dataset_train=None, **kwargs) -> None:
        steps = max(1, -(-len(dataset_train) // net.batch_size))
        self.rate_ = min(1.0, 1.0 / (self.horizon * steps))

    def on_batch_end(self, net, training=None, **kwargs) -> None:
        if not training:
            return
        with torch.no_grad():
            state = [t.detach() for t in self._state(net)]
            if self.average_ is None:
                self.average_ = [t.clone() for t in state]
            else:
                torch._foreach_lerp_(self.average_, state, self.rate_)

    def on_batch_begin(self, net, training=None, **kwargs) -> None:
        if training or self.raw_ is not None or self.average_ is None:
            return
        with torch.no_grad():  # the first validation batch: swap the average in
            state = self._state(net)
            self.raw_ = [t.detach().clone() for t in state]
            for t, a in zip(state, self.average_, strict=True):
                t.data.copy_(a)

    def on_epoch_end(self, net, **kwargs) -> None:
        # After the scorers and early stopping (this callback comes after them): the raw
        # weights back for the next epoch.
        if self.raw_ is not None:
            with torch.no_grad():
                for t, r in zip(self._state(net), self.raw_, strict=True):
                    t.data.copy_(r)
            self.raw_ = None

    def on_train_end(self, net, **kwargs) -> None:
        # Early stopping has loaded the best epoch's averaged weights when it ran before this
        # callback; otherwise (no validation split) load the average now.
        if not net.__dict__.get("do_early_stopping_") and self.average_ is not None:
            with torch.no_grad():
                for t, a in zip(self._state(net), self.average_, strict=True):
                    t.data.copy_(a)



class DINLengthSink(DeepInterestNetwork):
    """The built-in attention sink with one logit per history-length bucket (the buckets
    of ``attention_length_scale``): how much support a history needs before its weights
    sum near 1 may differ between 2 behaviours and 40. A row's length is its count of
    finite logits (padding is -inf in every forward path)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.sink_logit is not None:
            self.sink_logit = torch.nn.Parameter(torch.zeros(len(self.length_bucket_starts) + 1))

    def _softmax(self, logits):
        if self.sink_logit is None:
            return super()._softmax(logits)
        length = torch.isfinite(logits).sum(dim=1)
        bucket = (length[:, None] >= self.length_bucket_starts).sum(dim=1)
        sink = self.sink_logit.to(logits.dtype).index_select(0, bucket)[:, None]
        return torch.softmax(torch.cat([sink, logits], dim=1), dim=1)[:, 1:]


def last_events_split(users: np.ndarray, order: np.ndarray, fraction: float,
                      rng: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
    """Row indices ``(train, valid)``: every user's latest events, round by round.

    ``order`` ranks a user's rows in time (larger is later; equal values are one event: a
    click and its negatives). Round 1 is every user's latest event, round 2 the one before,
    and so on, each user keeping at least one event for training; whole rounds are taken
    while they fit in ``fraction`` of the rows, then random users of the next round until
    the target is reached (the one crossing it included). The protocol's test rows are
    each user's last events: this validates on the same kind of row.
    """
    n_rows = len(order)
    target = max(1, int(round(fraction * n_rows)))
    codes = np.unique(users, return_inverse=True)[1]
    # Dense rank of each row's event within its user, 1 = latest.
    events = np.unique(np.stack([codes, -np.asarray(order, dtype=np.int64)]), axis=1,
                       return_inverse=True)[1].ravel()
    first_event = np.full(codes.max() + 1, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_event, codes, events)
    rank = events - first_event[codes] + 1
    n_events = np.zeros_like(first_event)
    np.maximum.at(n_events, codes, rank)
    eligible = rank < n_events[codes]
    rows_per_round = np.bincount(rank[eligible])
    cumulative = np.cumsum(rows_per_round)
    full = int(np.searchsorted(cumulative, target, side="right"))  # rounds 1..full-1 fit
    valid = eligible & (rank < full)
    taken_rows = int(valid.sum())
    if taken_rows < target and full < len(rows_per_round):
        in_round = eligible & (rank == full)
        round_users = np.unique(codes[in_round])
        per_user = np.bincount(codes[in_round], minlength=len(first_event))[round_users]
        order_users = rng.permutation(len(round_users))
        taken = np.cumsum(per_user[order_users]) < target - taken_rows
        if not taken.all():
            taken[np.argmin(taken)] = True
        chosen = np.zeros(len(first_event), dtype=bool)
        chosen[round_users[order_users[taken]]] = True
        valid |= in_round & chosen[codes]
    return np.flatnonzero(~valid), np.flatnonzero(valid)


class LastEventsDIN(DINClassifier):
    """DINClassifier whose early stopping validates on every user's latest events
    (:func:`last_events_split`); ``row_order_`` (set before fit) orders the rows in time."""

    def _early_stopping_rows(self, frame, inputs, target):
        train, valid = last_events_split(frame[self.layout_.user_col].to_numpy(),
                                         self.__dict__["row_order_"],
                                         self.validation_fraction,
                                         check_random_state(self.random_state))
        self.__dict__["split_sizes_"] = (len(train), len(valid))
        return train, valid



class _GroupedBatches(TensorBatchIterator):
    """Training batches whose rows sharing a history stay together: the groups of
    consecutive rows with the same history (a click and its sampled negatives, which
    ``sample_negatives`` puts next to each other) are shuffled, not the rows."""

    @classmethod
    def of(cls, batches: TensorBatchIterator) -> _GroupedBatches:
        grouped = cls.__new__(cls)
        grouped.__dict__.update(batches.__dict__)
        n_rows = grouped.n_rows
        stored = grouped.stored_rows(torch.arange(n_rows))
        lengths = grouped.inputs["history_length"].index_select(0, stored)
        history = grouped.inputs["history"].index_select(0, stored).reshape(n_rows, -1)
        same = (lengths[1:] == lengths[:-1]) & (history[1:] == history[:-1]).all(dim=1)
        grouped.group_starts = torch.cat([torch.tensor([True]), ~same]).nonzero().ravel()
        grouped.group_sizes = torch.diff(torch.cat([grouped.group_starts,
                                                    torch.tensor([n_rows])]))
        return grouped

    def _order(self) -> torch.Tensor:
        groups = torch.randperm(len(self.group_starts), generator=self.generator)
        sizes = self.group_sizes[groups]
        first = torch.repeat_interleave(self.group_starts[groups], sizes)
        within = torch.arange(self.n_rows) - torch.repeat_interleave(
            torch.cumsum(sizes, 0) - sizes, sizes)
        return first + within


class GroupedDIN(DINClassifier):
    """DINClassifier trained on batches that keep a click with its negatives
    (:class:`_GroupedBatches`)."""

    def get_iterator(self, dataset, training=False):
        batches = super().get_iterator(dataset, training=training)
        if training and type(batches) is TensorBatchIterator:
            return _GroupedBatches.of(batches)
        return batches


class DINPosition(DeepInterestNetwork):
    """A learnt embedding of each behaviour's position bucket (``1 + floor(log2(k + 1))``
    for the k-th most recent, 1-6 at 50 behaviours) added to its recency embedding, so
    that the scorer (and pooling) can tell the 3rd most recent behaviour from the 30th
    where both share a time-gap bucket. Needs the recency context feature."""

    N_BUCKETS = 8

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not len(self.context_embeddings):
            raise ValueError("DINPosition needs the recency context feature (hist_gap_<k>).")
        width = self.context_embeddings[0].embedding_dim
        self.position_table = torch.nn.Embedding(self.N_BUCKETS, width)
        torch.nn.init.normal_(self.position_table.weight, std=0.05)
        self._buckets = None

    def attend(self, candidate, history, history_length):
        n_rows, _, max_len = history.shape
        length = history_length.clamp(0, max_len)
        longest = int(length.max()) if n_rows else 0
        valid = torch.arange(longest, device=history.device) < length[:, None]
        cols = valid.nonzero(as_tuple=True)[1]
        self._buckets = (1 + torch.floor(torch.log2(cols.float() + 1))).long().clamp(
            max=self.N_BUCKETS - 1)
        try:
            return super().attend(candidate, history, history_length)
        finally:
            self._buckets = None

    def _embed_features(self, ids):
        embedded = super()._embed_features(ids)
        n_shared = len(self.history_embeddings)
        if self._buckets is None or ids.shape[-1] == n_shared:  # the candidates' ids
            return embedded
        start = n_shared * self.history_embeddings[0].embedding_dim
        width = self.position_table.embedding_dim
        position = self.position_table(self._buckets)
        return torch.cat([embedded[:, :start], embedded[:, start:start + width] + position,
                          embedded[:, start + width:]], dim=1)
