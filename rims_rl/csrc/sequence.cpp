// The RIMs recurrence over a whole sequence, forward and backward, as two compiled ops
// (torch.ops.rims_rl_cpp.forward / .backward). Built on first use by rims_rl/kernel.py.
//
// Same arithmetic as the Python fused step (rims_rl/fused.py) and the op-by-op reference step
// (RIMs._step): one input row, one input head, folded values, LSTM or GRU cells, selection "null" or
// "across" (renormalised or not), k <= K, communication on or off with keys/values of inactive RIMs
// from the tentative update or the kept state, block_inactive_grad on or off, resets. The per-RIM
// products run as at::bmm / at::baddbmm (3 per step each way); everything elementwise runs in plain
// loops here, so a step costs a handful of dispatches instead of a hundred Python-level ops.
// Weight gradients of the per-step products are summed over all steps in one bmm each at the end.
//
// Layouts (all contiguous): state [K, B, H]; values [K, T, B, G] (input-to-gate pre-activations of
// the value, G = 4H lstm / 3H gru); keys [T, B, dk] (pre-scaled); w_state [K, H, G + dk] (hidden to
// gates | queries); b_state [K, 1, G + dk]; b_in [K, 1, G] (gru; lstm: empty, inside b_state);
// w_comm [K, H, Q] with Q = heads * (2 ck + cv), per head [query | key | value]; w_out [K, heads cv, 2H];
// b_out [K, 1, 2H]; init [S, K, H]; starts [T, B] uint8.
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/ops/baddbmm.h>
#include <ATen/ops/bmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/sum.h>
#include <torch/library.h>

#include <cmath>
#include <vector>

namespace {

using at::Tensor;

enum Cfg { LSTM, TOPK, ACROSS, RENORM, COMM, KEPT, BLOCK, HEADS, CK, CV, NCFG };

template <typename S> inline S sigm(S x) { return S(1) / (S(1) + std::exp(-x)); }

struct Dims {
  int64_t T, K, B, H, G, dk, GQ, Q, HV, heads, ck, cv, topk;
  bool lstm, across, renorm, comm, kept, block;
};

Dims dims_of(const Tensor& values, const Tensor& keys, const Tensor& w_state, c10::IntArrayRef cfg) {
  TORCH_CHECK(cfg.size() == NCFG, "rims_rl_cpp: bad config");
  Dims d;
  d.K = values.size(0); d.T = values.size(1); d.B = values.size(2); d.G = values.size(3);
  d.H = w_state.size(1); d.dk = keys.size(2); d.GQ = d.G + d.dk;
  d.lstm = cfg[LSTM]; d.topk = cfg[TOPK]; d.across = cfg[ACROSS]; d.renorm = cfg[RENORM];
  d.comm = cfg[COMM]; d.kept = cfg[KEPT]; d.block = cfg[BLOCK];
  d.heads = cfg[HEADS]; d.ck = cfg[CK]; d.cv = cfg[CV];
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

template <typename S>
std::vector<Tensor> forward_impl(const Dims& d, const Tensor& h0, const Tensor& c0, const Tensor& values,
                                 const Tensor& keys, const Tensor& w_state, const Tensor& b_state,
                                 const Tensor& b_in, const Tensor& w_comm, const Tensor& w_out,
                                 const Tensor& b_out, const Tensor& init, const Tensor& starts) {
  const int64_t T = d.T, K = d.K, B = d.B, H = d.H, G = d.G, GQ = d.GQ, Q = d.Q, HV = d.HV;
  const int64_t KBH = K * B * H;
  auto opt = h0.options();
  Tensor out = at::empty({T, K, B, H}, opt);            // h after each step
  Tensor hprev = at::empty({T, K, B, H}, opt);          // h before each step (after resets)
  Tensor cprev = d.lstm ? at::empty({T + 1, K, B, H}, opt) : at::empty({0}, opt);  // c before; [T]: final
  Tensor hq = at::empty({T, K, B, GQ}, opt);
  Tensor act = at::empty({T, K, B, G}, opt);            // gate activations
  Tensor tc = d.lstm ? at::empty({T, K, B, H}, opt) : at::empty({0}, opt);
  Tensor hnew = at::empty({T, K, B, H}, opt);           // tentative update (before communication)
  Tensor src = d.comm ? at::empty({T, K, B, H}, opt) : at::empty({0}, opt);
  Tensor qkv = d.comm ? at::empty({T, K, B, Q}, opt) : at::empty({0}, opt);
  Tensor att = d.comm ? at::empty({T, K, K, B, d.heads}, opt) : at::empty({0}, opt);
  Tensor read = d.comm ? at::empty({T, K, B, HV}, opt) : at::empty({0}, opt);
  Tensor go = d.comm ? at::empty({T, K, B, 2 * H}, opt) : at::empty({0}, opt);  // sigmoid(gate), tanh(update)
  Tensor probs = at::empty({T, K, B}, opt);             // attention on the row (before the mask)
  Tensor rprob = at::empty({T, K, B}, opt);             // what the cell reads with
  Tensor mask = at::empty({T, K, B}, opt.dtype(at::kBool));
  Tensor go_pre = d.comm ? at::empty({K, B, 2 * H}, opt) : Tensor();

  const S* v = values.data_ptr<S>();
  const S* key = keys.data_ptr<S>();
  const S* bin = d.lstm ? nullptr : b_in.data_ptr<S>();
  const S* ini = init.data_ptr<S>();
  const uint8_t* st = starts.data_ptr<uint8_t>();
  S* o = out.data_ptr<S>();
  S* hp = hprev.data_ptr<S>();
  S* cp = d.lstm ? cprev.data_ptr<S>() : nullptr;
  S* hqp = hq.data_ptr<S>();
  S* ap = act.data_ptr<S>();
  S* tcp = d.lstm ? tc.data_ptr<S>() : nullptr;
  S* hn = hnew.data_ptr<S>();
  S* pp = probs.data_ptr<S>();
  S* rp = rprob.data_ptr<S>();
  uint8_t* mp = reinterpret_cast<uint8_t*>(mask.data_ptr<bool>());
  std::vector<S> s(K), e(K);
  std::vector<uint8_t> msel(K);
  std::vector<S> c_new(d.lstm ? KBH : 0);

  for (int64_t t = 0; t < T; ++t) {
    S* h = hp + t * KBH;
    const S* hsrc = t == 0 ? h0.data_ptr<S>() : o + (t - 1) * KBH;
    std::copy(hsrc, hsrc + KBH, h);
    S* c = d.lstm ? cp + t * KBH : nullptr;
    if (d.lstm && t == 0) std::copy(c0.data_ptr<S>(), c0.data_ptr<S>() + KBH, c);
    for (int64_t b = 0; b < B; ++b) {
      if (!st[t * B + b]) continue;
      for (int64_t k = 0; k < K; ++k) {
        std::copy(ini + k * H, ini + (k + 1) * H, h + (k * B + b) * H);
        if (d.lstm) std::copy(ini + (K + k) * H, ini + (K + k + 1) * H, c + (k * B + b) * H);
      }
    }
    Tensor hq_t = hq.select(0, t);
    at::baddbmm_out(hq_t, b_state, hprev.select(0, t), w_state);
    S* hqt = hqp + t * K * B * GQ;
    // input attention, selection
    for (int64_t b = 0; b < B; ++b) {
      const S* kb = key + (t * B + b) * d.dk;
      for (int64_t k = 0; k < K; ++k) {
        const S* q = hqt + (k * B + b) * GQ + G;
        S acc = 0;
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
    // cells
    S* at_ = ap + t * K * B * G;
    S* hnt = hn + t * KBH;
    for (int64_t k = 0; k < K; ++k) {
      for (int64_t b = 0; b < B; ++b) {
        const int64_t kb = k * B + b;
        const S r = rp[(t * K + k) * B + b];
        const S* vin = v + ((k * T + t) * B + b) * G;
        const S* gh = hqt + kb * GQ;
        S* a = at_ + kb * G;
        if (d.lstm) {
          const S* cc = c + kb * H;
          for (int64_t j = 0; j < H; ++j) {
            S i = sigm(gh[j] + r * vin[j]);
            S f = sigm(gh[H + j] + r * vin[H + j]);
            S og = sigm(gh[2 * H + j] + r * vin[2 * H + j]);
            S g = std::tanh(gh[3 * H + j] + r * vin[3 * H + j]);
            S cn = f * cc[j] + i * g;
            S tcn = std::tanh(cn);
            a[j] = i; a[H + j] = f; a[2 * H + j] = og; a[3 * H + j] = g;
            tcp[t * KBH + kb * H + j] = tcn;
            c_new[kb * H + j] = cn;
            hnt[kb * H + j] = og * tcn;
          }
        } else {
          const S* bi = bin + k * G;
          const S* hh = h + kb * H;
          for (int64_t j = 0; j < H; ++j) {
            S rr = sigm(bi[j] + r * vin[j] + gh[j]);
            S z = sigm(bi[H + j] + r * vin[H + j] + gh[H + j]);
            S n = std::tanh(bi[2 * H + j] + r * vin[2 * H + j] + rr * gh[2 * H + j]);
            a[j] = rr; a[H + j] = z; a[2 * H + j] = n;
            hnt[kb * H + j] = n + z * (hh[j] - n);
          }
        }
      }
    }
    const uint8_t* mt = mp + t * K * B;
    S* ot = o + t * KBH;
    if (d.comm) {
      S* srct = src.data_ptr<S>() + t * KBH;
      for (int64_t kb = 0; kb < K * B; ++kb) {
        const S* from = (!d.kept || mt[kb]) ? hnt + kb * H : h + kb * H;
        std::copy(from, from + H, srct + kb * H);
      }
      Tensor qkv_t = qkv.select(0, t);
      at::bmm_out(qkv_t, src.select(0, t), w_comm);
      const S* qp = qkv.data_ptr<S>() + t * K * B * Q;
      S* att_t = att.data_ptr<S>() + t * K * K * B * d.heads;
      S* rd = read.data_ptr<S>() + t * K * B * HV;
      const int64_t span = 2 * d.ck + d.cv;
      for (int64_t b = 0; b < B; ++b) {
        for (int64_t hd = 0; hd < d.heads; ++hd) {
          for (int64_t qi = 0; qi < K; ++qi) {
            const S* qv = qp + (qi * B + b) * Q + hd * span;
            S mx = -INFINITY;
            for (int64_t kk = 0; kk < K; ++kk) {
              const S* kv = qp + (kk * B + b) * Q + hd * span + d.ck;
              S acc = 0;
              for (int64_t j = 0; j < d.ck; ++j) acc += qv[j] * kv[j];
              e[kk] = acc;
              mx = std::max(mx, acc);
            }
            S sum = 0;
            for (int64_t kk = 0; kk < K; ++kk) sum += (e[kk] = std::exp(e[kk] - mx));
            S* r = rd + (qi * B + b) * HV + hd * d.cv;
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
      at::baddbmm_out(go_pre, b_out, read.select(0, t), w_out);
      const S* gp = go_pre.data_ptr<S>();
      S* gs = go.data_ptr<S>() + t * K * B * 2 * H;
      for (int64_t kb = 0; kb < K * B; ++kb) {
        for (int64_t j = 0; j < H; ++j) {
          S sg = sigm(gp[kb * 2 * H + j]);
          S tu = std::tanh(gp[kb * 2 * H + H + j]);
          gs[kb * 2 * H + j] = sg;
          gs[kb * 2 * H + H + j] = tu;
          ot[kb * H + j] = mt[kb] ? hnt[kb * H + j] + sg * tu : h[kb * H + j];
        }
      }
    } else {
      for (int64_t kb = 0; kb < K * B; ++kb)
        for (int64_t j = 0; j < H; ++j) ot[kb * H + j] = mt[kb] ? hnt[kb * H + j] : h[kb * H + j];
    }
    if (d.lstm) {
      S* cn = cp + (t + 1) * KBH;
      for (int64_t kb = 0; kb < K * B; ++kb)
        for (int64_t j = 0; j < H; ++j) cn[kb * H + j] = mt[kb] ? c_new[kb * H + j] : c[kb * H + j];
    }
  }
  return {out, cprev, mask, probs, att, hprev, hq, act, tc, hnew, src, qkv, read, go, rprob};
}

std::vector<Tensor> rims_forward(const Tensor& h0, const Tensor& c0, const Tensor& values, const Tensor& keys,
                                 const Tensor& w_state, const Tensor& b_state, const Tensor& b_in,
                                 const Tensor& w_comm, const Tensor& w_out, const Tensor& b_out,
                                 const Tensor& init, const Tensor& starts, c10::IntArrayRef cfg) {
  at::NoGradGuard no_grad;
  Dims d = dims_of(values, keys, w_state, cfg);
  std::vector<Tensor> result;
  AT_DISPATCH_FLOATING_TYPES(h0.scalar_type(), "rims_forward", [&] {
    result = forward_impl<scalar_t>(d, h0, c0, values, keys, w_state, b_state, b_in, w_comm, w_out, b_out,
                                    init, starts);
  });
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
  const int64_t KBH = K * B * H;
  const Tensor &cprev = sv[1], &mask = sv[2], &probs = sv[3], &att = sv[4], &hprev = sv[5], &hq = sv[6],
               &act = sv[7], &tc = sv[8], &hnew = sv[9], &src = sv[10], &qkv = sv[11], &read = sv[12],
               &go = sv[13], &rprob = sv[14];
  auto opt = d_out.options();
  Tensor d_values = at::empty({K, T, B, G}, opt);
  Tensor d_keys = at::zeros({T, B, d.dk}, opt);
  Tensor d_hq = at::empty({T, K, B, GQ}, opt);
  Tensor d_qkv = d.comm ? at::zeros({T, K, B, Q}, opt) : Tensor();
  Tensor d_go = d.comm ? at::empty({T, K, B, 2 * H}, opt) : Tensor();
  Tensor d_read = d.comm ? at::empty({K, B, HV}, opt) : Tensor();
  Tensor d_src = d.comm ? at::empty({K, B, H}, opt) : Tensor();
  Tensor d_init = at::zeros({d.lstm ? 2 : 1, K, H}, opt);
  Tensor d_b_in = d.lstm ? at::empty({0}, opt) : at::zeros({K, 1, G}, opt);
  Tensor dh = d_hT.clone();                                        // carried d h
  Tensor dc = d.lstm ? d_cT.clone() : Tensor();                    // carried d c
  Tensor dhn = at::empty({K, B, H}, opt);
  Tensor w_stateT = w_state.transpose(1, 2).contiguous();
  Tensor w_commT = d.comm ? w_comm.transpose(1, 2).contiguous() : Tensor();
  Tensor w_outT = d.comm ? w_out.transpose(1, 2).contiguous() : Tensor();

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
  const S* hnp = hnew.data_ptr<S>();
  const S* dop = d_out.data_ptr<S>();
  S* dvp = d_values.data_ptr<S>();
  S* dkp = d_keys.data_ptr<S>();
  S* dhqp = d_hq.data_ptr<S>();
  S* dbin = d.lstm ? nullptr : d_b_in.data_ptr<S>();
  S* dini = d_init.data_ptr<S>();
  S* dhp = dh.data_ptr<S>();
  S* dcp = d.lstm ? dc.data_ptr<S>() : nullptr;
  S* dhnp = dhn.data_ptr<S>();
  std::vector<S> dr(K * B), ds(K), datt(K);

  for (int64_t t = T - 1; t >= 0; --t) {
    const uint8_t* mt = mp + t * K * B;
    const S* dot = dop + t * KBH;
    // masked write: dh (incoming to h_out) -> active: the update, inactive: the previous state
    for (int64_t kb = 0; kb < K * B; ++kb) {
      for (int64_t j = 0; j < H; ++j) {
        S g = dhp[kb * H + j] + dot[kb * H + j];
        dhnp[kb * H + j] = mt[kb] ? g : S(0);      // into h_c (= h_new + comm)
        dhp[kb * H + j] = mt[kb] ? S(0) : g;       // into h_prev
      }
    }
    if (d.comm) {
      const S* gs = go.data_ptr<S>() + t * K * B * 2 * H;
      S* dg = d_go.data_ptr<S>() + t * K * B * 2 * H;
      for (int64_t kb = 0; kb < K * B; ++kb) {
        for (int64_t j = 0; j < H; ++j) {
          S g = dhnp[kb * H + j], sg = gs[kb * 2 * H + j], tu = gs[kb * 2 * H + H + j];
          dg[kb * 2 * H + j] = g * tu * sg * (S(1) - sg);
          dg[kb * 2 * H + H + j] = g * sg * (S(1) - tu * tu);
        }
      }
      at::bmm_out(d_read, d_go.select(0, t), w_outT);
      const S* drd = d_read.data_ptr<S>();
      const S* qp = qkv.data_ptr<S>() + t * K * B * Q;
      const S* att_t = att.data_ptr<S>() + t * K * K * B * d.heads;
      S* dq = d_qkv.data_ptr<S>() + t * K * B * Q;
      const int64_t span = 2 * d.ck + d.cv;
      for (int64_t b = 0; b < B; ++b) {
        for (int64_t hd = 0; hd < d.heads; ++hd) {
          for (int64_t qi = 0; qi < K; ++qi) {
            const S* g = drd + (qi * B + b) * HV + hd * d.cv;
            S dot_sum = 0;
            for (int64_t kk = 0; kk < K; ++kk) {
              const S* vv = qp + (kk * B + b) * Q + hd * span + 2 * d.ck;
              S w = att_t[((qi * K + kk) * B + b) * d.heads + hd];
              S acc = 0;
              S* dv = dq + (kk * B + b) * Q + hd * span + 2 * d.ck;
              for (int64_t j = 0; j < d.cv; ++j) { acc += g[j] * vv[j]; dv[j] += w * g[j]; }
              datt[kk] = acc;
              dot_sum += w * acc;
            }
            const S* qv = qp + (qi * B + b) * Q + hd * span;
            S* dqv = dq + (qi * B + b) * Q + hd * span;
            for (int64_t kk = 0; kk < K; ++kk) {
              S w = att_t[((qi * K + kk) * B + b) * d.heads + hd];
              S dsc = w * (datt[kk] - dot_sum);
              const S* kv = qp + (kk * B + b) * Q + hd * span + d.ck;
              S* dkv = dq + (kk * B + b) * Q + hd * span + d.ck;
              for (int64_t j = 0; j < d.ck; ++j) { dqv[j] += dsc * kv[j]; dkv[j] += dsc * qv[j]; }
            }
          }
        }
      }
      at::bmm_out(d_src, d_qkv.select(0, t), w_commT);
      const S* dsp = d_src.data_ptr<S>();
      for (int64_t kb = 0; kb < K * B; ++kb) {
        for (int64_t j = 0; j < H; ++j) {
          S g = dsp[kb * H + j];
          if (d.kept && !mt[kb]) dhp[kb * H + j] += g;  // keys/values of the kept state
          else dhnp[kb * H + j] += g;
        }
      }
    }
    if (d.block)
      for (int64_t kb = 0; kb < K * B; ++kb)
        if (!mt[kb]) std::fill(dhnp + kb * H, dhnp + (kb + 1) * H, S(0));
    // cells
    const S* at_ = ap + t * K * B * G;
    const S* hqt = hqp + t * K * B * GQ;
    S* dhqt = dhqp + t * K * B * GQ;
    const S* hpt = hpp + t * KBH;
    for (int64_t k = 0; k < K; ++k) {
      for (int64_t b = 0; b < B; ++b) {
        const int64_t kb = k * B + b;
        const S* a = at_ + kb * G;
        const S* vin = v + ((k * T + t) * B + b) * G;
        S* dvin = dvp + ((k * T + t) * B + b) * G;
        S* dgh = dhqt + kb * GQ;
        const S r = rp[(t * K + k) * B + b];
        S dread = 0;
        if (d.lstm) {
          const S* cc = cpp_ + t * KBH + kb * H;
          const S* tcn = tcp + t * KBH + kb * H;
          for (int64_t j = 0; j < H; ++j) {
            S i = a[j], f = a[H + j], og = a[2 * H + j], g = a[3 * H + j];
            S dhv = dhnp[kb * H + j];
            S dct = dhv * og * (S(1) - tcn[j] * tcn[j]) + (mt[kb] ? dcp[kb * H + j] : S(0));
            S di = dct * g * i * (S(1) - i);
            S df = dct * cc[j] * f * (S(1) - f);
            S dog = dhv * tcn[j] * og * (S(1) - og);
            S dg = dct * i * (S(1) - g * g);
            dcp[kb * H + j] = (mt[kb] ? S(0) : dcp[kb * H + j]) + dct * f;
            dgh[j] = di; dgh[H + j] = df; dgh[2 * H + j] = dog; dgh[3 * H + j] = dg;
            dread += di * vin[j] + df * vin[H + j] + dog * vin[2 * H + j] + dg * vin[3 * H + j];
            dvin[j] = di * r; dvin[H + j] = df * r; dvin[2 * H + j] = dog * r; dvin[3 * H + j] = dg * r;
          }
        } else {
          const S* ghn = hqt + kb * GQ + 2 * H;
          S* dbi = dbin + k * G;
          for (int64_t j = 0; j < H; ++j) {
            S rr = a[j], z = a[H + j], n = a[2 * H + j];
            S dhv = dhnp[kb * H + j];
            S dpn = dhv * (S(1) - z) * (S(1) - n * n);
            S dr_ = dpn * ghn[j] * rr * (S(1) - rr);
            S dz = dhv * (hpt[kb * H + j] - n) * z * (S(1) - z);
            dhp[kb * H + j] += dhv * z;
            dgh[j] = dr_; dgh[H + j] = dz; dgh[2 * H + j] = dpn * rr;
            dread += dr_ * vin[j] + dz * vin[H + j] + dpn * vin[2 * H + j];
            dvin[j] = dr_ * r; dvin[H + j] = dz * r; dvin[2 * H + j] = dpn * r;
            dbi[j] += dr_; dbi[H + j] += dz; dbi[2 * H + j] += dpn;
          }
        }
        dr[kb] = dread;
      }
    }
    // selection -> scores -> queries and keys
    for (int64_t b = 0; b < B; ++b) {
      if (!d.across) {
        for (int64_t k = 0; k < K; ++k) {
          S p = pp[(t * K + k) * B + b];
          ds[k] = dr[k * B + b] * p * (S(1) - p);
        }
      } else {
        // y = softmax(s) (renorm: over the active RIMs, y = rprob; raw: y = probs, dy = dr * mask)
        S acc = 0;
        for (int64_t k = 0; k < K; ++k) {
          const int64_t i = (t * K + k) * B + b;
          S y = d.renorm ? rp[i] : pp[i];
          S dy = d.renorm ? dr[k * B + b] : (mt[k * B + b] ? dr[k * B + b] : S(0));
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
        S* dq = dhqt + (k * B + b) * GQ + G;
        for (int64_t j = 0; j < d.dk; ++j) { dq[j] = ds[k] * kb_[j]; dkb[j] += ds[k] * q[j]; }
      }
    }
    dh.baddbmm_(d_hq.select(0, t), w_stateT);
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
  // weight gradients of all steps at once: [K, in, S*B] x [K, S*B, out]
  auto wgrad = [&](const Tensor& x, const Tensor& g) {
    const int64_t in = x.size(3), outn = g.size(3);
    return at::bmm(x.permute({1, 3, 0, 2}).reshape({K, in, T * B}), g.permute({1, 0, 2, 3}).reshape({K, T * B, outn}));
  };
  auto bgrad = [&](const Tensor& g) { return g.sum(at::IntArrayRef{0, 2}).unsqueeze(1); };
  Tensor d_w_state = wgrad(hprev, d_hq), d_b_state = bgrad(d_hq);
  Tensor d_w_comm, d_w_out, d_b_out;
  if (d.comm) {
    d_w_comm = wgrad(src, d_qkv);
    d_w_out = wgrad(read, d_go);
    d_b_out = bgrad(d_go);
  } else {
    d_w_comm = d_w_out = d_b_out = at::empty({0}, opt);
  }
  return {dh, d.lstm ? dc : at::empty({0}, opt), d_values, d_keys, d_w_state, d_b_state, d_b_in,
          d_w_comm, d_w_out, d_b_out, d_init};
}

std::vector<Tensor> rims_backward(const std::vector<Tensor>& saved, const Tensor& values, const Tensor& keys,
                                  const Tensor& w_state, const Tensor& w_comm, const Tensor& w_out,
                                  const Tensor& starts, const Tensor& d_out, const Tensor& d_hT,
                                  const Tensor& d_cT, c10::IntArrayRef cfg) {
  at::NoGradGuard no_grad;
  Dims d = dims_of(values, keys, w_state, cfg);
  std::vector<Tensor> result;
  AT_DISPATCH_FLOATING_TYPES(values.scalar_type(), "rims_backward", [&] {
    result = backward_impl<scalar_t>(d, saved, values, keys, w_state, w_comm, w_out, starts, d_out, d_hT, d_cT);
  });
  return result;
}

}  // namespace

TORCH_LIBRARY(rims_rl_cpp, m) {
  m.def("forward", &rims_forward);
  m.def("backward", &rims_backward);
}
