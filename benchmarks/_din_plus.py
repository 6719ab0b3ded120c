"""Prototype (ablations only): DIN whose MLP also sees the mean-pooled history and the
candidate x pooled-history products, as the DIN of the DIEN authors' code feeds its MLP
([item, sum of history, item * sum of history, attention output])."""

from __future__ import annotations

import torch

from sklearn_din import DeepInterestNetwork
from sklearn_din._network import _mlp


class DINPlus(DeepInterestNetwork):
    def __init__(self, *args, plus_mean: bool = False, product: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.plus_mean, self.product = plus_mean, product
        first = self.mlp[0]
        item_dim = len(self.history_embeddings) * self.history_embeddings[0].embedding_dim
        pooled_dim = item_dim + len(self.context_embeddings) * self.history_embeddings[
            0].embedding_dim
        extra = (pooled_dim if plus_mean else 0) + (item_dim * (1 + plus_mean) if product else 0)
        hidden = [m.out_features for m in self.mlp if isinstance(m, torch.nn.Linear)]
        act = "dice" if type(self.mlp[1]).__name__ == "Dice" else "prelu"
        self.mlp = _mlp(first.in_features + extra, hidden, act)

    def forward(self, candidate, history, history_length, sparse, dense):
        query, pooled, _ = self.attend(candidate, history, history_length)
        parts = [query, pooled]
        d = query.shape[1]
        if self.plus_mean:
            pooling, attention = self.pooling, self.attention
            self.pooling, self.attention = "mean", None
            try:
                _, mean, _ = self.attend(candidate, history, history_length)
            finally:
                self.pooling, self.attention = pooling, attention
            parts.append(mean)
        if self.product:
            parts.append(query * pooled[:, :d])
            if self.plus_mean:
                parts.append(query * mean[:, :d])
        parts += [t(sparse[:, j]) for j, t in enumerate(self.sparse_embeddings)]
        if dense.shape[1]:
            parts.append(dense)
        return self.output(self.mlp(torch.cat(parts, dim=1))).squeeze(1)
