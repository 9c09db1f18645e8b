// CUDA kernels of the continuous 2D Gaussian splat op (see ../reference.py for the formula).
//
// Layouts (all float32, contiguous):
//   feat_t  [B, N, C]   features, channels last (N = h * w)
//   params  [B, N, 4]   per pixel (A, Bq, Cq, opacity): weight = opacity * exp2(A dy^2 + Bq dy dx + Cq dx^2)
//   coords  [B, Q, 2]   (y, x) in [-1, 1]
// Forward: one thread per (query, channel slice of CPT channels) loops over the clipped window.
// Backward: the queries are sorted by centre bucket (stable), so the queries whose window holds an LR pixel are
// 2r+1 contiguous ranges (one per window row); one warp per (LR pixel, channel slice, window part) gathers them
// with coalesced loads. Partial sums go to buffers that finalize() reduces in a fixed order: the backward is
// deterministic (no atomics).
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>

#include <cstdint>
#include <type_traits>

namespace {

constexpr int kThreads = 256;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

struct Geometry {
  int B, Q, C, h, w, radius, slices;
};

// Continuous LR position of a query; explicit roundings so every kernel (and PyTorch) agrees on the centre.
__device__ __forceinline__ float2 query_position(float2 yx, int h, int w) {
  const float py = __fsub_rn(__fmul_rn(__fadd_rn(yx.x, 1.f), 0.5f * h), 0.5f);
  const float px = __fsub_rn(__fmul_rn(__fadd_rn(yx.y, 1.f), 0.5f * w), 0.5f);
  return make_float2(py, px);
}

// Nearest pixel floor(p + 1/2) (ties go below/right), clamped to [-r-1, n+r]: out there no pixel is in range.
__device__ __forceinline__ int centre_of(float p, int n, int radius) {
  const float c = floorf(__fadd_rn(p, 0.5f));
  return static_cast<int>(fminf(fmaxf(c, -radius - 1.f), static_cast<float>(n + radius)));
}

// 2^x with one MUFU instruction (relative error ~2^-22; results below 2^-126 flush to 0).
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// Unnormalised Gaussian 2^(A dy^2 + Bq dy dx + Cq dx^2) of a pixel's params (A, Bq, Cq, opacity).
__device__ __forceinline__ float gaussian(float4 prm, float dy, float dx) {
  return fast_exp2(dy * fmaf(prm.x, dy, prm.y * dx) + prm.z * dx * dx);
}

// Load channels [0, valid) of a slice, zeros after; VEC: 16-byte loads (needs C % 4 == 0, so valid % 4 == 0).
template <int CPT, bool VEC>
__device__ __forceinline__ void load_slice(const float* __restrict__ src, int valid, float (&v)[CPT]) {
  if (VEC) {
#pragma unroll
    for (int k = 0; k < CPT; k += 4) {
      const float4 q = k < valid ? __ldg(reinterpret_cast<const float4*>(src + k)) : make_float4(0.f, 0.f, 0.f, 0.f);
      v[k] = q.x, v[k + 1] = q.y, v[k + 2] = q.z, v[k + 3] = q.w;
    }
  } else {
#pragma unroll
    for (int k = 0; k < CPT; ++k) v[k] = k < valid ? __ldg(src + k) : 0.f;
  }
}

__global__ void __launch_bounds__(kThreads)
    prepare_kernel(const float* __restrict__ feat, const float* __restrict__ sigma, const float* __restrict__ rho,
                   const float* __restrict__ opacity, float* __restrict__ feat_t, float4* __restrict__ params, int B,
                   int C, int N) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= static_cast<int64_t>(B) * N) return;
  const int64_t b = t / N, n = t % N;
  const float sy = sigma[(b * 2) * N + n], sx = sigma[(b * 2 + 1) * N + n], r = rho[t];
  const float inv = kLog2e / (1.f - r * r);
  params[t] = make_float4(-0.5f * inv / (sy * sy), inv * r / (sy * sx), -0.5f * inv / (sx * sx), opacity[t]);
  for (int c = 0; c < C; ++c) feat_t[t * C + c] = feat[(b * C + c) * N + n];
}

template <int CPT, bool VEC>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(const float* __restrict__ feat_t, const float4* __restrict__ params,
                   const float2* __restrict__ coords, float* __restrict__ out, Geometry g) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= static_cast<int64_t>(g.B) * g.Q * g.slices) return;
  const int s = static_cast<int>(t % g.slices);
  const int64_t bq = t / g.slices, b = bq / g.Q;
  const int N = g.h * g.w, c0 = s * CPT, valid = min(CPT, g.C - c0);
  const float2 p = query_position(__ldg(coords + bq), g.h, g.w);
  const int cy = centre_of(p.x, g.h, g.radius), cx = centre_of(p.y, g.w, g.radius);
  const int i0 = max(cy - g.radius, 0), i1 = min(cy + g.radius, g.h - 1);
  const int j0 = max(cx - g.radius, 0), j1 = min(cx + g.radius, g.w - 1);
  const float* fb = feat_t + b * N * g.C + c0;
  const float4* pb = params + b * N;
  float acc[CPT];
#pragma unroll
  for (int k = 0; k < CPT; ++k) acc[k] = 0.f;
  for (int i = i0; i <= i1; ++i) {
    const float dy = p.x - i;
    for (int j = j0; j <= j1; ++j) {
      const int n = i * g.w + j;
      const float4 prm = __ldg(pb + n);
      const float wgt = prm.w * gaussian(prm, dy, p.y - j);
      float f[CPT];
      load_slice<CPT, VEC>(fb + static_cast<int64_t>(n) * g.C, valid, f);
#pragma unroll
      for (int k = 0; k < CPT; ++k) acc[k] = fmaf(wgt, f[k], acc[k]);
    }
  }
  float* dst = out + bq * g.C + c0;
#pragma unroll
  for (int k = 0; k < CPT; ++k)
    if (k < valid) dst[k] = acc[k];
}

__global__ void __launch_bounds__(kThreads)
    bucket_keys_kernel(const float2* __restrict__ coords, int* __restrict__ keys, Geometry g) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= static_cast<int64_t>(g.B) * g.Q) return;
  const int hb = g.h + 2 * g.radius + 2, wb = g.w + 2 * g.radius + 2;
  const float2 p = query_position(coords[t], g.h, g.w);
  const int cy = centre_of(p.x, g.h, g.radius) + g.radius + 1, cx = centre_of(p.y, g.w, g.radius) + g.radius + 1;
  keys[t] = static_cast<int>(t / g.Q) * hb * wb + cy * wb + cx;
}

// Sorted query records: the position (py, px) and the upstream gradient of the query at each sorted index.
__global__ void __launch_bounds__(kThreads)
    gather_records_kernel(const int64_t* __restrict__ order, const float2* __restrict__ coords,
                          const float* __restrict__ grad_out, float2* __restrict__ pos_sorted,
                          float* __restrict__ grad_sorted, int64_t BQ, int C, int h, int w) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= BQ) return;
  const int64_t q = order[t];
  pos_sorted[t] = query_position(coords[q], h, w);
  const float* src = grad_out + q * C;
  float* dst = grad_sorted + t * C;
  if (C % 4 == 0) {
    for (int c = 0; c < C; c += 4)
      *reinterpret_cast<float4*>(dst + c) = __ldg(reinterpret_cast<const float4*>(src + c));
  } else {
    for (int c = 0; c < C; ++c) dst[c] = __ldg(src + c);
  }
}

// offsets[k] = first sorted index whose key is >= k (binary search), for k in [0, num_buckets].
__global__ void __launch_bounds__(kThreads)
    bucket_offsets_kernel(const int* __restrict__ keys_sorted, int* __restrict__ offsets, int BQ, int num_buckets) {
  const int k = blockIdx.x * blockDim.x + threadIdx.x;
  if (k > num_buckets) return;
  int lo = 0, hi = BQ;
  while (lo < hi) {
    const int mid = lo + (hi - lo) / 2;
    if (keys_sorted[mid] < k) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  offsets[k] = lo;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// One warp per (window part, b, pixel, channel slice): its lanes stride over the sorted queries of each window
// row (one contiguous range of 2r+1 buckets), so loads are coalesced; a butterfly sum (fixed order) ends it.
template <int CPT, bool VEC>
__global__ void __launch_bounds__(kThreads)
    backward_kernel(const float2* __restrict__ pos_sorted, const float* __restrict__ grad_sorted,
                    const int* __restrict__ offsets, const float* __restrict__ feat_t,
                    const float4* __restrict__ params, float* __restrict__ grad_feat_part,
                    float4* __restrict__ grad_params_part, Geometry g, int parts) {
  const int N = g.h * g.w, lane = threadIdx.x & 31;
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  if (warp >= static_cast<int64_t>(parts) * g.B * N * g.slices) return;  // uniform over the warp
  const int s = static_cast<int>(warp % g.slices);
  const int64_t pbn = warp / g.slices;  // (part * B + b) * N + n
  const int n = static_cast<int>(pbn % N), b = static_cast<int>(pbn / N % g.B), part = static_cast<int>(pbn / N / g.B);
  const int i = n / g.w, j = n % g.w, c0 = s * CPT, valid = min(CPT, g.C - c0);
  const int64_t bn = static_cast<int64_t>(b) * N + n;
  const float4 prm = __ldg(params + bn);
  float f[CPT], acc[CPT];
  load_slice<CPT, VEC>(feat_t + bn * g.C + c0, valid, f);
#pragma unroll
  for (int k = 0; k < CPT; ++k) acc[k] = 0.f;
  float ga = 0.f, gb = 0.f, gc = 0.f, go = 0.f;
  // Window rows [row0, row1) of this part; row `row` holds the queries centred on (i - r + row, j - r .. j + r).
  const int side = 2 * g.radius + 1, wb = g.w + 2 * g.radius + 2;
  const int row0 = part * side / parts, row1 = (part + 1) * side / parts;
  const int64_t key_base = static_cast<int64_t>(b) * (g.h + 2 * g.radius + 2) * wb + (j + 1);
  for (int row = row0; row < row1; ++row) {
    const int64_t key = key_base + static_cast<int64_t>(i + row + 1) * wb;
    const int m1 = __ldg(offsets + key + side);
    for (int m = __ldg(offsets + key) + lane; m < m1; m += 32) {
      const float2 p = __ldg(pos_sorted + m);
      const float dy = p.x - i, dx = p.y - j;
      const float e = gaussian(prm, dy, dx), wgt = prm.w * e;
      float gr[CPT];
      load_slice<CPT, VEC>(grad_sorted + static_cast<int64_t>(m) * g.C + c0, valid, gr);
      float gw = 0.f;
#pragma unroll
      for (int c = 0; c < CPT; ++c) {
        gw = fmaf(gr[c], f[c], gw);
        acc[c] = fmaf(wgt, gr[c], acc[c]);
      }
      const float gp = gw * wgt;
      go = fmaf(gw, e, go);
      ga = fmaf(gp, dy * dy, ga);
      gb = fmaf(gp, dy * dx, gb);
      gc = fmaf(gp, dx * dx, gc);
    }
  }
#pragma unroll
  for (int k = 0; k < CPT; ++k) acc[k] = warp_sum(acc[k]);
  ga = warp_sum(ga), gb = warp_sum(gb), gc = warp_sum(gc), go = warp_sum(go);
  if (lane != 0) return;
  float* dst = grad_feat_part + pbn * g.C + c0;
#pragma unroll
  for (int k = 0; k < CPT; ++k)
    if (k < valid) dst[k] = acc[k];
  grad_params_part[(static_cast<int64_t>(part) * g.slices + s) * g.B * N + bn] =
      make_float4(ga * kLn2, gb * kLn2, gc * kLn2, go);
}

// Sum the partial gradients over parts and slices (fixed order) and chain (A, Bq, Cq) to (sigma, rho).
__global__ void __launch_bounds__(kThreads)
    finalize_kernel(const float* __restrict__ grad_feat_part, const float4* __restrict__ grad_params_part,
                    const float* __restrict__ sigma, const float* __restrict__ rho, float* __restrict__ grad_feat,
                    float* __restrict__ grad_sigma, float* __restrict__ grad_rho, float* __restrict__ grad_opacity,
                    int B, int C, int N, int parts, int slices) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t BN = static_cast<int64_t>(B) * N;
  if (t >= BN) return;
  const int64_t b = t / N, n = t % N;
  for (int c = 0; c < C; ++c) {
    float sum = 0.f;
    for (int p = 0; p < parts; ++p) sum += grad_feat_part[(p * BN + t) * C + c];
    grad_feat[(b * C + c) * N + n] = sum;
  }
  float4 gq = make_float4(0.f, 0.f, 0.f, 0.f);
  for (int p = 0; p < parts * slices; ++p) {
    const float4 v = grad_params_part[p * BN + t];
    gq.x += v.x, gq.y += v.y, gq.z += v.z, gq.w += v.w;
  }
  const float sy = sigma[(b * 2) * N + n], sx = sigma[(b * 2 + 1) * N + n], r = rho[t];
  const float d = 1.f - r * r, inv = kLog2e / d;
  const float a = -0.5f * inv / (sy * sy), bq = inv * r / (sy * sx), cq = -0.5f * inv / (sx * sx);
  grad_sigma[(b * 2) * N + n] = -(2.f * a * gq.x + bq * gq.y) / sy;
  grad_sigma[(b * 2 + 1) * N + n] = -(2.f * cq * gq.z + bq * gq.y) / sx;
  grad_rho[t] = 2.f * r / d * (a * gq.x + cq * gq.z) + gq.y * inv * (1.f + r * r) / (d * sy * sx);
  grad_opacity[t] = gq.w;
}

int blocks_for(int64_t threads) { return static_cast<int>((threads + kThreads - 1) / kThreads); }

// CPT (channels per thread) from C: 1, 2, 4, 8 or 16; dispatch on it and on 16-byte loads.
template <typename Launch>
void dispatch_channels(int C, Launch&& launch) {
  const bool vec = C % 4 == 0;
  if (C <= 1) {
    launch(std::integral_constant<int, 1>{}, std::false_type{});
  } else if (C <= 2) {
    launch(std::integral_constant<int, 2>{}, std::false_type{});
  } else if (C <= 4) {
    vec ? launch(std::integral_constant<int, 4>{}, std::true_type{})
        : launch(std::integral_constant<int, 4>{}, std::false_type{});
  } else if (C <= 8) {
    vec ? launch(std::integral_constant<int, 8>{}, std::true_type{})
        : launch(std::integral_constant<int, 8>{}, std::false_type{});
  } else {
    vec ? launch(std::integral_constant<int, 16>{}, std::true_type{})
        : launch(std::integral_constant<int, 16>{}, std::false_type{});
  }
}

}  // namespace

int channels_per_thread(int C) { return C <= 1 ? 1 : C <= 2 ? 2 : C <= 4 ? 4 : C <= 8 ? 8 : 16; }

void prepare_cuda(const at::Tensor& feat, const at::Tensor& sigma, const at::Tensor& rho, const at::Tensor& opacity,
                  at::Tensor& feat_t, at::Tensor& params) {
  const int B = feat.size(0), C = feat.size(1), N = feat.size(2) * feat.size(3);
  const int64_t threads = static_cast<int64_t>(B) * N;
  if (threads == 0) return;
  prepare_kernel<<<blocks_for(threads), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      feat.data_ptr<float>(), sigma.data_ptr<float>(), rho.data_ptr<float>(), opacity.data_ptr<float>(),
      feat_t.data_ptr<float>(), reinterpret_cast<float4*>(params.data_ptr<float>()), B, C, N);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void forward_cuda(const at::Tensor& feat_t, const at::Tensor& params, const at::Tensor& coords, at::Tensor& out,
                  int h, int w, int radius) {
  const int B = coords.size(0), Q = coords.size(1), C = feat_t.size(2), cpt = channels_per_thread(C);
  const Geometry g{B, Q, C, h, w, radius, (C + cpt - 1) / cpt};
  const int64_t threads = static_cast<int64_t>(B) * Q * g.slices;
  if (threads == 0) return;
  dispatch_channels(C, [&](auto cpt_c, auto vec_c) {
    forward_kernel<decltype(cpt_c)::value, decltype(vec_c)::value>
        <<<blocks_for(threads), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
            feat_t.data_ptr<float>(), reinterpret_cast<const float4*>(params.data_ptr<float>()),
            reinterpret_cast<const float2*>(coords.data_ptr<float>()), out.data_ptr<float>(), g);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void bucket_keys_cuda(const at::Tensor& coords, at::Tensor& keys, int h, int w, int radius) {
  const int B = coords.size(0), Q = coords.size(1);
  const Geometry g{B, Q, 1, h, w, radius, 1};
  const int64_t threads = static_cast<int64_t>(B) * Q;
  if (threads == 0) return;
  bucket_keys_kernel<<<blocks_for(threads), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      reinterpret_cast<const float2*>(coords.data_ptr<float>()), keys.data_ptr<int>(), g);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void sort_records_cuda(const at::Tensor& keys_sorted, const at::Tensor& order, const at::Tensor& coords,
                       const at::Tensor& grad_out, at::Tensor& pos_sorted, at::Tensor& grad_sorted, at::Tensor& offsets,
                       int h, int w) {
  const int64_t BQ = keys_sorted.numel();
  const int C = grad_out.size(2), num_buckets = offsets.numel() - 1;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  if (BQ > 0) {
    gather_records_kernel<<<blocks_for(BQ), kThreads, 0, stream>>>(
        order.data_ptr<int64_t>(), reinterpret_cast<const float2*>(coords.data_ptr<float>()),
        grad_out.data_ptr<float>(), reinterpret_cast<float2*>(pos_sorted.data_ptr<float>()),
        grad_sorted.data_ptr<float>(), BQ, C, h, w);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  bucket_offsets_kernel<<<blocks_for(num_buckets + 1), kThreads, 0, stream>>>(
      keys_sorted.data_ptr<int>(), offsets.data_ptr<int>(), static_cast<int>(BQ), num_buckets);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void backward_cuda(const at::Tensor& pos_sorted, const at::Tensor& grad_sorted, const at::Tensor& offsets,
                   const at::Tensor& feat_t, const at::Tensor& params, at::Tensor& grad_feat_part,
                   at::Tensor& grad_params_part, int h, int w, int radius) {
  const int parts = grad_feat_part.size(0), B = feat_t.size(0), C = feat_t.size(2), cpt = channels_per_thread(C);
  const Geometry g{B, 0, C, h, w, radius, (C + cpt - 1) / cpt};
  const int64_t threads = 32 * static_cast<int64_t>(parts) * B * h * w * g.slices;  // one warp per work item
  if (threads == 0) return;
  dispatch_channels(C, [&](auto cpt_c, auto vec_c) {
    backward_kernel<decltype(cpt_c)::value, decltype(vec_c)::value>
        <<<blocks_for(threads), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
            reinterpret_cast<const float2*>(pos_sorted.data_ptr<float>()), grad_sorted.data_ptr<float>(),
            offsets.data_ptr<int>(), feat_t.data_ptr<float>(),
            reinterpret_cast<const float4*>(params.data_ptr<float>()), grad_feat_part.data_ptr<float>(),
            reinterpret_cast<float4*>(grad_params_part.data_ptr<float>()), g, parts);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void finalize_cuda(const at::Tensor& grad_feat_part, const at::Tensor& grad_params_part, const at::Tensor& sigma,
                   const at::Tensor& rho, at::Tensor& grad_feat, at::Tensor& grad_sigma, at::Tensor& grad_rho,
                   at::Tensor& grad_opacity) {
  const int B = grad_feat.size(0), C = grad_feat.size(1), N = grad_feat.size(2) * grad_feat.size(3);
  const int parts = grad_feat_part.size(0), slices = grad_params_part.size(1);
  const int64_t threads = static_cast<int64_t>(B) * N;
  if (threads == 0) return;
  finalize_kernel<<<blocks_for(threads), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      grad_feat_part.data_ptr<float>(), reinterpret_cast<const float4*>(grad_params_part.data_ptr<float>()),
      sigma.data_ptr<float>(), rho.data_ptr<float>(), grad_feat.data_ptr<float>(), grad_sigma.data_ptr<float>(),
      grad_rho.data_ptr<float>(), grad_opacity.data_ptr<float>(), B, C, N, parts, slices);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}
