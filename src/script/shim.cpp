// The few TorchScript calls tch 0.26 does not expose: a module's buffers
// (BatchNorm running statistics), and forward in a chosen train/eval mode with
// the error returned instead of thrown. Built by build.rs against the libtorch
// that torch-sys links; used only through src/script/mod.rs.
#include <torch/script.h>

#include <cstring>
#include <exception>
#include <string>
#include <vector>

namespace {
// A copy of `message` for Rust, freed with tl_free_string.
char *dup(const char *message) { return strdup(message == nullptr ? "unknown error" : message); }

torch::Device device_of(int d) {
  if (d < 0) return torch::Device(torch::kCPU);
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(d));
}
}  // namespace

extern "C" {

typedef void (*tl_named_cb)(void *data, const char *name, void *tensor);

void tl_free_string(char *s) { free(s); }

// Loads a TorchScript module onto device `d` (-1: CPU, k >= 0: CUDA k).
void *tl_script_load(const char *path, int d, char **err) {
  try {
    auto *m = new torch::jit::Module(torch::jit::load(std::string(path), device_of(d)));
    return m;
  } catch (const std::exception &e) {
    *err = dup(e.what());
  } catch (...) {
    *err = dup(nullptr);
  }
  return nullptr;
}

void tl_script_free(void *m) { delete static_cast<torch::jit::Module *>(m); }

// Calls `fn(data, name, new Tensor)` for every parameter (buffers == 0) or
// buffer (buffers != 0) of the module and its submodules; 0 on success.
int tl_script_named(void *m, int buffers, void *data, tl_named_cb fn, char **err) {
  try {
    auto *module = static_cast<torch::jit::Module *>(m);
    if (buffers) {
      for (const auto &b : module->named_buffers(true)) fn(data, b.name.c_str(), new torch::Tensor(b.value));
    } else {
      for (const auto &p : module->named_parameters(true)) fn(data, p.name.c_str(), new torch::Tensor(p.value));
    }
    return 0;
  } catch (const std::exception &e) {
    *err = dup(e.what());
  } catch (...) {
    *err = dup(nullptr);
  }
  return 1;
}

// forward(inputs...) in train (train != 0) or eval mode; the output must be a
// tensor. Returns a new Tensor, or null with *err set.
void *tl_script_forward(void *m, void *const *inputs, int n, int train, char **err) {
  try {
    auto *module = static_cast<torch::jit::Module *>(m);
    if (module->is_training() != (train != 0)) module->train(train != 0);
    std::vector<torch::jit::IValue> args;
    args.reserve(n);
    for (int i = 0; i < n; ++i) args.emplace_back(*static_cast<torch::Tensor *>(inputs[i]));
    auto out = module->forward(std::move(args));
    if (!out.isTensor()) {
      *err = dup(("forward returned " + out.tagKind() + ", expected a tensor").c_str());
      return nullptr;
    }
    return new torch::Tensor(out.toTensor());
  } catch (const std::exception &e) {
    *err = dup(e.what());
  } catch (...) {
    *err = dup(nullptr);
  }
  return nullptr;
}

}  // extern "C"
