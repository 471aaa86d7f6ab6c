// 2-D fp32 convolutions (forward, backward-data, backward-weights) in oneDNN, as XLA FFI
// handlers for the CPU backend. See genimg/ops/onednn.py for the Python side.
//
// Layouts are those of `lax.conv_general_dilated(..., ("NHWC", "HWIO", "NHWC"))`: x [N, H, W, C],
// w [KH, KW, C, O], y [N, OH, OW, O]; explicit strides and (lo, hi) padding per spatial axis;
// no dilation, no groups. Every handler returns an FFI error (never aborts) on bad input.
//
// The library is not linked at build time: the dnnl_* symbols stay undefined here and are
// resolved from libdnnl.so.3, which onednn.py loads with RTLD_GLOBAL before this file's .so.
//
// Primitives are created once per (op, shape, stride, padding) and cached: creating one costs
// far more than running it at these sizes. XLA:CPU may run independent thunks concurrently,
// so the cache is guarded by a mutex, every thread has its own oneDNN stream, and scratchpads
// are user-provided from a per-thread buffer that only grows.

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

enum class Op : int64_t { kFwd = 0, kBwdData = 1, kBwdWeights = 2 };

// Everything that decides a primitive: op, N H W C, O KH KW, OH OW, strides, paddings.
struct Geom {
  int64_t n, h, w, c, o, kh, kw, oh, ow, sh, sw, pt, pb, pl, pr;
};
using Key = std::array<int64_t, 16>;

struct KeyHash {
  size_t operator()(const Key& k) const {
    size_t h = 1469598103934665603ull;
    for (int64_t v : k) h = (h ^ static_cast<size_t>(v)) * 1099511628211ull;
    return h;
  }
};

struct Entry {
  dnnl::primitive prim;
  dnnl::memory::desc src, wei, dst, scratch;
  // The primitive's own weight layout (oneDNN chooses, usually blocked) and the reorder from
  // (forward, backward-data) or to (backward-weights) the user's HWIO; no reorder if equal.
  dnnl::memory::desc wei_prim;
  dnnl::reorder reorder;
  bool needs_reorder = false;
};

dnnl::engine& Engine() {
  static dnnl::engine* eng = new dnnl::engine(dnnl::engine::kind::cpu, 0);  // never freed
  return *eng;
}

dnnl::stream& ThreadStream() {
  thread_local std::unique_ptr<dnnl::stream> s;
  if (!s) s = std::make_unique<dnnl::stream>(Engine());
  return *s;
}

// Per-thread buffers that only grow: slot 0 holds the scratchpad, slot 1 the weights in the
// primitive's layout. Execution is synchronous, so a thread never uses a slot twice at once.
void* ThreadBuffer(int slot, size_t bytes) {
  thread_local std::vector<char> bufs[2];
  std::vector<char>& buf = bufs[slot];
  if (buf.size() < bytes) buf.resize(bytes);
  return buf.data();
}

std::mutex cache_mu;
std::unordered_map<Key, std::shared_ptr<Entry>, KeyHash>& Cache() {
  static auto* cache = new std::unordered_map<Key, std::shared_ptr<Entry>, KeyHash>();
  return *cache;
}

std::shared_ptr<Entry> Create(Op op, const Geom& g) {
  dnnl::engine& eng = Engine();
  dnnl::memory::desc src({g.n, g.c, g.h, g.w}, dt::f32, tag::nhwc);
  dnnl::memory::desc wei({g.o, g.c, g.kh, g.kw}, dt::f32, tag::hwio);
  // Blocked weights let oneDNN use its direct (brgemm/jit) kernels for all three ops; with
  // plain HWIO both backward ops fall back to a slower gemm-based implementation.
  dnnl::memory::desc wei_any({g.o, g.c, g.kh, g.kw}, dt::f32, tag::any);
  dnnl::memory::desc dst({g.n, g.o, g.oh, g.ow}, dt::f32, tag::nhwc);
  dnnl::memory::dims strides{g.sh, g.sw}, pad_l{g.pt, g.pl}, pad_r{g.pb, g.pr};
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  auto e = std::make_shared<Entry>();
  e->src = src;
  e->wei = wei;
  e->dst = dst;
  auto fwd = dnnl::convolution_forward::primitive_desc(
      eng, dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, src, wei_any,
      dst, strides, pad_l, pad_r, attr);
  if (op == Op::kFwd) {
    e->prim = dnnl::convolution_forward(fwd);
    e->scratch = fwd.scratchpad_desc();
    e->wei_prim = fwd.weights_desc();
  } else if (op == Op::kBwdData) {
    auto pd = dnnl::convolution_backward_data::primitive_desc(
        eng, dnnl::algorithm::convolution_direct, src, wei_any, dst, strides, pad_l, pad_r, fwd,
        attr);
    e->prim = dnnl::convolution_backward_data(pd);
    e->scratch = pd.scratchpad_desc();
    e->wei_prim = pd.weights_desc();
  } else {
    auto pd = dnnl::convolution_backward_weights::primitive_desc(
        eng, dnnl::algorithm::convolution_direct, src, wei_any, dst, strides, pad_l, pad_r, fwd,
        attr);
    e->prim = dnnl::convolution_backward_weights(pd);
    e->scratch = pd.scratchpad_desc();
    e->wei_prim = pd.diff_weights_desc();
  }
  e->needs_reorder = e->wei_prim != wei;
  if (e->needs_reorder) {
    e->reorder = op == Op::kBwdWeights
                     ? dnnl::reorder(dnnl::reorder::primitive_desc(eng, e->wei_prim, eng, wei))
                     : dnnl::reorder(dnnl::reorder::primitive_desc(eng, wei, eng, e->wei_prim));
  }
  return e;
}

std::shared_ptr<Entry> Lookup(Op op, const Geom& g) {
  Key key{static_cast<int64_t>(op), g.n, g.h, g.w, g.c, g.o, g.kh, g.kw,
          g.oh, g.ow, g.sh, g.sw, g.pt, g.pb, g.pl, g.pr};
  {
    std::lock_guard<std::mutex> lock(cache_mu);
    auto it = Cache().find(key);
    if (it != Cache().end()) return it->second;
  }
  // Created outside the lock: two threads may both build the same entry; one wins, no harm.
  std::shared_ptr<Entry> e = Create(op, g);
  std::lock_guard<std::mutex> lock(cache_mu);
  return Cache().emplace(key, std::move(e)).first->second;
}

// Checks shapes and fills `g` from x [N,H,W,C], w [KH,KW,C,O], y [N,OH,OW,O].
ffi::Error MakeGeom(ffi::Span<const int64_t> x, ffi::Span<const int64_t> w,
                    ffi::Span<const int64_t> y, int64_t sh, int64_t sw, int64_t pt, int64_t pb,
                    int64_t pl, int64_t pr, Geom* g) {
  if (x.size() != 4 || w.size() != 4 || y.size() != 4) {
    return ffi::Error::InvalidArgument("onednn conv: x, w and y must have rank 4 (NHWC/HWIO)");
  }
  *g = Geom{x[0], x[1], x[2], x[3], w[3], w[0], w[1], y[1], y[2], sh, sw, pt, pb, pl, pr};
  if (w[2] != x[3] || y[0] != x[0] || y[3] != w[3]) {
    return ffi::Error::InvalidArgument("onednn conv: channel or batch sizes do not match");
  }
  if (sh < 1 || sw < 1 || pt < 0 || pb < 0 || pl < 0 || pr < 0) {
    return ffi::Error::InvalidArgument("onednn conv: strides must be >= 1 and padding >= 0");
  }
  if (g->oh != (g->h + pt + pb - g->kh) / sh + 1 || g->ow != (g->w + pl + pr - g->kw) / sw + 1 ||
      g->h + pt + pb < g->kh || g->w + pl + pr < g->kw) {
    return ffi::Error::InvalidArgument("onednn conv: output size does not match the geometry");
  }
  for (int64_t d : {g->n, g->h, g->w, g->c, g->o, g->kh, g->kw}) {
    if (d < 1) return ffi::Error::InvalidArgument("onednn conv: zero-size dimension");
  }
  // oneDNN wants the high padding that the last window actually reaches (it may be negative
  // when trailing rows are never read); the result is the same.
  g->pb = (g->oh - 1) * sh + g->kh - g->h - pt;
  g->pr = (g->ow - 1) * sw + g->kw - g->w - pl;
  return ffi::Error::Success();
}

ffi::Error Run(Op op, const Geom& g, void* src, void* wei, void* dst) {
  try {
    std::shared_ptr<Entry> e = Lookup(op, g);
    dnnl::engine& eng = Engine();
    std::unordered_map<int, dnnl::memory> args;
    const int src_arg = DNNL_ARG_SRC;
    const int wei_arg = op == Op::kBwdWeights ? DNNL_ARG_DIFF_WEIGHTS : DNNL_ARG_WEIGHTS;
    const int dst_arg = op == Op::kFwd ? DNNL_ARG_DST : DNNL_ARG_DIFF_DST;
    args.emplace(op == Op::kBwdData ? DNNL_ARG_DIFF_SRC : src_arg, dnnl::memory(e->src, eng, src));
    dnnl::memory user_wei(e->wei, eng, wei);
    dnnl::memory prim_wei = user_wei;
    if (e->needs_reorder) {
      prim_wei = dnnl::memory(e->wei_prim, eng, ThreadBuffer(1, e->wei_prim.get_size()));
    }
    args.emplace(wei_arg, prim_wei);
    args.emplace(dst_arg, dnnl::memory(e->dst, eng, dst));
    const size_t scratch_bytes = e->scratch.get_size();
    if (scratch_bytes > 0) {
      args.emplace(DNNL_ARG_SCRATCHPAD,
                   dnnl::memory(e->scratch, eng, ThreadBuffer(0, scratch_bytes)));
    }
    dnnl::stream& s = ThreadStream();
    if (e->needs_reorder && op != Op::kBwdWeights) e->reorder.execute(s, user_wei, prim_wei);
    e->prim.execute(s, args);
    if (e->needs_reorder && op == Op::kBwdWeights) e->reorder.execute(s, prim_wei, user_wei);
    s.wait();
  } catch (const dnnl::error& err) {
    return ffi::Error::Internal(std::string("onednn conv: ") + err.what() +
                                " (status " + std::to_string(static_cast<int>(err.status)) + ")");
  } catch (const std::exception& err) {
    return ffi::Error::Internal(std::string("onednn conv: ") + err.what());
  } catch (...) {
    return ffi::Error::Internal("onednn conv: unknown error");
  }
  return ffi::Error::Success();
}

ffi::Error ConvFwd(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w,
                   ffi::ResultBuffer<ffi::F32> y, int64_t sh, int64_t sw, int64_t pt, int64_t pb,
                   int64_t pl, int64_t pr) {
  Geom g;
  ffi::Error err = MakeGeom(x.dimensions(), w.dimensions(), y->dimensions(), sh, sw, pt, pb, pl,
                            pr, &g);
  if (err.failure()) return err;
  return Run(Op::kFwd, g, x.untyped_data(), w.untyped_data(), y->untyped_data());
}

// dx [N,H,W,C] from dy [N,OH,OW,O] and w.
ffi::Error ConvBwdData(ffi::Buffer<ffi::F32> dy, ffi::Buffer<ffi::F32> w,
                       ffi::ResultBuffer<ffi::F32> dx, int64_t sh, int64_t sw, int64_t pt,
                       int64_t pb, int64_t pl, int64_t pr) {
  Geom g;
  ffi::Error err = MakeGeom(dx->dimensions(), w.dimensions(), dy.dimensions(), sh, sw, pt, pb,
                            pl, pr, &g);
  if (err.failure()) return err;
  return Run(Op::kBwdData, g, dx->untyped_data(), w.untyped_data(), dy.untyped_data());
}

// dw [KH,KW,C,O] from x and dy.
ffi::Error ConvBwdWeights(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> dy,
                          ffi::ResultBuffer<ffi::F32> dw, int64_t sh, int64_t sw, int64_t pt,
                          int64_t pb, int64_t pl, int64_t pr) {
  Geom g;
  ffi::Error err = MakeGeom(x.dimensions(), dw->dimensions(), dy.dimensions(), sh, sw, pt, pb,
                            pl, pr, &g);
  if (err.failure()) return err;
  return Run(Op::kBwdWeights, g, x.untyped_data(), dw->untyped_data(), dy.untyped_data());
}

// Two fp32 operands, one fp32 result, strides and (lo, hi) padding as int64 attributes.
#define GENIMG_CONV_BINDING                \
  ffi::Ffi::Bind()                         \
      .Arg<ffi::Buffer<ffi::F32>>()        \
      .Arg<ffi::Buffer<ffi::F32>>()        \
      .Ret<ffi::Buffer<ffi::F32>>()        \
      .Attr<int64_t>("stride_h")           \
      .Attr<int64_t>("stride_w")           \
      .Attr<int64_t>("pad_top")            \
      .Attr<int64_t>("pad_bottom")         \
      .Attr<int64_t>("pad_left")           \
      .Attr<int64_t>("pad_right")

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(GenimgOnednnConvFwd, ConvFwd, GENIMG_CONV_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(GenimgOnednnConvBwdData, ConvBwdData, GENIMG_CONV_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(GenimgOnednnConvBwdWeights, ConvBwdWeights, GENIMG_CONV_BINDING);

// Creates the engine and a stream; 0 on success, else 1 with a message in `msg`. Lets Python
// report why the backend is unusable (e.g. no SYCL CPU device) before any computation.
extern "C" __attribute__((visibility("default"))) int GenimgOnednnProbe(char* msg, int len) {
  try {
    ThreadStream();
    return 0;
  } catch (const std::exception& err) {
    std::snprintf(msg, static_cast<size_t>(len), "%s", err.what());
  } catch (...) {
    std::snprintf(msg, static_cast<size_t>(len), "unknown error");
  }
  return 1;
}
