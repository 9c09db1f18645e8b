// Python bindings of the splat CUDA op: forward and backward, and the forward's two halves (prepare the maps once,
// then query them chunk by chunk); each call checks every tensor (device, dtype, shape, contiguity), allocates its
// outputs and runs the launchers of splat_kernel.cu on the current stream. Shapes: B batch, C channels, h x w LR
// map (N = h * w), Q queries.
#include <c10/cuda/CUDAGuard.h>
#include <torch/extension.h>

#include <cstdint>
#include <limits>
#include <tuple>

int channels_per_thread(int C);
void prepare_cuda(const at::Tensor& feat, const at::Tensor& sigma, const at::Tensor& rho, const at::Tensor& opacity,
                  at::Tensor& feat_t, at::Tensor& params);
void forward_cuda(const at::Tensor& feat_t, const at::Tensor& params, const at::Tensor& coords, at::Tensor& out,
                  int h, int w, int radius);
void bucket_keys_cuda(const at::Tensor& coords, at::Tensor& keys, int h, int w, int radius);
void sort_records_cuda(const at::Tensor& keys_sorted, const at::Tensor& order, const at::Tensor& coords,
                       const at::Tensor& grad_out, at::Tensor& pos_sorted, at::Tensor& grad_sorted, at::Tensor& offsets,
                       int h, int w);
void backward_cuda(const at::Tensor& pos_sorted, const at::Tensor& grad_sorted, const at::Tensor& offsets,
                   const at::Tensor& feat_t, const at::Tensor& params, at::Tensor& grad_feat_part,
                   at::Tensor& grad_params_part, int h, int w, int radius);
void finalize_cuda(const at::Tensor& grad_feat_part, const at::Tensor& grad_params_part, const at::Tensor& sigma,
                   const at::Tensor& rho, at::Tensor& grad_feat, at::Tensor& grad_sigma, at::Tensor& grad_rho,
                   at::Tensor& grad_opacity);

namespace {

constexpr int kMaxRadius = 7;
constexpr int64_t kIntMax = std::numeric_limits<int>::max();

void check_tensor(const at::Tensor& x, const char* name, at::ScalarType dtype, int64_t dim, const at::Tensor& ref) {
  TORCH_CHECK(x.is_cuda(), name, " must be a CUDA tensor");
  TORCH_CHECK(x.device() == ref.device(), name, " must be on ", ref.device(), ", got ", x.device());
  TORCH_CHECK(x.scalar_type() == dtype, name, " must be ", dtype, ", got ", x.scalar_type());
  TORCH_CHECK(x.dim() == dim, name, " must have ", dim, " dims, got shape ", x.sizes());
  TORCH_CHECK(x.is_contiguous(), name, " must be contiguous");
}

void check_shape(const at::Tensor& x, const char* name, at::IntArrayRef shape) {
  TORCH_CHECK(x.sizes() == shape, name, " must have shape ", shape, ", got ", x.sizes());
}

// The kernels read coords and gradients with 8- and 16-byte loads: copy a (rare) misaligned view.
at::Tensor aligned(const at::Tensor& x) {
  return reinterpret_cast<std::uintptr_t>(x.data_ptr()) % 16 == 0 ? x : x.clone();
}

void check_geometry(int64_t h, int64_t w, int64_t radius) {
  TORCH_CHECK(h >= 1 && w >= 1 && h * w <= kIntMax, "LR map must be non-empty and have < 2^31 pixels, got ", h, "x", w);
  TORCH_CHECK(radius >= 0 && radius <= kMaxRadius, "radius must be in [0, ", kMaxRadius, "], got ", radius);
}

int64_t num_slices(int64_t C) {
  const int cpt = channels_per_thread(static_cast<int>(C));
  return (C + cpt - 1) / cpt;
}

void check_maps(const at::Tensor& feat, const at::Tensor& sigma, const at::Tensor& rho, const at::Tensor& opacity) {
  check_tensor(feat, "feat", at::kFloat, 4, feat);
  const int64_t B = feat.size(0), C = feat.size(1), h = feat.size(2), w = feat.size(3);
  TORCH_CHECK(C >= 1 && h * w * C <= kIntMax, "feat must have C >= 1 and h*w*C < 2^31, got ", feat.sizes());
  check_tensor(sigma, "sigma", at::kFloat, 4, feat);
  check_shape(sigma, "sigma", {B, 2, h, w});
  check_tensor(rho, "rho", at::kFloat, 4, feat);
  check_shape(rho, "rho", {B, 1, h, w});
  check_tensor(opacity, "opacity", at::kFloat, 4, feat);
  check_shape(opacity, "opacity", {B, 1, h, w});
}

void check_coords(const at::Tensor& coords, const at::Tensor& ref, int64_t B, int64_t h, int64_t w, int64_t radius) {
  check_geometry(h, w, radius);
  check_tensor(coords, "coords", at::kFloat, 3, ref);
  TORCH_CHECK(coords.size(0) == B && coords.size(2) == 2, "coords must have shape [", B, ", Q, 2], got ",
              coords.sizes());
  TORCH_CHECK(B * coords.size(1) <= kIntMax && B * (h + 2 * radius + 2) * (w + 2 * radius + 2) < kIntMax,
              "too many queries or LR pixels for int32 indices: coords ", coords.sizes(), ", map ", h, "x", w);
}

// The two halves once their inputs are checked: allocate the outputs and launch.
std::tuple<at::Tensor, at::Tensor> run_prepare(const at::Tensor& feat, const at::Tensor& sigma, const at::Tensor& rho,
                                               const at::Tensor& opacity) {
  const int64_t B = feat.size(0), C = feat.size(1), N = feat.size(2) * feat.size(3);
  const c10::cuda::CUDAGuard guard(feat.device());
  auto feat_t = at::empty({B, N, C}, feat.options());
  auto params = at::empty({B, N, 4}, feat.options());
  prepare_cuda(feat, sigma, rho, opacity, feat_t, params);
  return {feat_t, params};
}

at::Tensor run_query(const at::Tensor& feat_t, const at::Tensor& params, const at::Tensor& coords, int64_t h,
                     int64_t w, int64_t radius) {
  const c10::cuda::CUDAGuard guard(feat_t.device());
  auto out = at::empty({feat_t.size(0), coords.size(1), feat_t.size(2)}, feat_t.options());
  forward_cuda(feat_t, params, aligned(coords), out, static_cast<int>(h), static_cast<int>(w),
               static_cast<int>(radius));
  return out;
}

}  // namespace

// feat [B, C, h, w], sigma [B, 2, h, w], rho, opacity [B, 1, h, w] -> feat_t [B, N, C], params [B, N, 4]: the maps
// as the kernels read them (channels last; each pixel's conic and opacity).
std::tuple<at::Tensor, at::Tensor> prepare(const at::Tensor& feat, const at::Tensor& sigma, const at::Tensor& rho,
                                           const at::Tensor& opacity) {
  check_maps(feat, sigma, rho, opacity);
  return run_prepare(feat, sigma, rho, opacity);
}

// feat_t [B, N, C] and params [B, N, 4] from prepare of an h x w map, coords [B, Q, 2] -> out [B, Q, C].
at::Tensor query(const at::Tensor& feat_t, const at::Tensor& params, const at::Tensor& coords, int64_t h, int64_t w,
                 int64_t radius) {
  check_tensor(feat_t, "feat_t", at::kFloat, 3, feat_t);
  const int64_t B = feat_t.size(0), C = feat_t.size(2);
  check_shape(feat_t, "feat_t", {B, h * w, C});
  check_tensor(params, "params", at::kFloat, 3, feat_t);
  check_shape(params, "params", {B, h * w, 4});
  check_coords(coords, feat_t, B, h, w, radius);
  return run_query(feat_t, params, coords, h, w, radius);
}

// prepare then query, every input checked once before any kernel runs: -> out [B, Q, C], and feat_t [B, N, C],
// params [B, N, 4] for the backward.
std::tuple<at::Tensor, at::Tensor, at::Tensor> forward(const at::Tensor& feat, const at::Tensor& sigma,
                                                       const at::Tensor& rho, const at::Tensor& opacity,
                                                       const at::Tensor& coords, int64_t radius) {
  check_maps(feat, sigma, rho, opacity);
  const int64_t h = feat.size(2), w = feat.size(3);
  check_coords(coords, feat, feat.size(0), h, w, radius);
  auto [feat_t, params] = run_prepare(feat, sigma, rho, opacity);
  return {run_query(feat_t, params, coords, h, w, radius), feat_t, params};
}

// grad_out [B, Q, C], the forward's coords, feat_t, params and sigma, rho; parts in [1, 2r+1] (window rows per
// warp: see function.py) -> grads of feat [B, C, h, w], sigma [B, 2, h, w], rho and opacity [B, 1, h, w].
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward(const at::Tensor& grad_out,
                                                                    const at::Tensor& coords, const at::Tensor& feat_t,
                                                                    const at::Tensor& params, const at::Tensor& sigma,
                                                                    const at::Tensor& rho, int64_t radius,
                                                                    int64_t parts) {
  check_tensor(sigma, "sigma", at::kFloat, 4, sigma);
  const int64_t B = sigma.size(0), h = sigma.size(2), w = sigma.size(3), N = h * w;
  check_geometry(h, w, radius);
  TORCH_CHECK(parts >= 1 && parts <= 2 * radius + 1, "parts must be in [1, 2r+1], got ", parts);
  check_shape(sigma, "sigma", {B, 2, h, w});
  check_tensor(rho, "rho", at::kFloat, 4, sigma);
  check_shape(rho, "rho", {B, 1, h, w});
  check_tensor(feat_t, "feat_t", at::kFloat, 3, sigma);
  const int64_t C = feat_t.size(2);
  check_shape(feat_t, "feat_t", {B, N, C});
  check_tensor(params, "params", at::kFloat, 3, sigma);
  check_shape(params, "params", {B, N, 4});
  check_tensor(coords, "coords", at::kFloat, 3, sigma);
  const int64_t Q = coords.size(1);
  check_shape(coords, "coords", {B, Q, 2});
  check_tensor(grad_out, "grad_out", at::kFloat, 3, sigma);
  check_shape(grad_out, "grad_out", {B, Q, C});
  TORCH_CHECK(B * Q <= kIntMax && B * (h + 2 * radius + 2) * (w + 2 * radius + 2) < kIntMax,
              "too many queries or LR pixels for int32 indices");
  const c10::cuda::CUDAGuard guard(sigma.device());
  auto keys = at::empty({B * Q}, sigma.options().dtype(at::kInt));
  const auto coords16 = aligned(coords);
  bucket_keys_cuda(coords16, keys, h, w, radius);
  const auto [keys_sorted, order] = at::sort(keys, /*stable=*/true, /*dim=*/0, /*descending=*/false);
  auto pos_sorted = at::empty({B * Q, 2}, sigma.options());
  auto grad_sorted = at::empty({B * Q, C}, sigma.options());
  auto offsets = at::empty({B * (h + 2 * radius + 2) * (w + 2 * radius + 2) + 1}, keys.options());
  sort_records_cuda(keys_sorted, order, coords16, aligned(grad_out), pos_sorted, grad_sorted, offsets, h, w);
  auto grad_feat_part = at::empty({parts, B, N, C}, sigma.options());
  auto grad_params_part = at::empty({parts, num_slices(C), B, N, 4}, sigma.options());
  backward_cuda(pos_sorted, grad_sorted, offsets, feat_t, params, grad_feat_part, grad_params_part, h, w, radius);
  auto grad_feat = at::empty({B, C, h, w}, sigma.options());
  auto grad_sigma = at::empty_like(sigma);
  auto grad_rho = at::empty_like(rho);
  auto grad_opacity = at::empty_like(rho);
  finalize_cuda(grad_feat_part, grad_params_part, sigma, rho, grad_feat, grad_sigma, grad_rho, grad_opacity);
  return {grad_feat, grad_sigma, grad_rho, grad_opacity};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "Continuous 2D Gaussian splatting (GaussianSR), CUDA kernels";
  m.def("channels_per_thread", &channels_per_thread, "Channels handled by one thread (or warp) for C channels",
        py::arg("C"));
  m.def("forward", &forward, "feat, sigma, rho, opacity, coords -> out [B,Q,C], feat_t [B,N,C], params [B,N,4]",
        py::arg("feat"), py::arg("sigma"), py::arg("rho"), py::arg("opacity"), py::arg("coords"), py::arg("radius"));
  m.def("prepare", &prepare, "feat, sigma, rho, opacity -> feat_t [B,N,C], params [B,N,4] (forward's first half)",
        py::arg("feat"), py::arg("sigma"), py::arg("rho"), py::arg("opacity"));
  m.def("query", &query, "feat_t, params (from prepare), coords, h, w -> out [B,Q,C] (forward's second half)",
        py::arg("feat_t"), py::arg("params"), py::arg("coords"), py::arg("h"), py::arg("w"), py::arg("radius"));
  m.def("backward", &backward, "Deterministic gather backward -> grads of feat, sigma, rho, opacity",
        py::arg("grad_out"), py::arg("coords"), py::arg("feat_t"), py::arg("params"), py::arg("sigma"),
        py::arg("rho"), py::arg("radius"), py::arg("parts"));
}
