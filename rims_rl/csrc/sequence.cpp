// The RIMs recurrence over a whole sequence, forward and backward, as two compiled ops
// (torch.ops.rims_rl_cpp.forward / .backward). Built on first use by rims_rl/kernel.py.
//
// Same arithmetic as the readable reference step (rims_rl/reference.py) and the Python fused step
// (rims_rl/fused.py): one input row, one input head, folded values, LSTM or GRU cells, selection "null" or
// "across" (renormalised or not), k <= K, communication on or off with keys/values of inactive RIMs
// from the tentative update or the kept state, block_inactive_grad on or off, resets. The per-RIM
// products (3 per step each way) run as register tiles here; everything elementwise runs in plain
// loops, so a step costs no dispatch instead of a hundred Python-level ops. Weight gradients of the
// per-step products are summed over all steps in one product each at the end (oneDNN for float32
// when the caller says so, else at::bmm). With several torch threads the batch is cut into chunks
// whose recurrences run side by side (rims_forward / rims_backward).
//
// Layouts (all contiguous): state [K, B, H]; values [T, B, K, G] (input-to-gate pre-activations of
// the value, G = 4H lstm / 3H gru); keys [T, B, dk] (pre-scaled); w_state [K, H, G + dk] (hidden to
// gates | queries); b_state [K, 1, G + dk]; b_in [K, 1, G] (gru; lstm: empty, inside b_state);
// w_comm [K, H, Q] with Q = heads * (2 ck + cv), per head [query | key | value]; w_out [K, heads cv, 2H];
// b_out [K, 1, 2H]; init [S, K, H]; starts [T, B] uint8. The forward takes w_out and b_out with their
// update columns (the last H) doubled, since it computes tanh(x) as 2 sigmoid(2x) - 1; the backward
// takes the plain w_out.
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/ops/baddbmm.h>
#include <ATen/ops/bmm.h>
#include <ATen/Parallel.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/sigmoid.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>
#include <torch/library.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

// Reductions the compiler may vectorize (reassociated sums; built with -fopenmp-simd).
#define RIMS_PRAGMA(x) _Pragma(#x)
#define RIMS_SIMD_SUM(var) RIMS_PRAGMA(omp simd reduction(+ : var))

namespace {

using at::Tensor;

// The integer options of both ops, in order: (enum name, field name of rims_rl.kernel.KernelConfig).
// One list, so the enum and the names config_fields() reports (checked at load) cannot drift apart.
#define RIMS_CONFIG_FIELDS(X)                                                                           \
  X(LSTM, "lstm") X(TOPK, "k") X(ACROSS, "across") X(RENORM, "renormalise") X(COMM, "communication")    \
  X(KEPT, "comm_kept") X(BLOCK, "block_inactive_grad") X(HEADS, "comm_heads") X(CK, "comm_key_size")   \
  X(CV, "comm_value_size") X(SMALL, "small_product") X(ONEDNN, "onednn")
#define RIMS_ENUM_ENTRY(name, field) name,
#define RIMS_FIELD_NAME(name, field) field,
enum Cfg { RIMS_CONFIG_FIELDS(RIMS_ENUM_ENTRY) NCFG };

std::vector<std::string> config_fields() { return {RIMS_CONFIG_FIELDS(RIMS_FIELD_NAME)}; }

template <typename S> inline S sigm(S x) { return S(1) / (S(1) + std::exp(-x)); }

struct Dims {
  int64_t T, K, B, H, G, dk, GQ, Q, HV, heads, ck, cv, topk, small;
  bool lstm, across, renorm, comm, kept, block, onednn;
};

void check_inputs(std::initializer_list<const Tensor*> tensors) {
  for (const Tensor* t : tensors)
    TORCH_CHECK(!t->defined() || t->numel() == 0 || (t->is_contiguous() && t->device().is_cpu()),
                "rims_rl_cpp: every tensor must be a contiguous CPU tensor");
}

Dims dims_of(const Tensor& values, const Tensor& keys, const Tensor& w_state, c10::IntArrayRef cfg) {
  TORCH_CHECK(cfg.size() == NCFG, "rims_rl_cpp: bad config");
  Dims d;
  d.T = values.size(0); d.B = values.size(1); d.K = values.size(2); d.G = values.size(3);
  d.H = w_state.size(1); d.dk = keys.size(2); d.GQ = d.G + d.dk;
  d.lstm = cfg[LSTM]; d.topk = cfg[TOPK]; d.across = cfg[ACROSS]; d.renorm = cfg[RENORM];
  d.comm = cfg[COMM]; d.kept = cfg[KEPT]; d.block = cfg[BLOCK];
  d.heads = cfg[HEADS]; d.ck = cfg[CK]; d.cv = cfg[CV]; d.small = cfg[SMALL]; d.onednn = cfg[ONEDNN];
  d.Q = d.heads * (2 * d.ck + d.cv); d.HV = d.heads * d.cv;
  return d;
}

// Top-k mask of one sample: the k largest scores, ties to the lower index.
template <typename S>
void select(const Dims& d, const S* s, uint8_t* m) {
  for (int64_t i = 0; i < d.K; ++i) {
    int64_t rank = 0;
    for (int64_t j = 0; j < d.K; ++j) rank += (s[j] > s[i]) || (s[j] == s[i] && j < i);
    m[i] = rank < d.topk;
  }
}

// 512-bit vectors of the GCC/Clang vector extension, so that the accumulators stay in registers.
// (a trait: GCC drops vector_size on an alias template of a dependent type)
template <typename S> struct VecOf;
template <> struct VecOf<float> { typedef float type __attribute__((vector_size(64))); };
template <> struct VecOf<double> { typedef double type __attribute__((vector_size(64))); };
template <typename S> using Vec = typename VecOf<S>::type;
template <typename S> constexpr int64_t kLanes = 64 / sizeof(S);
template <typename S> inline Vec<S> vload(const S* p) { Vec<S> v; std::memcpy(&v, p, sizeof(v)); return v; }
template <typename S> inline void vstore(S* p, const Vec<S>& v) { std::memcpy(p, &v, sizeof(v)); }

// One register tile of a product: rows x[0..RB) (row stride xs) times w [I, O] columns [o, o + CB vectors),
// into out rows (stride os), starting from out (accumulate), bias or zero. Each loaded vector of w
// serves RB rows, so the tile runs on multiply-adds rather than on loads.
template <typename S, int RB, int CB>
inline void tile(const S* __restrict__ x, int64_t xs, const S* __restrict__ w, int64_t I, int64_t O,
                 const S* __restrict__ bias, bool accumulate, S* __restrict__ out, int64_t os, int64_t o) {
  constexpr int64_t L = kLanes<S>;
  Vec<S> acc[RB][CB];
  for (int r = 0; r < RB; ++r)
    for (int c = 0; c < CB; ++c)
      acc[r][c] = accumulate ? vload(out + r * os + o + c * L) : (bias ? vload(bias + o + c * L) : Vec<S>{});
  for (int64_t i = 0; i < I; ++i) {
    Vec<S> wv[CB];
    for (int c = 0; c < CB; ++c) wv[c] = vload(w + i * O + o + c * L);
    for (int r = 0; r < RB; ++r) {
      const S xv = x[r * xs + i];
      for (int c = 0; c < CB; ++c) acc[r][c] += xv * wv[c];
    }
  }
  for (int r = 0; r < RB; ++r)
    for (int c = 0; c < CB; ++c) vstore(out + r * os + o + c * L, acc[r][c]);
}

// RB rows of one RIM's product over all O columns: tiles of 3 vectors, then single vectors, then scalars.
template <typename S, int RB>
void rows(const S* x, int64_t xs, const S* w, int64_t I, int64_t O, const S* bias, bool accumulate, S* out,
          int64_t os) {
  constexpr int64_t L = kLanes<S>;
  int64_t o = 0;
  for (; o + 3 * L <= O; o += 3 * L) tile<S, RB, 3>(x, xs, w, I, O, bias, accumulate, out, os, o);
  for (; o + L <= O; o += L) tile<S, RB, 1>(x, xs, w, I, O, bias, accumulate, out, os, o);
  if (o < O && O >= L) {  // the last columns: one vector over [O - L, O), only its new lanes kept
    const int64_t ow = O - L;
    Vec<S> acc[RB] = {};
    for (int64_t i = 0; i < I; ++i) {
      const Vec<S> wv = vload(w + i * O + ow);
      for (int r = 0; r < RB; ++r) acc[r] += x[r * xs + i] * wv;
    }
    for (int r = 0; r < RB; ++r)
      for (int64_t j = o - ow; j < L; ++j)
        out[r * os + ow + j] = (accumulate ? out[r * os + ow + j] : (bias ? bias[ow + j] : S(0))) + acc[r][j];
    return;
  }
  for (int r = 0; r < RB; ++r)
    for (int64_t oo = o; oo < O; ++oo) {  // the last columns (fewer than a vector)
      S a = accumulate ? out[r * os + oo] : (bias ? bias[oo] : S(0));
      for (int64_t i = 0; i < I; ++i) a += x[r * xs + i] * w[i * O + oo];
      out[r * os + oo] = a;
    }
}

// Per-RIM product out[k] (=|+=) bias[k] + x[k] @ w[k]: x [K, B, I] and out [K, B, O] with unit stride in the
// last dim, w [K, I, O] contiguous, bias [K, 1, O] contiguous or undefined. Products up to `small`
// multiply-adds run as the register tiles above, with no dispatch; larger ones as at::bmm / baddbmm.
template <typename S>
void product(Tensor& out, const Tensor& bias, const Tensor& x, const Tensor& w, bool accumulate, int64_t small) {
  const int64_t K = x.size(0), B = x.size(1), I = x.size(2), O = w.size(2);
  if (K * B * I * O > small) {
    if (accumulate) {
      out.baddbmm_(x, w);
      return;
    }
    at::bmm_out(out, x, w);
    if (bias.defined()) {  // added here: baddbmm_out would first copy the broadcast bias into out
      const S* bp = bias.data_ptr<S>();
      S* op = out.data_ptr<S>();
      const int64_t os0 = out.stride(0), os1 = out.stride(1);
      for (int64_t k = 0; k < K; ++k)
        for (int64_t b = 0; b < B; ++b) {
          S* orow = op + k * os0 + b * os1;
          const S* brow = bp + k * O;
          for (int64_t o = 0; o < O; ++o) orow[o] += brow[o];
        }
    }
    return;
  }
  const S* xp = x.data_ptr<S>();
  const S* wp = w.data_ptr<S>();
  const S* bp = bias.defined() ? bias.data_ptr<S>() : nullptr;
  S* op = out.data_ptr<S>();
  const int64_t xs0 = x.stride(0), xs1 = x.stride(1), os0 = out.stride(0), os1 = out.stride(1);
  for (int64_t k = 0; k < K; ++k) {
    const S* wk = wp + k * I * O;
    const S* bk = bp ? bp + k * O : nullptr;
    int64_t b = 0;
    for (; b + 4 <= B; b += 4)
      rows<S, 4>(xp + k * xs0 + b * xs1, xs1, wk, I, O, bk, accumulate, op + k * os0 + b * os1, os1);
    for (; b < B; ++b)
      rows<S, 1>(xp + k * xs0 + b * xs1, xs1, wk, I, O, bk, accumulate, op + k * os0 + b * os1, os1);
  }
}

// a [M, N] @ b [N, P] (any strides) through oneDNN's linear op (mkldnn::_linear_pointwise, called boxed
// so that a changed signature only loses speed); at::mm when it is absent or fails. See rims_rl/matmul.py.
Tensor onednn_mm(const Tensor& a, const Tensor& b) {
  // row- or column-major operands only: other strides send oneDNN to its reference loops
  auto dense = [](const Tensor& m) { return m.is_contiguous() || m.t().is_contiguous() ? m : m.contiguous(); };
  static const std::optional<c10::OperatorHandle> op =
      c10::Dispatcher::singleton().findSchema({"mkldnn::_linear_pointwise", ""});
  if (op) {
    try {
      torch::jit::Stack stack{dense(a), dense(b.t()), c10::IValue(), std::string("none"),
                              c10::List<std::optional<c10::Scalar>>(), std::string("")};
      op->callBoxed(&stack);
      return stack.at(0).toTensor();
    } catch (const std::exception&) {
    }
  }
  return at::mm(a, b);
}

// In-place logistic sigmoid of a [K, B, n] view with unit stride in the last dim (vectorized ATen op
// for large views, a loop for small ones).
template <typename S>
void sigmoid_(Tensor v) {
  if (v.numel() > 4096) {
    v.sigmoid_();
    return;
  }
  S* p = v.data_ptr<S>();
  const int64_t K = v.size(0), B = v.size(1), n = v.size(2), s0 = v.stride(0), s1 = v.stride(1);
  for (int64_t k = 0; k < K; ++k)
    for (int64_t b = 0; b < B; ++b) {
      S* r = p + k * s0 + b * s1;
      for (int64_t j = 0; j < n; ++j) r[j] = sigm(r[j]);
    }
}

template <typename S>
std::vector<Tensor> forward_impl(const Dims& d, const Tensor& h0, const Tensor& c0, const Tensor& values,
                                 const Tensor& keys, const Tensor& w_state, const Tensor& b_state,
                                 const Tensor& b_in, const Tensor& w_comm, const Tensor& w_out,
                                 const Tensor& b_out, const Tensor& init, const Tensor& starts) {
  const int64_t T = d.T, K = d.K, B = d.B, H = d.H, G = d.G, GQ = d.GQ, Q = d.Q, HV = d.HV;
  const int64_t KBH = K * B * H, KB = K * B;
  auto opt = h0.options();
  auto none = at::empty({0}, opt);
  // [T, K, B, X]: outputs of the per-step products and per-step results; [K, T, B, X]: the inputs of
  // the per-step products (their weight gradients are then one bmm over T*B without copies)
  Tensor out = at::empty({T, K, B, H}, opt);            // h after each step
  Tensor hprev = at::empty({K, T, B, H}, opt);          // h before each step (after resets)
  Tensor cprev = d.lstm ? at::empty({T + 1, K, B, H}, opt) : none;  // c before each step; [T]: final c
  Tensor hq = at::empty({T, K, B, GQ}, opt);            // [hidden-to-gates | queries]
  Tensor act = at::empty({T, K, B, G}, opt);            // gate activations
  Tensor tc = d.lstm ? at::empty({T, K, B, H}, opt) : none;   // tanh(c_new)
  Tensor hnew = at::empty({T, K, B, H}, opt);           // tentative update (before communication)
  Tensor src = d.comm ? at::empty({K, T, B, H}, opt) : none;  // what communication reads from
  Tensor qkv = d.comm ? at::empty({T, K, B, Q}, opt) : none;
  Tensor att = d.comm ? at::empty({T, K, K, B, d.heads}, opt) : none;
  Tensor read = d.comm ? at::empty({K, T, B, HV}, opt) : none;
  Tensor go = d.comm ? at::empty({T, K, B, 2 * H}, opt) : none;  // sigmoid(gate) | tanh(update)
  Tensor probs = at::empty({T, K, B}, opt);             // attention on the row (before the mask)
  Tensor rprob = at::empty({T, K, B}, opt);             // what the cell reads with
  Tensor mask = at::empty({T, K, B}, opt.dtype(at::kBool));
  Tensor c_new = d.lstm ? at::empty({K, B, H}, opt) : none;

  const S* v = values.data_ptr<S>();
  const S* key = keys.data_ptr<S>();
  const S* bin = d.lstm ? nullptr : b_in.data_ptr<S>();
  const S* ini = init.data_ptr<S>();
  const uint8_t* st = starts.data_ptr<uint8_t>();
  S* o = out.data_ptr<S>();
  S* hp = hprev.data_ptr<S>();
  S* cp = d.lstm ? cprev.data_ptr<S>() : nullptr;
  S* pp = probs.data_ptr<S>();
  S* rp = rprob.data_ptr<S>();
  uint8_t* mp = reinterpret_cast<uint8_t*>(mask.data_ptr<bool>());
  std::vector<S> s(K), e(K);
  std::vector<uint8_t> msel(K);

  for (int64_t t = 0; t < T; ++t) {
    // state before the step: h [K, B, H] at hp[k, t] (stride T*B*H between RIMs)
    for (int64_t k = 0; k < K; ++k) {
      const S* from = t == 0 ? h0.data_ptr<S>() + k * B * H : o + ((t - 1) * K + k) * B * H;
      std::copy(from, from + B * H, hp + (k * T + t) * B * H);
    }
    S* c = d.lstm ? cp + t * KBH : nullptr;
    if (d.lstm && t == 0) std::copy(c0.data_ptr<S>(), c0.data_ptr<S>() + KBH, c);
    for (int64_t b = 0; b < B; ++b) {
      if (!st[t * B + b]) continue;
      for (int64_t k = 0; k < K; ++k) {
        std::copy(ini + k * H, ini + (k + 1) * H, hp + ((k * T + t) * B + b) * H);
        if (d.lstm) std::copy(ini + (K + k) * H, ini + (K + k + 1) * H, c + (k * B + b) * H);
      }
    }
    auto hrow = [&](int64_t kb) { return hp + ((kb / B * T + t) * B + kb % B) * H; };
    Tensor h_t = hprev.select(1, t);
    Tensor hq_t = hq.select(0, t);
    product<S>(hq_t, b_state, h_t, w_state, false, d.small);
    const S* hqt = hq_t.data_ptr<S>();
    // input attention and selection
    for (int64_t b = 0; b < B; ++b) {
      const S* kb = key + (t * B + b) * d.dk;
      for (int64_t k = 0; k < K; ++k) {
        const S* q = hqt + (k * B + b) * GQ + G;
        S acc = 0;
        RIMS_SIMD_SUM(acc)
        for (int64_t j = 0; j < d.dk; ++j) acc += q[j] * kb[j];
        s[k] = acc;
      }
      select(d, s.data(), msel.data());
      for (int64_t k = 0; k < K; ++k) mp[(t * K + k) * B + b] = msel[k];
      if (!d.across) {
        for (int64_t k = 0; k < K; ++k) {
          S p = sigm(s[k]);
          pp[(t * K + k) * B + b] = p;
          rp[(t * K + k) * B + b] = p;
        }
      } else {
        S mx = s[0];
        for (int64_t k = 1; k < K; ++k) mx = std::max(mx, s[k]);
        S sum = 0;
        for (int64_t k = 0; k < K; ++k) sum += (e[k] = std::exp(s[k] - mx));
        for (int64_t k = 0; k < K; ++k) pp[(t * K + k) * B + b] = e[k] / sum;
        if (d.renorm) {
          S mxa = -INFINITY;
          for (int64_t k = 0; k < K; ++k) if (msel[k]) mxa = std::max(mxa, s[k]);
          S suma = 0;
          for (int64_t k = 0; k < K; ++k) suma += (e[k] = msel[k] ? std::exp(s[k] - mxa) : S(0));
          for (int64_t k = 0; k < K; ++k) rp[(t * K + k) * B + b] = e[k] / suma;
        } else {
          for (int64_t k = 0; k < K; ++k) rp[(t * K + k) * B + b] = msel[k] ? pp[(t * K + k) * B + b] : S(0);
        }
      }
    }
    // cells: pre-activations in plain loops, the nonlinearities as vectorized ATen ops
    Tensor act_t = act.select(0, t);
    S* at_ = act_t.data_ptr<S>();
    S* hnt = hnew.data_ptr<S>() + t * KBH;
    for (int64_t k = 0; k < K; ++k) {
      for (int64_t b = 0; b < B; ++b) {
        const int64_t kb = k * B + b;
        const S r = rp[(t * K + k) * B + b];
        const S* vin = v + ((t * B + b) * K + k) * G;
        const S* gh = hqt + kb * GQ;
        S* a = at_ + kb * G;
        if (d.lstm) {  // candidate pre-activation doubled: tanh(x) = 2 sigmoid(2x) - 1 (one sigmoid call)
          for (int64_t j = 0; j < 3 * H; ++j) a[j] = gh[j] + r * vin[j];
          for (int64_t j = 3 * H; j < G; ++j) a[j] = S(2) * (gh[j] + r * vin[j]);
        } else {
          const S* bi = bin + k * G;
          for (int64_t j = 0; j < 2 * H; ++j) a[j] = bi[j] + r * vin[j] + gh[j];
        }
      }
    }
    if (d.lstm) {
      sigmoid_<S>(act_t);
      S* cn = c_new.data_ptr<S>();
      Tensor tc_t = tc.select(0, t);
      S* tcp = tc_t.data_ptr<S>();
      for (int64_t kb = 0; kb < KB; ++kb) {
        S* a = at_ + kb * G;
        const S* cc = c + kb * H;
        for (int64_t j = 0; j < H; ++j) {
          const S g = S(2) * a[3 * H + j] - S(1);
          a[3 * H + j] = g;
          const S cv = a[H + j] * cc[j] + a[j] * g;
          cn[kb * H + j] = cv;
          tcp[kb * H + j] = S(2) * cv;
        }
      }
      sigmoid_<S>(tc_t);
      for (int64_t kb = 0; kb < KB; ++kb) {
        for (int64_t j = 0; j < H; ++j) {
          const S tcv = S(2) * tcp[kb * H + j] - S(1);
          tcp[kb * H + j] = tcv;
          hnt[kb * H + j] = at_[kb * G + 2 * H + j] * tcv;
        }
      }
    } else {
      sigmoid_<S>(act_t.narrow(-1, 0, 2 * H));
      for (int64_t k = 0; k < K; ++k) {
        for (int64_t b = 0; b < B; ++b) {
          const int64_t kb = k * B + b;
          const S r = rp[(t * K + k) * B + b];
          const S* vin = v + ((t * B + b) * K + k) * G + 2 * H;
          const S* bi = bin + k * G + 2 * H;
          const S* ghn = hqt + kb * GQ + 2 * H;
          S* a = at_ + kb * G;
          for (int64_t j = 0; j < H; ++j) a[2 * H + j] = S(2) * (bi[j] + r * vin[j] + a[j] * ghn[j]);
        }
      }
      sigmoid_<S>(act_t.narrow(-1, 2 * H, H));  // tanh(x) = 2 sigmoid(2x) - 1
      for (int64_t kb = 0; kb < KB; ++kb) {
        S* a = at_ + kb * G;
        const S* hh = hrow(kb);
        for (int64_t j = 0; j < H; ++j) {
          const S n = S(2) * a[2 * H + j] - S(1);
          a[2 * H + j] = n;
          hnt[kb * H + j] = n + a[H + j] * (hh[j] - n);
        }
      }
    }
    const uint8_t* mt = mp + t * KB;
    S* ot = o + t * KBH;
    if (d.comm) {
      S* srcp = src.data_ptr<S>();
      for (int64_t kb = 0; kb < KB; ++kb) {
        const S* from = (!d.kept || mt[kb]) ? hnt + kb * H : hrow(kb);
        std::copy(from, from + H, srcp + ((kb / B * T + t) * B + kb % B) * H);
      }
      Tensor qkv_t = qkv.select(0, t);
      product<S>(qkv_t, Tensor(), src.select(1, t), w_comm, false, d.small);
      const S* qp = qkv_t.data_ptr<S>();
      S* att_t = att.data_ptr<S>() + t * K * K * B * d.heads;
      S* rd = read.data_ptr<S>();
      const int64_t span = 2 * d.ck + d.cv;
      for (int64_t b = 0; b < B; ++b) {
        for (int64_t hd = 0; hd < d.heads; ++hd) {
          for (int64_t qi = 0; qi < K; ++qi) {
            const S* qv = qp + (qi * B + b) * Q + hd * span;
            S mx = -INFINITY;
            for (int64_t kk = 0; kk < K; ++kk) {
              const S* kv = qp + (kk * B + b) * Q + hd * span + d.ck;
              S acc = 0;
              RIMS_SIMD_SUM(acc)
              for (int64_t j = 0; j < d.ck; ++j) acc += qv[j] * kv[j];
              e[kk] = acc;
              mx = std::max(mx, acc);
            }
            S sum = 0;
            for (int64_t kk = 0; kk < K; ++kk) sum += (e[kk] = std::exp(e[kk] - mx));
            S* r = rd + ((qi * T + t) * B + b) * HV + hd * d.cv;
            for (int64_t j = 0; j < d.cv; ++j) r[j] = 0;
            for (int64_t kk = 0; kk < K; ++kk) {
              S w = e[kk] / sum;
              att_t[((qi * K + kk) * B + b) * d.heads + hd] = w;
              const S* vv = qp + (kk * B + b) * Q + hd * span + 2 * d.ck;
              for (int64_t j = 0; j < d.cv; ++j) r[j] += w * vv[j];
            }
          }
        }
      }
      Tensor go_t = go.select(0, t);
      product<S>(go_t, b_out, read.select(1, t), w_out, false, d.small);  // update columns doubled (see top)
      sigmoid_<S>(go_t);
      S* gs = go_t.data_ptr<S>();
      for (int64_t kb = 0; kb < KB; ++kb) {
        const S* hh = hrow(kb);
        for (int64_t j = 0; j < H; ++j) {
          const S tu = S(2) * gs[kb * 2 * H + H + j] - S(1);
          gs[kb * 2 * H + H + j] = tu;
          ot[kb * H + j] = mt[kb] ? hnt[kb * H + j] + gs[kb * 2 * H + j] * tu : hh[j];
        }
      }
    } else {
      for (int64_t kb = 0; kb < KB; ++kb) {
        const S* hh = hrow(kb);
        for (int64_t j = 0; j < H; ++j) ot[kb * H + j] = mt[kb] ? hnt[kb * H + j] : hh[j];
      }
    }
    if (d.lstm) {
      S* cnext = cp + (t + 1) * KBH;
      const S* cn = c_new.data_ptr<S>();
      for (int64_t kb = 0; kb < KB; ++kb)
        for (int64_t j = 0; j < H; ++j) cnext[kb * H + j] = mt[kb] ? cn[kb * H + j] : c[kb * H + j];
    }
  }
  return {out, cprev, mask, probs, att, hprev, hq, act, tc, hnew, src, qkv, read, go, rprob};
}

// The batch is cut into chunks run side by side (one thread each) when torch has several threads: the
// recurrence is independent per sample, while its small per-step products and elementwise loops do
// not gain from a second thread. Chunks: at most the thread count, at least 4 samples each, and only
// for sequences of >= 256 samples in all (T = 1 rollout steps run whole).
int64_t num_chunks(int64_t T, int64_t B) {
  const int64_t threads = at::get_num_threads();
  if (threads < 2 || at::in_parallel_region() || T * B < 256) return 1;
  return std::max<int64_t>(1, std::min<int64_t>(threads, B / 4));
}

// Runs chunk(i) for i < n, side by side when n > 1.
template <typename F>
void run_chunks(int64_t n, const F& chunk) {
  if (n == 1) {
    chunk(0);
    return;
  }
  at::parallel_for(0, n, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) chunk(i);
  });
}

// Samples [b0, b0 + nb) of chunk i of n, out of B.
std::pair<int64_t, int64_t> chunk_range(int64_t i, int64_t n, int64_t B) {
  const int64_t b0 = i * B / n;
  return {b0, (i + 1) * B / n - b0};
}

// One chunk's part of x along `dim` (contiguous), or x itself when there is one chunk or x is empty.
Tensor cut(const Tensor& x, int64_t dim, int64_t i, int64_t n, int64_t B) {
  if (n == 1 || x.numel() == 0) return x;
  auto [b0, nb] = chunk_range(i, n, B);
  return x.narrow(dim, b0, nb).contiguous();
}

// The chunks' tensor `index` joined along `dim` (empty tensors stay empty).
Tensor join(const std::vector<std::vector<Tensor>>& parts, size_t index, int64_t dim) {
  if (parts.size() == 1 || parts[0][index].numel() == 0) return parts[0][index];
  std::vector<Tensor> xs;
  for (const auto& p : parts) xs.push_back(p[index]);
  return at::cat(xs, dim);
}

// The chunks' tensor `index` summed (weight gradients).
Tensor total(const std::vector<std::vector<Tensor>>& parts, size_t index) {
  if (parts.size() == 1 || parts[0][index].numel() == 0) return parts[0][index];
  Tensor sum = parts[0][index].clone();
  for (size_t i = 1; i < parts.size(); ++i) sum.add_(parts[i][index]);
  return sum;
}

constexpr size_t NSAVED = 15;              // tensors forward_impl returns
constexpr size_t PER_CHUNK = NSAVED + 3;   // + the chunk's values, keys, starts

// Returns (out, cprev, mask, probs, att) for the whole batch, then per chunk its forward_impl tensors
// and its values, keys and starts (what the backward needs).
std::vector<Tensor> rims_forward(const Tensor& h0, const Tensor& c0, const Tensor& values, const Tensor& keys,
                                 const Tensor& w_state, const Tensor& b_state, const Tensor& b_in,
                                 const Tensor& w_comm, const Tensor& w_out, const Tensor& b_out,
                                 const Tensor& init, const Tensor& starts, c10::IntArrayRef cfg) {
  at::NoGradGuard no_grad;
  check_inputs({&h0, &c0, &values, &keys, &w_state, &b_state, &b_in, &w_comm, &w_out, &b_out, &init, &starts});
  TORCH_CHECK(starts.scalar_type() == at::kByte, "rims_rl_cpp: starts must be uint8");
  dims_of(values, keys, w_state, cfg);
  const int64_t B = values.size(1), n = num_chunks(values.size(0), B);
  std::vector<std::vector<Tensor>> parts(n);
  run_chunks(n, [&](int64_t i) {
    at::NoGradGuard no_grad_here;  // this thread's own grad mode
    Tensor v = cut(values, 1, i, n, B), k = cut(keys, 1, i, n, B), st = cut(starts, 1, i, n, B);
    Dims d = dims_of(v, k, w_state, cfg);
    AT_DISPATCH_FLOATING_TYPES(h0.scalar_type(), "rims_forward", [&] {
      parts[i] = forward_impl<scalar_t>(d, cut(h0, 1, i, n, B), cut(c0, 1, i, n, B), v, k, w_state, b_state, b_in,
                                        w_comm, w_out, b_out, init, st);
    });
    parts[i].insert(parts[i].end(), {v, k, st});
  });
  std::vector<Tensor> result = {join(parts, 0, 2), join(parts, 1, 2), join(parts, 2, 2), join(parts, 3, 2),
                                join(parts, 4, 3)};
  for (const auto& p : parts) result.insert(result.end(), p.begin(), p.end());
  return result;
}

// saved: the forward's outputs; d_out [T, K, B, H]; d_hT, d_cT [K, B, H] (d_cT empty for gru).
// Returns d_h0, d_c0, d_values, d_keys, d_w_state, d_b_state, d_b_in, d_w_comm, d_w_out, d_b_out, d_init.
template <typename S>
std::vector<Tensor> backward_impl(const Dims& d, const std::vector<Tensor>& sv, const Tensor& values,
                                  const Tensor& keys, const Tensor& w_state, const Tensor& w_comm,
                                  const Tensor& w_out, const Tensor& starts, const Tensor& d_out,
                                  const Tensor& d_hT, const Tensor& d_cT) {
  const int64_t T = d.T, K = d.K, B = d.B, H = d.H, G = d.G, GQ = d.GQ, Q = d.Q, HV = d.HV;
  const int64_t KBH = K * B * H, KB = K * B;
  const Tensor &cprev = sv[1], &mask = sv[2], &probs = sv[3], &att = sv[4], &hprev = sv[5], &hq = sv[6],
               &act = sv[7], &tc = sv[8], &src = sv[10], &qkv = sv[11], &read = sv[12], &go = sv[13],
               &rprob = sv[14];
  auto opt = d_out.options();
  auto none = at::empty({0}, opt);
  Tensor d_values = at::empty({T, B, K, G}, opt);
  Tensor d_keys = at::zeros({T, B, d.dk}, opt);
  Tensor d_hq = at::empty({K, T, B, GQ}, opt);
  Tensor d_b_state = at::zeros({K, 1, GQ}, opt);
  Tensor d_qkv = d.comm ? at::empty({K, T, B, Q}, opt) : none;
  Tensor d_go = d.comm ? at::empty({K, T, B, 2 * H}, opt) : none;
  Tensor d_b_out = d.comm ? at::zeros({K, 1, 2 * H}, opt) : none;
  Tensor d_read = d.comm ? at::empty({K, B, HV}, opt) : none;
  Tensor d_src = d.comm ? at::empty({K, B, H}, opt) : none;
  Tensor d_init = at::zeros({d.lstm ? 2 : 1, K, H}, opt);
  Tensor d_b_in = d.lstm ? none : at::zeros({K, 1, G}, opt);
  Tensor dh = d_hT.clone();                                        // carried d h
  Tensor dc = d.lstm ? d_cT.clone() : none;                        // carried d c
  Tensor dhn = at::empty({K, B, H}, opt);
  Tensor w_stateT = w_state.transpose(1, 2).contiguous();
  Tensor w_commT = d.comm ? w_comm.transpose(1, 2).contiguous() : none;
  Tensor w_outT = d.comm ? w_out.transpose(1, 2).contiguous() : none;

  const S* v = values.data_ptr<S>();
  const S* key = keys.data_ptr<S>();
  const uint8_t* st = starts.data_ptr<uint8_t>();
  const uint8_t* mp = reinterpret_cast<const uint8_t*>(mask.data_ptr<bool>());
  const S* pp = probs.data_ptr<S>();
  const S* rp = rprob.data_ptr<S>();
  const S* hpp = hprev.data_ptr<S>();
  const S* cpp_ = d.lstm ? cprev.data_ptr<S>() : nullptr;
  const S* hqp = hq.data_ptr<S>();
  const S* ap = act.data_ptr<S>();
  const S* tcp = d.lstm ? tc.data_ptr<S>() : nullptr;
  const S* dop = d_out.data_ptr<S>();
  S* dvp = d_values.data_ptr<S>();
  S* dkp = d_keys.data_ptr<S>();
  S* dhqp = d_hq.data_ptr<S>();
  S* dbs = d_b_state.data_ptr<S>();
  S* dbin = d.lstm ? nullptr : d_b_in.data_ptr<S>();
  S* dini = d_init.data_ptr<S>();
  S* dhp = dh.data_ptr<S>();
  S* dcp = d.lstm ? dc.data_ptr<S>() : nullptr;
  S* dhnp = dhn.data_ptr<S>();
  std::vector<S> dr(KB), ds(K), datt(K);

  for (int64_t t = T - 1; t >= 0; --t) {
    const uint8_t* mt = mp + t * KB;
    const S* dot = dop + t * KBH;
    auto row = [&](int64_t kb) { return ((kb / B * T + t) * B + kb % B); };  // [K, T, B, .] row index
    // masked write: the gradient of h_out goes to the update (active) or to the previous state (inactive)
    for (int64_t kb = 0; kb < KB; ++kb) {
      const bool m = mt[kb];
      for (int64_t j = 0; j < H; ++j) {
        S g = dhp[kb * H + j] + dot[kb * H + j];
        dhnp[kb * H + j] = m ? g : S(0);
        dhp[kb * H + j] = m ? S(0) : g;
      }
    }
    if (d.comm) {
      const S* gs = go.data_ptr<S>() + t * KB * 2 * H;
      S* dgo = d_go.data_ptr<S>();
      S* dbo = d_b_out.data_ptr<S>();
      for (int64_t kb = 0; kb < KB; ++kb) {
        S* dg = dgo + row(kb) * 2 * H;
        S* db = dbo + (kb / B) * 2 * H;
        for (int64_t j = 0; j < H; ++j) {
          S g = dhnp[kb * H + j], sg = gs[kb * 2 * H + j], tu = gs[kb * 2 * H + H + j];
          dg[j] = g * tu * sg * (S(1) - sg);
          dg[H + j] = g * sg * (S(1) - tu * tu);
          db[j] += dg[j];
          db[H + j] += dg[H + j];
        }
      }
      product<S>(d_read, Tensor(), d_go.select(1, t), w_outT, false, d.small);
      const S* drd = d_read.data_ptr<S>();
      const S* qp = qkv.data_ptr<S>() + t * KB * Q;
      const S* att_t = att.data_ptr<S>() + t * K * K * B * d.heads;
      S* dqkv = d_qkv.data_ptr<S>();
      for (int64_t kb = 0; kb < KB; ++kb) std::fill(dqkv + row(kb) * Q, dqkv + (row(kb) + 1) * Q, S(0));
      const int64_t span = 2 * d.ck + d.cv;
      for (int64_t b = 0; b < B; ++b) {
        for (int64_t hd = 0; hd < d.heads; ++hd) {
          for (int64_t qi = 0; qi < K; ++qi) {
            const S* g = drd + (qi * B + b) * HV + hd * d.cv;
            S dot_sum = 0;
            for (int64_t kk = 0; kk < K; ++kk) {
              const S* vv = qp + (kk * B + b) * Q + hd * span + 2 * d.ck;
              S w = att_t[((qi * K + kk) * B + b) * d.heads + hd];
              S* dv = dqkv + row(kk * B + b) * Q + hd * span + 2 * d.ck;
              S acc = 0;
              RIMS_SIMD_SUM(acc)
              for (int64_t j = 0; j < d.cv; ++j) { acc += g[j] * vv[j]; dv[j] += w * g[j]; }
              datt[kk] = acc;
              dot_sum += w * acc;
            }
            const S* qv = qp + (qi * B + b) * Q + hd * span;
            S* dqv = dqkv + row(qi * B + b) * Q + hd * span;
            for (int64_t kk = 0; kk < K; ++kk) {
              S w = att_t[((qi * K + kk) * B + b) * d.heads + hd];
              S dsc = w * (datt[kk] - dot_sum);
              const S* kv = qp + (kk * B + b) * Q + hd * span + d.ck;
              S* dkv = dqkv + row(kk * B + b) * Q + hd * span + d.ck;
              for (int64_t j = 0; j < d.ck; ++j) { dqv[j] += dsc * kv[j]; dkv[j] += dsc * qv[j]; }
            }
          }
        }
      }
      product<S>(d_src, Tensor(), d_qkv.select(1, t), w_commT, false, d.small);
      const S* dsp = d_src.data_ptr<S>();
      for (int64_t kb = 0; kb < KB; ++kb) {
        S* to = (d.kept && !mt[kb]) ? dhp : dhnp;  // kept: inactive RIMs' keys/values came from h_prev
        for (int64_t j = 0; j < H; ++j) to[kb * H + j] += dsp[kb * H + j];
      }
    }
    if (d.block)
      for (int64_t kb = 0; kb < KB; ++kb)
        if (!mt[kb]) std::fill(dhnp + kb * H, dhnp + (kb + 1) * H, S(0));
    // cells
    const S* at_ = ap + t * KB * G;
    const S* hqt = hqp + t * KB * GQ;
    for (int64_t k = 0; k < K; ++k) {
      for (int64_t b = 0; b < B; ++b) {
        const int64_t kb = k * B + b;
        const S* a = at_ + kb * G;
        const S* vin = v + ((t * B + b) * K + k) * G;
        S* dvin = dvp + ((t * B + b) * K + k) * G;
        S* dgh = dhqp + row(kb) * GQ;
        const S r = rp[(t * K + k) * B + b];
        const S* dhv = dhnp + kb * H;
        if (d.lstm) {
          const S* cc = cpp_ + t * KBH + kb * H;
          const S* tcn = tcp + t * KBH + kb * H;
          S* dcc = dcp + kb * H;
          const bool m = mt[kb];
          for (int64_t j = 0; j < H; ++j) {
            S i = a[j], f = a[H + j], og = a[2 * H + j], g = a[3 * H + j];
            S dct = dhv[j] * og * (S(1) - tcn[j] * tcn[j]) + (m ? dcc[j] : S(0));
            dgh[j] = dct * g * i * (S(1) - i);
            dgh[H + j] = dct * cc[j] * f * (S(1) - f);
            dgh[2 * H + j] = dhv[j] * tcn[j] * og * (S(1) - og);
            dgh[3 * H + j] = dct * i * (S(1) - g * g);
            dcc[j] = (m ? S(0) : dcc[j]) + dct * f;
          }
          S dread = 0;
          RIMS_SIMD_SUM(dread)
          for (int64_t j = 0; j < G; ++j) { dread += dgh[j] * vin[j]; dvin[j] = dgh[j] * r; }
          dr[kb] = dread;
        } else {
          const S* ghn = hqt + kb * GQ + 2 * H;
          const S* hh = hpp + row(kb) * H;
          S* dbi = dbin + k * G;
          S dread = 0;
          for (int64_t j = 0; j < H; ++j) {
            S rr = a[j], z = a[H + j], n = a[2 * H + j];
            S dpn = dhv[j] * (S(1) - z) * (S(1) - n * n);
            S dr_ = dpn * ghn[j] * rr * (S(1) - rr);
            S dz = dhv[j] * (hh[j] - n) * z * (S(1) - z);
            dhp[kb * H + j] += dhv[j] * z;
            dgh[j] = dr_; dgh[H + j] = dz; dgh[2 * H + j] = dpn * rr;
            dvin[j] = dr_ * r; dvin[H + j] = dz * r; dvin[2 * H + j] = dpn * r;
            dbi[j] += dr_; dbi[H + j] += dz; dbi[2 * H + j] += dpn;
            dread += dr_ * vin[j] + dz * vin[H + j] + dpn * vin[2 * H + j];
          }
          dr[kb] = dread;
        }
      }
    }
    // selection -> scores -> queries and keys
    for (int64_t b = 0; b < B; ++b) {
      if (!d.across) {
        for (int64_t k = 0; k < K; ++k) {
          S p = pp[(t * K + k) * B + b];
          ds[k] = dr[k * B + b] * p * (S(1) - p);
        }
      } else {  // y = softmax(s) (renormalised: over the active RIMs, y = rprob; raw: y = probs, dy = dr * mask)
        S acc = 0;
        for (int64_t k = 0; k < K; ++k) {
          const int64_t i = (t * K + k) * B + b;
          S y = d.renorm ? rp[i] : pp[i];
          S dy = (d.renorm || mt[k * B + b]) ? dr[k * B + b] : S(0);
          ds[k] = dy;
          acc += y * dy;
        }
        for (int64_t k = 0; k < K; ++k) {
          const int64_t i = (t * K + k) * B + b;
          ds[k] = (d.renorm ? rp[i] : pp[i]) * (ds[k] - acc);
        }
      }
      const S* kb_ = key + (t * B + b) * d.dk;
      S* dkb = dkp + (t * B + b) * d.dk;
      for (int64_t k = 0; k < K; ++k) {
        const S* q = hqt + (k * B + b) * GQ + G;
        S* dq = dhqp + row(k * B + b) * GQ + G;
        for (int64_t j = 0; j < d.dk; ++j) { dq[j] = ds[k] * kb_[j]; dkb[j] += ds[k] * q[j]; }
      }
    }
    for (int64_t kb = 0; kb < KB; ++kb) {
      const S* g = dhqp + row(kb) * GQ;
      S* db = dbs + (kb / B) * GQ;
      for (int64_t j = 0; j < GQ; ++j) db[j] += g[j];
    }
    product<S>(dh, Tensor(), d_hq.select(1, t), w_stateT, true, d.small);
    dhp = dh.data_ptr<S>();
    // resets: the state before this step was the initial state for these samples
    for (int64_t b = 0; b < B; ++b) {
      if (!st[t * B + b]) continue;
      for (int64_t k = 0; k < K; ++k) {
        for (int64_t j = 0; j < H; ++j) {
          dini[k * H + j] += dhp[(k * B + b) * H + j];
          dhp[(k * B + b) * H + j] = 0;
          if (d.lstm) { dini[(K + k) * H + j] += dcp[(k * B + b) * H + j]; dcp[(k * B + b) * H + j] = 0; }
        }
      }
    }
  }
  // weight gradients of all steps at once: [K, in, T*B] x [K, T*B, out] (inputs laid out [K, T, B, .])
  auto wgrad = [&](const Tensor& x, const Tensor& g) {
    Tensor xs = x.view({K, T * B, x.size(3)}).transpose(1, 2), gs = g.view({K, T * B, g.size(3)});
    if (!d.onednn) return at::bmm(xs, gs);
    Tensor dw = at::empty({K, x.size(3), g.size(3)}, x.options());
    for (int64_t k = 0; k < K; ++k) dw[k].copy_(onednn_mm(xs[k], gs[k]));
    return dw;
  };
  Tensor d_w_state = wgrad(hprev, d_hq);
  Tensor d_w_comm = d.comm ? wgrad(src, d_qkv) : none;
  Tensor d_w_out = d.comm ? wgrad(read, d_go) : none;
  return {dh, dc, d_values, d_keys, d_w_state, d_b_state, d_b_in, d_w_comm, d_w_out, d_b_out, d_init};
}

// saved: rims_forward's result; values, keys, starts: the whole batch's (the chunks' come from saved).
std::vector<Tensor> rims_backward(const std::vector<Tensor>& saved, const Tensor& values, const Tensor& keys,
                                  const Tensor& w_state, const Tensor& w_comm, const Tensor& w_out,
                                  const Tensor& starts, const Tensor& d_out, const Tensor& d_hT,
                                  const Tensor& d_cT, c10::IntArrayRef cfg) {
  at::NoGradGuard no_grad;
  check_inputs({&values, &keys, &w_state, &w_comm, &w_out, &starts, &d_out, &d_hT, &d_cT});
  TORCH_CHECK(saved.size() > 5 && (saved.size() - 5) % PER_CHUNK == 0, "rims_rl_cpp: bad saved tensors");
  const int64_t B = values.size(1), n = (saved.size() - 5) / PER_CHUNK;
  std::vector<std::vector<Tensor>> parts(n);
  run_chunks(n, [&](int64_t i) {
    at::NoGradGuard no_grad_here;
    const auto first = saved.begin() + 5 + i * PER_CHUNK;
    const std::vector<Tensor> sv(first, first + NSAVED);
    const Tensor &v = first[NSAVED], &k = first[NSAVED + 1], &st = first[NSAVED + 2];
    Dims d = dims_of(v, k, w_state, cfg);
    AT_DISPATCH_FLOATING_TYPES(values.scalar_type(), "rims_backward", [&] {
      parts[i] = backward_impl<scalar_t>(d, sv, v, k, w_state, w_comm, w_out, st, cut(d_out, 2, i, n, B),
                                         cut(d_hT, 1, i, n, B), cut(d_cT, 1, i, n, B));
    });
  });
  // d_h0, d_c0, d_values, d_keys joined along the batch; the parameter gradients summed
  std::vector<Tensor> result = {join(parts, 0, 1), join(parts, 1, 1), join(parts, 2, 1), join(parts, 3, 1)};
  for (size_t j = 4; j < parts[0].size(); ++j) result.push_back(total(parts, j));
  return result;
}

}  // namespace

TORCH_LIBRARY(rims_rl_cpp, m) {
  m.def("forward", &rims_forward);
  m.def("backward", &rims_backward);
  m.def("config_fields", &config_fields);
}
