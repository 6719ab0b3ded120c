// An MLP that ends in one score, at inference, as one pass over tiles of rows (see
// _fused_mlp.py).
//
// The attention unit scores every (candidate, position) pair with a small MLP: for the
// paper's sizes, 80 -> Dice -> 40 -> Dice -> 1. As torch's ops that is five passes over
// activations of (pairs x units), a matrix product with 40 columns and another with one,
// each reading back what the previous wrote. Here a tile of rows (8 on AVX512, 4
// otherwise) goes through every layer while it sits in registers and L1: the products
// accumulate in registers (rows x up to three vectors of columns), the activation is
// applied to the accumulators, and the last layer's outputs are folded into the score at
// once. Rows are independent, so the result does not depend on the number of threads.
//
// Layers come packed by _fused_mlp.py: each weight transposed to (inputs, columns) with
// the columns padded to a multiple of 16 by zeros, the bias and the activation's
// parameters padded alike, so a padded column is 0 after every activation and adds
// nothing to the next layer or the score.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "_vec_math.h"

#include <algorithm>
#include <vector>

namespace {

// Activation kinds (_fused_mlp.KINDS). Parameters: a (4, columns) tensor, rows shift, scale,
// alpha, keep for Dice (its inference constants); row 2 holds PReLU's weight.
enum Kind : int64_t { kIdentity = 0, kDice = 1, kPrelu = 2, kRelu = 3 };
constexpr int64_t kPad = 16;
constexpr int kRows = Vec::size() >= 16 ? 8 : 4;  // rows x 3 accumulators fit the registers
constexpr int kMaxBlocks = 3;

struct Layer {
  const float* weight_t;  // (inputs, width)
  const float* bias;      // (width), or one row of it per tile row (bias_stride apart)
  const float* params;    // (4, width)
  int64_t inputs, width, kind;
  int64_t bias_stride = 0;
};

inline Vec activate(int64_t kind, const Vec& x, const float* params, int64_t width, int64_t j) {
  switch (kind) {
    case kDice: {
      const Vec gate = gate_of(x, Vec::loadu(params + width + j), Vec::loadu(params + j));
      return dice_of(x, gate, Vec::loadu(params + 2 * width + j),
                     Vec::loadu(params + 3 * width + j));
    }
    case kPrelu:  // x if x > 0 else a x, as max(x, 0) + a min(x, 0)
      return at::vec::maximum(x, Vec(0.0f)) +
             Vec::loadu(params + 2 * width + j) * at::vec::minimum(x, Vec(0.0f));
    case kRelu:
      return at::vec::maximum(x, Vec(0.0f));
    default:
      return x;
  }
}

// NB vectors of columns from v0 on, for kRows rows of `in`: bias + in @ weight_t, activated,
// then stored in `out` or (the last layer) multiplied into each row's score.
template <int NB>
inline void columns(const float* in, int64_t in_stride, const Layer& layer, int64_t v0,
                    float* out, int64_t out_stride, Vec* score, const float* score_weight) {
  constexpr int V = Vec::size();
  const int64_t j0 = v0 * V;
  Vec acc[kRows][NB];
  for (int r = 0; r < kRows; ++r) {
    const float* bias = layer.bias + r * layer.bias_stride + j0;
    for (int n = 0; n < NB; ++n) acc[r][n] = Vec::loadu(bias + n * V);
  }
  const float* w = layer.weight_t + j0;
  for (int64_t k = 0; k < layer.inputs; ++k, w += layer.width) {
    Vec wk[NB];
    for (int n = 0; n < NB; ++n) wk[n] = Vec::loadu(w + n * V);
    for (int r = 0; r < kRows; ++r) {
      const Vec h(in[r * in_stride + k]);
      for (int n = 0; n < NB; ++n) acc[r][n] = at::vec::fmadd(h, wk[n], acc[r][n]);
    }
  }
  // Out of registers before the activation: with the activation's code working on them
  // directly, GCC kept every accumulator in memory through the whole product (a store per
  // multiply-add, 0.65-0.8x torch's speed); written out here, they stay in registers in
  // the loop above (3 loads, 8 broadcasts, 24 multiply-adds per input).
  alignas(64) float products[kRows][NB * V];
  for (int r = 0; r < kRows; ++r) {
    for (int n = 0; n < NB; ++n) acc[r][n].store(products[r] + n * V);
  }
  for (int r = 0; r < kRows; ++r) {
    for (int n = 0; n < NB; ++n) {
      const int64_t j = j0 + n * V;
      const Vec y = activate(layer.kind, Vec::loadu(products[r] + n * V), layer.params,
                             layer.width, j);
      if (score != nullptr) {
        score[r] = at::vec::fmadd(y, Vec::loadu(score_weight + j), score[r]);
      } else {
        y.store(out + r * out_stride + j);
      }
    }
  }
}

inline void dense_layer(const float* in, int64_t in_stride, const Layer& layer, float* out,
                        int64_t out_stride, Vec* score, const float* score_weight) {
  const int64_t vectors = layer.width / Vec::size();
  for (int64_t v = 0; v < vectors; v += kMaxBlocks) {
    switch (std::min<int64_t>(kMaxBlocks, vectors - v)) {
      case 3:
        columns<3>(in, in_stride, layer, v, out, out_stride, score, score_weight);
        break;
      case 2:
        columns<2>(in, in_stride, layer, v, out, out_stride, score, score_weight);
        break;
      default:
        columns<1>(in, in_stride, layer, v, out, out_stride, score, score_weight);
    }
  }
}

int64_t padded(int64_t width) { return (width + kPad - 1) / kPad * kPad; }

void check_float(const at::Tensor& t, const char* what) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous(),
              "the MLP kernels take contiguous float32 CPU tensors; ", what, " is not");
}

// The packed MLP after its input: the lead activation, the layers, the score. Checked once.
struct PackedMLP {
  int64_t inputs, lead_kind, lead_width, stride;
  const float* lead;
  std::vector<Layer> layers;
  const float* score_weight;
  float score_bias;

  PackedMLP(int64_t inputs_, int64_t lead_kind_, const at::Tensor& lead_params,
            at::TensorList weights_t, at::TensorList biases, at::TensorList params,
            at::IntArrayRef kinds, const at::Tensor& score_w, const at::Tensor& score_b)
      : inputs(inputs_), lead_kind(lead_kind_), lead_width(padded(inputs_)) {
    const int64_t depth = weights_t.size();
    TORCH_CHECK(biases.size() == static_cast<size_t>(depth) &&
                    params.size() == static_cast<size_t>(depth) &&
                    kinds.size() == static_cast<size_t>(depth),
                "mlp_scores takes one bias, parameter tensor and kind per layer");
    lead = nullptr;
    if (lead_kind == kDice || lead_kind == kPrelu) {
      check_float(lead_params, "lead_params");
      TORCH_CHECK(lead_params.numel() == 4 * lead_width, "lead_params must be (4, ",
                  lead_width, ")");
      lead = lead_params.data_ptr<float>();
    }
    int64_t previous = inputs;
    stride = lead_width;
    for (int64_t l = 0; l < depth; ++l) {
      check_float(weights_t[l], "a weight");
      check_float(biases[l], "a bias");
      const int64_t width = weights_t[l].size(1);
      TORCH_CHECK(weights_t[l].dim() == 2 && weights_t[l].size(0) <= padded(previous) &&
                      (l > 0 || weights_t[l].size(0) == inputs) && width % kPad == 0 &&
                      biases[l].numel() == width,
                  "mlp_scores: layer ", l, "'s packed weight or bias has the wrong shape");
      const float* layer_params = nullptr;
      if (kinds[l] == kDice || kinds[l] == kPrelu) {
        check_float(params[l], "an activation's parameters");
        TORCH_CHECK(params[l].numel() == 4 * width, "layer ", l, "'s parameters must be (4, ",
                    width, ")");
        layer_params = params[l].data_ptr<float>();
      }
      layers.push_back({weights_t[l].data_ptr<float>(), biases[l].data_ptr<float>(),
                        layer_params, weights_t[l].size(0), width, kinds[l]});
      previous = width;
      stride = std::max(stride, width);
    }
    check_float(score_w, "score_weight");
    check_float(score_b, "score_bias");
    TORCH_CHECK(score_w.numel() == padded(previous) && score_b.numel() == 1,
                "mlp_scores: the score's weight must have ", padded(previous), " values");
    score_weight = score_w.data_ptr<float>();
    score_bias = score_b.data_ptr<float>()[0];
  }

  // The scores of the kRows rows in `in` (kRows x stride, the lead activation applied);
  // `next` is a buffer of the same size. Both are overwritten.
  void score_tile(float* in, float* next, float* scores) const {
    constexpr int V = Vec::size();
    Vec score[kRows];
    for (int r = 0; r < kRows; ++r) score[r] = Vec(0.0f);
    const int64_t depth = layers.size();
    for (int64_t l = 0; l < depth; ++l) {
      const bool is_last = l + 1 == depth;
      dense_layer(in, stride, layers[l], next, stride, is_last ? score : nullptr, score_weight);
      std::swap(in, next);
    }
    if (depth == 0) {  // the score straight from the activated input
      for (int r = 0; r < kRows; ++r) {
        for (int64_t j = 0; j < inputs; j += V) {
          const int n = static_cast<int>(std::min<int64_t>(V, inputs - j));
          score[r] = at::vec::fmadd(Vec::loadu(in + r * stride + j, n),
                                    Vec::loadu(score_weight + j, n), score[r]);
        }
      }
    }
    for (int r = 0; r < kRows; ++r) {
      float lanes[V];
      score[r].store(lanes);
      float sum = score_bias;
      for (int v = 0; v < V; ++v) sum += lanes[v];
      scores[r] = sum;
    }
  }
};

// Scores (rows,) of x (rows, inputs): lead activation, then each packed layer (a product and
// its activation), then the score's weights (last width,) and bias (1,).
at::Tensor mlp_scores(const at::Tensor& x, int64_t lead_kind, const at::Tensor& lead_params,
                      at::TensorList weights_t, at::TensorList biases, at::TensorList params,
                      at::IntArrayRef kinds, const at::Tensor& score_weight,
                      const at::Tensor& score_bias) {
  check_float(x, "x");
  TORCH_CHECK(x.dim() == 2, "mlp_scores takes x of two dimensions");
  const int64_t rows = x.size(0), inputs = x.size(1);
  const PackedMLP mlp(inputs, lead_kind, lead_params, weights_t, biases, params, kinds,
                      score_weight, score_bias);
  at::Tensor out = at::empty({rows}, x.options());
  const float* xp = x.data_ptr<float>();
  float* op = out.data_ptr<float>();
  constexpr int V = Vec::size();
  const int64_t tiles = (rows + kRows - 1) / kRows;
  at::parallel_for(0, tiles, 16, [&](int64_t first, int64_t last) {
    std::vector<float> buffers(2 * kRows * mlp.stride, 0.0f);
    float scores[kRows];
    for (int64_t tile = first; tile < last; ++tile) {
      float *in = buffers.data(), *next = in + kRows * mlp.stride;
      const int64_t row0 = tile * kRows, count = std::min<int64_t>(kRows, rows - row0);
      for (int r = 0; r < kRows; ++r) {
        float* dst = in + r * mlp.stride;
        if (r >= count) {  // a partial tile's missing rows: zeros, scored and dropped
          std::fill(dst, dst + inputs, 0.0f);
          continue;
        }
        const float* src = xp + (row0 + r) * inputs;
        for (int64_t j = 0; j < inputs; j += V) {
          const int n = static_cast<int>(std::min<int64_t>(V, inputs - j));
          activate(lead_kind, Vec::loadu(src + j, n), mlp.lead, mlp.lead_width, j)
              .store(dst + j, n);
        }
      }
      mlp.score_tile(in, next, scores);
      std::copy(scores, scores + count, op + row0);
    }
  });
  return out;
}

// The packed MLP after a first layer the kernel computes itself, `units` columns wide: the
// next layer reads its own number of inputs from them (the rest is padding).
PackedMLP after_first_layer(const char* who, int64_t units, int64_t lead_kind,
                            const at::Tensor& lead_params, at::TensorList weights_t,
                            at::TensorList biases, at::TensorList params, at::IntArrayRef kinds,
                            const at::Tensor& score_weight, const at::Tensor& score_bias) {
  const int64_t inputs = weights_t.empty() ? units : weights_t[0].size(0);
  TORCH_CHECK(padded(inputs) == units, who, ": the first packed layer takes ", inputs,
              " inputs, which pad to ", padded(inputs), " columns, not ", units);
  return PackedMLP(inputs, lead_kind, lead_params, weights_t, biases, params, kinds,
                   score_weight, score_bias);
}

// Scores (C, L) of C candidates against the L positions of one shared history (one
// visitor's request, LocalActivationUnit.score_shared): the first layer of pair (c, k) is
// per_key[k] + query[c] @ mixed_t[k] (its keys' part and the candidate's, product term
// included), computed here for a tile of candidates at one position, then activated and
// scored as mlp_scores does; no (C, L, units) tensor is written.
at::Tensor shared_mlp_scores(const at::Tensor& query, const at::Tensor& per_key,
                             const at::Tensor& mixed_t, int64_t lead_kind,
                             const at::Tensor& lead_params, at::TensorList weights_t,
                             at::TensorList biases, at::TensorList params,
                             at::IntArrayRef kinds, const at::Tensor& score_weight,
                             const at::Tensor& score_bias) {
  check_float(query, "query");
  check_float(per_key, "per_key");
  check_float(mixed_t, "mixed_t");
  const int64_t candidates = query.size(0), dim = query.size(1), keys = per_key.size(0);
  const int64_t units = per_key.size(1);
  TORCH_CHECK(query.dim() == 2 && per_key.dim() == 2 && units % kPad == 0 &&
                  mixed_t.dim() == 3 && mixed_t.size(0) == keys && mixed_t.size(1) == dim &&
                  mixed_t.size(2) == units,
              "shared_mlp_scores takes query (C, dim), per_key (L, units) and mixed_t "
              "(L, dim, units), units padded to a multiple of ", kPad);
  const PackedMLP mlp = after_first_layer("shared_mlp_scores", units, lead_kind, lead_params,
                                          weights_t, biases, params, kinds, score_weight,
                                          score_bias);
  at::Tensor out = at::empty({candidates, keys}, query.options());
  const float *qp = query.data_ptr<float>(), *kp = per_key.data_ptr<float>(),
              *mp = mixed_t.data_ptr<float>();
  float* op = out.data_ptr<float>();
  const int64_t candidate_tiles = (candidates + kRows - 1) / kRows;
  at::parallel_for(0, keys * candidate_tiles, 16, [&](int64_t first, int64_t last) {
    std::vector<float> buffers(2 * kRows * mlp.stride + kRows * dim, 0.0f);
    float* tile_query = buffers.data() + 2 * kRows * mlp.stride;
    float scores[kRows];
    for (int64_t task = first; task < last; ++task) {
      const int64_t key = task / candidate_tiles, c0 = (task % candidate_tiles) * kRows;
      const int64_t count = std::min<int64_t>(kRows, candidates - c0);
      float *in = buffers.data(), *next = in + kRows * mlp.stride;
      std::copy(qp + c0 * dim, qp + (c0 + count) * dim, tile_query);
      std::fill(tile_query + count * dim, tile_query + kRows * dim, 0.0f);
      const Layer first_layer{mp + key * dim * units, kp + key * units, mlp.lead, dim, units,
                              lead_kind};
      dense_layer(tile_query, dim, first_layer, in, mlp.stride, nullptr, nullptr);
      mlp.score_tile(in, next, scores);
      for (int64_t r = 0; r < count; ++r) op[(c0 + r) * keys + key] = scores[r];
    }
  });
  return out;
}

// Scores (N,) of N (row, position) pairs, LocalActivationUnit.forward at inference: pair
// p's first layer is per_row[rows[p]] + [keys[p], query[rows[p]] * keys[p][:dim]] @
// first_weight_t (its candidate's part, once per row, plus its key's and the product
// term's), computed here for a tile of pairs, then activated and scored as mlp_scores does;
// no (N, units) tensor is written.
at::Tensor pair_mlp_scores(const at::Tensor& query, const at::Tensor& per_row,
                           const at::Tensor& keys, const at::Tensor& rows,
                           const at::Tensor& first_weight_t, int64_t lead_kind,
                           const at::Tensor& lead_params, at::TensorList weights_t,
                           at::TensorList biases, at::TensorList params,
                           at::IntArrayRef kinds, const at::Tensor& score_weight,
                           const at::Tensor& score_bias) {
  check_float(query, "query");
  check_float(per_row, "per_row");
  check_float(keys, "keys");
  check_float(first_weight_t, "first_weight_t");
  TORCH_CHECK(rows.device().is_cpu() && rows.scalar_type() == at::kLong && rows.is_contiguous(),
              "pair_mlp_scores takes rows as contiguous int64 CPU indices");
  const int64_t batch = query.size(0), dim = query.size(1), pairs = keys.size(0);
  const int64_t key_width = keys.size(1), units = per_row.size(1);
  const int64_t first_inputs = key_width + dim;
  TORCH_CHECK(query.dim() == 2 && keys.dim() == 2 && per_row.dim() == 2 && rows.dim() == 1 &&
                  per_row.size(0) == batch && rows.size(0) == pairs && key_width >= dim &&
                  units % kPad == 0 && first_weight_t.dim() == 2 &&
                  first_weight_t.size(0) == first_inputs && first_weight_t.size(1) == units,
              "pair_mlp_scores takes query (B, dim), per_row (B, units), keys (N, >= dim), "
              "rows (N,) and first_weight_t (key width + dim, units), units padded to a "
              "multiple of ", kPad);
  const PackedMLP mlp = after_first_layer("pair_mlp_scores", units, lead_kind, lead_params,
                                          weights_t, biases, params, kinds, score_weight,
                                          score_bias);
  const int64_t* rp = rows.data_ptr<int64_t>();
  for (int64_t p = 0; p < pairs; ++p) {
    TORCH_CHECK(rp[p] >= 0 && rp[p] < batch, "pair_mlp_scores: row index ", rp[p],
                " is outside the ", batch, " rows of query");
  }
  at::Tensor out = at::empty({pairs}, keys.options());
  const float *qp = query.data_ptr<float>(), *bp = per_row.data_ptr<float>(),
              *kp = keys.data_ptr<float>(), *wp = first_weight_t.data_ptr<float>();
  float* op = out.data_ptr<float>();
  const int64_t tiles = (pairs + kRows - 1) / kRows;
  at::parallel_for(0, tiles, 16, [&](int64_t first, int64_t last) {
    std::vector<float> buffers(2 * kRows * mlp.stride + kRows * (first_inputs + units), 0.0f);
    float* tile_inputs = buffers.data() + 2 * kRows * mlp.stride;
    float* tile_bias = tile_inputs + kRows * first_inputs;
    float scores[kRows];
    for (int64_t tile = first; tile < last; ++tile) {
      const int64_t p0 = tile * kRows, count = std::min<int64_t>(kRows, pairs - p0);
      for (int64_t r = 0; r < kRows; ++r) {
        float* x = tile_inputs + r * first_inputs;
        float* b = tile_bias + r * units;
        if (r >= count) {  // a partial tile's missing pairs: zeros, scored and dropped
          std::fill(x, x + first_inputs, 0.0f);
          std::fill(b, b + units, 0.0f);
          continue;
        }
        const float* key = kp + (p0 + r) * key_width;
        const float* q = qp + rp[p0 + r] * dim;
        std::copy(key, key + key_width, x);
        for (int64_t j = 0; j < dim; ++j) x[key_width + j] = q[j] * key[j];
        std::copy(bp + rp[p0 + r] * units, bp + (rp[p0 + r] + 1) * units, b);
      }
      float *in = buffers.data(), *next = in + kRows * mlp.stride;
      Layer first_layer{wp, tile_bias, mlp.lead, first_inputs, units, lead_kind};
      first_layer.bias_stride = units;
      dense_layer(tile_inputs, first_inputs, first_layer, in, mlp.stride, nullptr, nullptr);
      mlp.score_tile(in, next, scores);
      std::copy(scores, scores + count, op + p0);
    }
  });
  return out;
}

}  // namespace

#define SKLEARN_DIN_REGISTER_MLP(ns, m) TORCH_LIBRARY_FRAGMENT(ns, m)
SKLEARN_DIN_REGISTER_MLP(SKLEARN_DIN_NAMESPACE, m) {
  m.def("mlp_scores(Tensor x, int lead_kind, Tensor lead_params, Tensor[] weights_t, "
        "Tensor[] biases, Tensor[] params, int[] kinds, Tensor score_weight, "
        "Tensor score_bias) -> Tensor", &mlp_scores);
  m.def("shared_mlp_scores(Tensor query, Tensor per_key, Tensor mixed_t, int lead_kind, "
        "Tensor lead_params, Tensor[] weights_t, Tensor[] biases, Tensor[] params, "
        "int[] kinds, Tensor score_weight, Tensor score_bias) -> Tensor", &shared_mlp_scores);
  m.def("pair_mlp_scores(Tensor query, Tensor per_row, Tensor keys, Tensor rows, "
        "Tensor first_weight_t, int lead_kind, Tensor lead_params, Tensor[] weights_t, "
        "Tensor[] biases, Tensor[] params, int[] kinds, Tensor score_weight, "
        "Tensor score_bias) -> Tensor", &pair_mlp_scores);
}
