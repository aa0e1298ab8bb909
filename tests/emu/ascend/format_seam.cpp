// Drives the storage-format rule the launcher applies (csrc/ascend/npu_format.h) with fake
// tensors: for each aclFormat on the command line, prints "<format> keep" or
// "<format> cast <to>" (the format cast called with), then "undefined keep".
#include <cstdio>
#include <cstdlib>

#include "npu_format.h"

struct FakeTensor {
  bool defined_ = true;
  int64_t format = 2;
  bool defined() const { return defined_; }
};

static void show(const FakeTensor& t, const char* name) {
  int64_t cast_to = -100;
  const FakeTensor r = genet_ops::ascend::to_base_format(
      t, [](const FakeTensor& u) { return u.format; },
      [&](const FakeTensor& u, int64_t f) { cast_to = f; FakeTensor c = u; c.format = f; return c; });
  if (cast_to == -100) std::printf("%s keep\n", name);
  else std::printf("%s cast %lld -> %lld\n", name, (long long)cast_to, (long long)r.format);
}

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    FakeTensor t;
    t.format = std::atoll(argv[i]);
    show(t, argv[i]);
  }
  FakeTensor u;
  u.defined_ = false;
  u.format = 3;  // never asked: an absent residual has no format
  show(u, "undefined");
  return 0;
}
