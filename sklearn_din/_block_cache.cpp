// A CPU allocator that keeps large freed blocks for reuse while a fit or a prediction
// runs (see _kernels.py's block_cache).
//
// torch's CPU allocator is the C library's: glibc serves every block over its mmap
// threshold (32 MiB at most) from a fresh mapping and unmaps it when freed, so each
// training step writes the attention's largest activations and their gradients (tens of
// MB at long histories) into pages the kernel has to fault in again, step after step:
// 100-165 MB a step, about 30% of it at the tutorial's sizes. Here blocks of 8 MiB or
// more are rounded up to one of eight sizes per power of two and kept when freed, for
// the next request of that size class (or of up to a quarter more). The cache is
// installed as torch's CPU allocator only between enter() and the matching exit(), which
// frees what it kept; blocks still alive then are freed when they die. Smaller blocks
// are allocated and freed as torch's own allocator does: glibc's heap reuses those once
// its threshold has risen, and caching them by size class only fragmented the memory
// (at 1 MiB, fits at the paper's sizes on short histories faulted in 57-63 MB of fresh
// pages with the cache against 15-17 MB without it).
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <pthread.h>

#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <tuple>
#include <unordered_map>

namespace {

constexpr size_t kMinCachedBytes = size_t(8) << 20;  // see the top
constexpr size_t kAlignment = 64;  // c10's own alignment for CPU tensors
constexpr uint8_t kPriority = 0;   // the default allocator's: c10 lets an equal one replace it

// n rounded up to a multiple of an eighth of the largest power of two <= n.
size_t size_class(size_t n) {
  const size_t top = size_t(1) << (63 - __builtin_clzll(n));
  const size_t step = top >= 8 ? top / 8 : 1;
  return (n + step - 1) / step * step;
}

void* aligned(size_t bytes) {
  void* ptr = nullptr;
  const int error = posix_memalign(&ptr, kAlignment, bytes);
  TORCH_CHECK(error == 0 && ptr != nullptr, "sklearn-din's block cache: out of memory "
              "allocating ", bytes, " bytes");
  return ptr;
}

class BlockCache final : public c10::Allocator {
 public:
  static BlockCache& instance() {
    static BlockCache* cache = [] {
      // A child forked while another thread held the lock (a DataLoader worker) would
      // wait on it forever: the child starts with a fresh one.
      pthread_atfork(nullptr, nullptr, [] { new (&instance().mutex_) std::mutex(); });
      return new BlockCache();  // never destroyed: blocks may outlive exit()
    }();
    return *cache;
  }

  c10::DataPtr allocate(size_t n) override {
    if (n == 0) {
      return {nullptr, nullptr, &release, c10::Device(c10::DeviceType::CPU)};
    }
    void* ptr = nullptr;
    if (n >= kMinCachedBytes) {
      const size_t bytes = size_class(n);
      {
        std::lock_guard<std::mutex> guard(mutex_);
        auto it = free_.lower_bound(bytes);
        if (it != free_.end() && it->first <= bytes + bytes / 4) {
          ptr = it->second;
          live_[ptr] = it->first;
          cached_bytes_ -= it->first;
          free_.erase(it);
          ++hits_;
        } else {
          ++misses_;
        }
      }
      if (ptr == nullptr) {
        ptr = aligned(bytes);
        std::lock_guard<std::mutex> guard(mutex_);
        live_[ptr] = bytes;
      }
    } else {
      ptr = aligned(n);
    }
    return {ptr, ptr, &release, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &release; }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

  // Install the cache as torch's CPU allocator (nested calls count); false if another
  // allocator of a higher priority is installed, which is then left alone.
  bool enter(int64_t max_cached_bytes) {
    std::lock_guard<std::mutex> guard(mutex_);
    if (depth_ == 0) {
      previous_ = c10::GetCPUAllocator();
      if (previous_ != this) {
        c10::SetCPUAllocator(this, kPriority);
      }
      if (c10::GetCPUAllocator() != this) {
        return false;
      }
      max_cached_bytes_ = static_cast<size_t>(max_cached_bytes);
      hits_ = misses_ = 0;
    }
    ++depth_;
    return true;
  }

  // Undo one enter(); the last puts the previous allocator back and frees the cache.
  void exit() {
    std::lock_guard<std::mutex> guard(mutex_);
    TORCH_CHECK(depth_ > 0, "sklearn-din's block cache: exit() without enter()");
    if (--depth_ == 0) {
      if (c10::GetCPUAllocator() == this && previous_ != this) {
        c10::SetCPUAllocator(previous_, kPriority);
      }
      for (auto& entry : free_) {
        std::free(entry.second);
      }
      free_.clear();
      cached_bytes_ = 0;
    }
  }

  // (depth, cached bytes, live large blocks, hits, misses): for tests.
  std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t> stats() {
    std::lock_guard<std::mutex> guard(mutex_);
    return {depth_, static_cast<int64_t>(cached_bytes_), static_cast<int64_t>(live_.size()),
            hits_, misses_};
  }

 private:
  static void release(void* ptr) {
    if (ptr != nullptr) {
      instance().give_back(ptr);
    }
  }

  void give_back(void* ptr) {
    {
      std::lock_guard<std::mutex> guard(mutex_);
      auto it = live_.find(ptr);
      if (it != live_.end()) {
        const size_t bytes = it->second;
        live_.erase(it);
        if (depth_ > 0 && cached_bytes_ + bytes <= max_cached_bytes_) {
          free_.emplace(bytes, ptr);
          cached_bytes_ += bytes;
          return;
        }
      }
    }
    std::free(ptr);  // small, not kept, or allocated before the cache by posix_memalign
  }

  std::mutex mutex_;
  std::multimap<size_t, void*> free_;         // size class -> kept block
  std::unordered_map<void*, size_t> live_;    // large blocks handed out -> size class
  size_t cached_bytes_ = 0;
  size_t max_cached_bytes_ = 0;
  int64_t depth_ = 0;
  int64_t hits_ = 0;
  int64_t misses_ = 0;
  c10::Allocator* previous_ = nullptr;
};

bool block_cache_enter(int64_t max_cached_bytes) {
  return BlockCache::instance().enter(max_cached_bytes);
}

void block_cache_exit() { BlockCache::instance().exit(); }

std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t> block_cache_stats() {
  return BlockCache::instance().stats();
}

}  // namespace

#ifndef SKLEARN_DIN_NAMESPACE
#define SKLEARN_DIN_NAMESPACE sklearn_din
#endif
#define SKLEARN_DIN_FRAGMENT(ns, m) TORCH_LIBRARY_FRAGMENT(ns, m)
#define SKLEARN_DIN_EXPAND(ns, m) SKLEARN_DIN_FRAGMENT(ns, m)

SKLEARN_DIN_EXPAND(SKLEARN_DIN_NAMESPACE, m) {
  m.def("block_cache_enter(int max_cached_bytes) -> bool", &block_cache_enter);
  m.def("block_cache_exit() -> ()", &block_cache_exit);
  m.def("block_cache_stats() -> (int, int, int, int, int)", &block_cache_stats);
}
