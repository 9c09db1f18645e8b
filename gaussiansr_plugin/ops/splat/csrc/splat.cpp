// Python bindings of the splat CUDA op: checks every tensor (device, dtype, shape, contiguity), allocates the
// outputs and calls the launchers in splat_kernel.cu. Shapes: B batch, C channels, h x w LR map (N = h * w),
// Q queries, P window parts, S channel slices.
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
void backward_cuda(const at::Tensor& grad_sorted, const at::Tensor& coords_sorted, const at::Tensor& offsets,
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

void check_geometry(int64_t h, int64_t w, int64_t radius) {
  TORCH_CHECK(h >= 1 && w >= 1 && h * w <= kIntMax, "LR map must be non-empty and have < 2^31 pixels, got ", h, "x", w);
  TORCH_CHECK(radius >= 0 && radius <= kMaxRadius, "radius must be in [0, ", kMaxRadius, "], got ", radius);
}

int64_t num_slices(int64_t C) {
  const int cpt = channels_per_thread(static_cast<int>(C));
  return (C + cpt - 1) / cpt;
}

}  // namespace

// feat [B, C, h, w], sigma [B, 2, h, w], rho / opacity [B, 1, h, w] -> feat_t [B, N, C], params [B, N, 4].
std::tuple<at::Tensor, at::Tensor> prepare(const at::Tensor& feat, const at::Tensor& sigma, const at::Tensor& rho,
                                           const at::Tensor& opacity) {
  check_tensor(feat, "feat", at::kFloat, 4, feat);
  const int64_t B = feat.size(0), C = feat.size(1), h = feat.size(2), w = feat.size(3);
  TORCH_CHECK(C >= 1 && h * w * C <= kIntMax, "feat must have C >= 1 and h*w*C < 2^31, got ", feat.sizes());
  check_geometry(h, w, 0);
  check_tensor(sigma, "sigma", at::kFloat, 4, feat);
  check_shape(sigma, "sigma", {B, 2, h, w});
  check_tensor(rho, "rho", at::kFloat, 4, feat);
  check_shape(rho, "rho", {B, 1, h, w});
  check_tensor(opacity, "opacity", at::kFloat, 4, feat);
  check_shape(opacity, "opacity", {B, 1, h, w});
  const c10::cuda::CUDAGuard guard(feat.device());
  auto feat_t = at::empty({B, h * w, C}, feat.options());
  auto params = at::empty({B, h * w, 4}, feat.options());
  prepare_cuda(feat, sigma, rho, opacity, feat_t, params);
  return {feat_t, params};
}

// feat_t [B, N, C], params [B, N, 4], coords [B, Q, 2] -> out [B, Q, C].
at::Tensor forward(const at::Tensor& feat_t, const at::Tensor& params, const at::Tensor& coords, int64_t h, int64_t w,
                   int64_t radius) {
  check_geometry(h, w, radius);
  check_tensor(feat_t, "feat_t", at::kFloat, 3, feat_t);
  const int64_t B = feat_t.size(0), C = feat_t.size(2);
  check_shape(feat_t, "feat_t", {B, h * w, C});
  check_tensor(params, "params", at::kFloat, 3, feat_t);
  check_shape(params, "params", {B, h * w, 4});
  check_tensor(coords, "coords", at::kFloat, 3, feat_t);
  TORCH_CHECK(coords.size(0) == B && coords.size(2) == 2, "coords must have shape [", B, ", Q, 2], got ",
              coords.sizes());
  TORCH_CHECK(coords.size(0) * coords.size(1) <= kIntMax, "B*Q must be < 2^31, got ", coords.sizes());
  const c10::cuda::CUDAGuard guard(feat_t.device());
  auto out = at::empty({B, coords.size(1), C}, feat_t.options());
  forward_cuda(feat_t, params, coords, out, h, w, radius);
  return out;
}

// coords [B, Q, 2] -> int32 [B * Q]: b * (h+2r+2) * (w+2r+2) + centre bucket of each query.
at::Tensor bucket_keys(const at::Tensor& coords, int64_t h, int64_t w, int64_t radius) {
  check_geometry(h, w, radius);
  check_tensor(coords, "coords", at::kFloat, 3, coords);
  TORCH_CHECK(coords.size(2) == 2, "coords must have shape [B, Q, 2], got ", coords.sizes());
  const int64_t B = coords.size(0), Q = coords.size(1);
  TORCH_CHECK(B * Q <= kIntMax && B * (h + 2 * radius + 2) * (w + 2 * radius + 2) < kIntMax,
              "too many queries or buckets for int32 keys: coords ", coords.sizes(), ", map ", h, "x", w);
  const c10::cuda::CUDAGuard guard(coords.device());
  auto keys = at::empty({B * Q}, coords.options().dtype(at::kInt));
  bucket_keys_cuda(coords, keys, h, w, radius);
  return keys;
}

// grad_sorted [B*Q, C] and coords_sorted [B*Q, 2] in key order, offsets int32 [B*(h+2r+2)*(w+2r+2) + 1]
// -> grad_feat_part [P, B, N, C], grad_params_part [P, S, B, N, 4] (gradients w.r.t. feat_t and params).
std::tuple<at::Tensor, at::Tensor> backward(const at::Tensor& grad_sorted, const at::Tensor& coords_sorted,
                                            const at::Tensor& offsets, const at::Tensor& feat_t,
                                            const at::Tensor& params, int64_t h, int64_t w, int64_t radius,
                                            int64_t parts) {
  check_geometry(h, w, radius);
  const int64_t side = 2 * radius + 1;
  TORCH_CHECK(parts >= 1 && parts <= side * side, "parts must be in [1, (2r+1)^2], got ", parts);
  check_tensor(feat_t, "feat_t", at::kFloat, 3, feat_t);
  const int64_t B = feat_t.size(0), C = feat_t.size(2), N = h * w;
  check_shape(feat_t, "feat_t", {B, N, C});
  check_tensor(params, "params", at::kFloat, 3, feat_t);
  check_shape(params, "params", {B, N, 4});
  check_tensor(grad_sorted, "grad_sorted", at::kFloat, 2, feat_t);
  TORCH_CHECK(grad_sorted.size(1) == C, "grad_sorted must have ", C, " channels, got ", grad_sorted.sizes());
  check_tensor(coords_sorted, "coords_sorted", at::kFloat, 2, feat_t);
  check_shape(coords_sorted, "coords_sorted", {grad_sorted.size(0), 2});
  check_tensor(offsets, "offsets", at::kInt, 1, feat_t);
  check_shape(offsets, "offsets", {B * (h + 2 * radius + 2) * (w + 2 * radius + 2) + 1});
  const c10::cuda::CUDAGuard guard(feat_t.device());
  auto grad_feat_part = at::empty({parts, B, N, C}, feat_t.options());
  auto grad_params_part = at::empty({parts, num_slices(C), B, N, 4}, feat_t.options());
  backward_cuda(grad_sorted, coords_sorted, offsets, feat_t, params, grad_feat_part, grad_params_part, h, w, radius);
  return {grad_feat_part, grad_params_part};
}

// Partial gradients + sigma [B, 2, h, w], rho [B, 1, h, w] -> grads of feat [B, C, h, w], sigma, rho, opacity.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> finalize(const at::Tensor& grad_feat_part,
                                                                    const at::Tensor& grad_params_part,
                                                                    const at::Tensor& sigma, const at::Tensor& rho) {
  check_tensor(sigma, "sigma", at::kFloat, 4, sigma);
  const int64_t B = sigma.size(0), h = sigma.size(2), w = sigma.size(3);
  check_shape(sigma, "sigma", {B, 2, h, w});
  check_tensor(rho, "rho", at::kFloat, 4, sigma);
  check_shape(rho, "rho", {B, 1, h, w});
  check_tensor(grad_feat_part, "grad_feat_part", at::kFloat, 4, sigma);
  const int64_t P = grad_feat_part.size(0), C = grad_feat_part.size(3);
  check_shape(grad_feat_part, "grad_feat_part", {P, B, h * w, C});
  check_tensor(grad_params_part, "grad_params_part", at::kFloat, 5, sigma);
  check_shape(grad_params_part, "grad_params_part", {P, num_slices(C), B, h * w, 4});
  const c10::cuda::CUDAGuard guard(sigma.device());
  auto grad_feat = at::empty({B, C, h, w}, sigma.options());
  auto grad_sigma = at::empty_like(sigma);
  auto grad_rho = at::empty_like(rho);
  auto grad_opacity = at::empty_like(rho);
  finalize_cuda(grad_feat_part, grad_params_part, sigma, rho, grad_feat, grad_sigma, grad_rho, grad_opacity);
  return {grad_feat, grad_sigma, grad_rho, grad_opacity};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "Continuous 2D Gaussian splatting (GaussianSR), CUDA kernels";
  m.def("channels_per_thread", &channels_per_thread, "Channels handled by one thread for C channels", py::arg("C"));
  m.def("prepare", &prepare, "feat, sigma, rho, opacity -> feat_t [B,N,C], params [B,N,4]", py::arg("feat"),
        py::arg("sigma"), py::arg("rho"), py::arg("opacity"));
  m.def("forward", &forward, "feat_t, params, coords -> out [B,Q,C]", py::arg("feat_t"), py::arg("params"),
        py::arg("coords"), py::arg("h"), py::arg("w"), py::arg("radius"));
  m.def("bucket_keys", &bucket_keys, "coords -> int32 centre-bucket keys [B*Q]", py::arg("coords"), py::arg("h"),
        py::arg("w"), py::arg("radius"));
  m.def("backward", &backward, "Deterministic gather backward -> partial grads of feat_t and params",
        py::arg("grad_sorted"), py::arg("coords_sorted"), py::arg("offsets"), py::arg("feat_t"), py::arg("params"),
        py::arg("h"), py::arg("w"), py::arg("radius"), py::arg("parts"));
  m.def("finalize", &finalize, "Reduce partial grads -> grads of feat, sigma, rho, opacity",
        py::arg("grad_feat_part"), py::arg("grad_params_part"), py::arg("sigma"), py::arg("rho"));
}
