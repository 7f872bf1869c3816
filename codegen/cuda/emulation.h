// The emulation of CUDA on the CPU (codegen/cuda/emulate.py): compiled as C++ before a
// generated CUDA source and its launchers, it makes CUDA's names plain C++ and runs each CUDA
// thread of a block as a fiber.
#include <math.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>
#define __global__
#define __device__
#define __forceinline__ inline
#define GC_DEVICE inline
struct gc_dim3 { unsigned x, y, z; };
static thread_local gc_dim3 threadIdx, blockIdx, blockDim, gridDim;
static inline float __int_as_float(int v) { float f; memcpy(&f, &v, 4); return f; }
static inline double __longlong_as_double(long long v) { double d; memcpy(&d, &v, 8); return d; }
// fibers switch only at barriers: a read-modify-write is atomic here
template <typename T> static inline T atomicAdd(T* at, T value) {
  T old = *at;
  *at = old + value;
  return old;
}

// Shared memory with a race detector. Every element remembers the thread that last wrote it
// and the one that last read it (or "several"), with the barrier epoch of each: epochs count
// the block barriers passed (and blocks begun) since the library was loaded, so each block's
// are new. Two threads touching one element in one epoch, one of them writing, is a data race:
// which goes first is the scheduler's choice. An index outside the array is reported too.
static unsigned gc_epoch = 1;  // (zero-initialized records, epoch 0, never match)
static const char* gc_fault;  // what went wrong first in this launch, or NULL
static const char* gc_fault_array;
static long long gc_fault_index;
static int gc_fault_threads[2];
struct gc_seen { unsigned write_epoch, read_epoch; int writer, reader; };
static inline void gc_report(const char* what, const char* array, long long at, int a, int b) {
  if (gc_fault) return;
  gc_fault = what;
  gc_fault_array = array;
  gc_fault_index = at;
  gc_fault_threads[0] = a;
  gc_fault_threads[1] = b;
}
template <typename T> struct gc_ref {  // one element of a shared array, as a kernel uses it
  T* value;
  gc_seen* seen;
  const char* array;
  long long at;
  operator T() const {  // a read
    const int me = (int)threadIdx.x;
    if (seen->write_epoch == gc_epoch && seen->writer != me)
      gc_report("read while another thread writes it", array, at, seen->writer, me);
    if (seen->read_epoch != gc_epoch) {
      seen->read_epoch = gc_epoch;
      seen->reader = me;
    } else if (seen->reader != me) {
      seen->reader = -1;  // several threads
    }
    return *value;
  }
  gc_ref& operator=(T v) {
    const int me = (int)threadIdx.x;
    if (seen->write_epoch == gc_epoch && seen->writer != me)
      gc_report("written by two threads", array, at, seen->writer, me);
    if (seen->read_epoch == gc_epoch && seen->reader != me)
      gc_report("written while another thread reads it", array, at, seen->reader, me);
    seen->write_epoch = gc_epoch;
    seen->writer = me;
    *value = v;
    return *this;
  }
  gc_ref& operator=(const gc_ref& other) { return *this = (T)other; }
};
template <typename T, long long N> struct gc_shared {
  T values[N];
  gc_seen seen[N];
  const char* name;
  gc_ref<T> operator[](long long i) {
    if (i < 0 || i >= N) {
      gc_report("indexed out of bounds", name, i, (int)threadIdx.x, -1);
      i = 0;
    }
    return gc_ref<T>{&values[i], &seen[i], name, i};
  }
};
template <typename T, long long N, long long M> struct gc_shared2 {
  gc_shared<T, N * M> flat;
  struct gc_row {
    gc_shared<T, N * M>* flat;
    long long first;
    gc_ref<T> operator[](long long j) {
      return (j < 0 || j >= M) ? (*flat)[-1] : (*flat)[first + j];
    }
  };
  gc_row operator[](long long i) { return gc_row{&flat, (i < 0 || i >= N) ? -N * M : i * M}; }
};
#define GC_SHARED(T, name, n) static gc_shared<T, n> name = {{}, {}, #name}
#define GC_SHARED2(T, name, n, m) static gc_shared2<T, n, m> name = {{{}, {}, #name}}
extern "C" const char* gc_fault_text(long long* index, int* threads) {
  *index = gc_fault_index;
  threads[0] = gc_fault_threads[0];
  threads[1] = gc_fault_threads[1];
  return gc_fault ? gc_fault_array : NULL;
}
extern "C" const char* gc_fault_kind() { return gc_fault; }

// Each CUDA thread of a block is a fiber with a stack of its own; __syncthreads switches back
// to the scheduler, which resumes every thread of the block once per phase (in the launch's
// order; shuffled anew each phase) until all have finished. A thread that finishes while others
// wait at a barrier is a divergent barrier: the launch reports it. A fiber starts on its stack
// through ucontext once; every later switch is a _setjmp/_longjmp pair, which (unlike
// swapcontext) makes no system call to save the signal mask. C headers only: the emulation of
// a graph compiles in a fraction of a second.
enum { GC_RUNNING, GC_WAITING, GC_SHUFFLING, GC_DONE, GC_MAX_THREADS = 1024 };
struct gc_fiber { ucontext_t start; jmp_buf at; int state, started; };
static jmp_buf gc_scheduler;
static gc_fiber gc_fibers[GC_MAX_THREADS];
static unsigned gc_current;
static void (*gc_body)(const long long*);
static const long long* gc_args;

static void gc_entry() {
  gc_body(gc_args);
  gc_fibers[gc_current].state = GC_DONE;
  _longjmp(gc_scheduler, 1);  // (its stack is not used again)
}

static inline void __syncthreads() {
  gc_fiber& self = gc_fibers[gc_current];
  self.state = GC_WAITING;
  if (!_setjmp(self.at)) _longjmp(gc_scheduler, 1);
}

// A warp shuffle: each lane of the warp leaves its value, waits until all 32 have, reads its
// partner's, and waits again before any lane leaves a new one. The scheduler lets a warp's lanes
// past the shuffle once every one of them has reached it (the mask must be the whole warp).
static unsigned char gc_lanes[GC_MAX_THREADS][8];

static inline void gc_warp_sync() {
  gc_fiber& self = gc_fibers[gc_current];
  self.state = GC_SHUFFLING;
  if (!_setjmp(self.at)) _longjmp(gc_scheduler, 1);
}

template <typename T> static inline T __shfl_down_sync(unsigned mask, T value, int delta) {
  static_assert(sizeof(T) <= 8, "a shuffle moves at most 8 bytes");
  const unsigned me = threadIdx.x;
  memcpy(gc_lanes[me], &value, sizeof(T));
  gc_warp_sync();
  T out = value;  // (a lane whose partner is past the warp's end keeps its own value)
  if (me % 32 + delta < 32 && me + delta < blockDim.x) memcpy(&out, gc_lanes[me + delta], sizeof(T));
  gc_warp_sync();
  return out;
}

static void gc_resume(unsigned t) {
  if (_setjmp(gc_scheduler)) return;  // back from the fiber: at a barrier, or done
  if (!gc_fibers[t].started) {
    gc_fibers[t].started = 1;
    setcontext(&gc_fibers[t].start);
  }
  _longjmp(gc_fibers[t].at, 1);
}

// blocks in sequence; the threads of a block in `order`: 0 forward, 1 reverse, 2 shuffled;
// each thread runs body(args). Returns 0, 1 after a divergent barrier or shuffle (reached by
// some threads of the block or warp, not all), 2 for a block too large, 3 after a fault in
// shared memory (a race, an index out of bounds: gc_fault_text).
static int gc_launch(unsigned grid, unsigned block, int order, void (*body)(const long long*),
                     const long long* args) {
  const size_t stack = 1 << 16;
  if (block > GC_MAX_THREADS) return 2;
  char* stacks = (char*)malloc((size_t)block * stack);
  unsigned ids[GC_MAX_THREADS];
  int status = 0;
  gridDim = {grid, 1, 1};
  blockDim = {block, 1, 1};
  gc_body = body;
  gc_args = args;
  gc_fault = NULL;
  for (unsigned b = 0; b < grid && status == 0; b++) {
    blockIdx = {b, 0, 0};
    gc_epoch++;  // (a block's shared memory is its own)
    for (unsigned t = 0; t < block; t++) {
      getcontext(&gc_fibers[t].start);
      gc_fibers[t].start.uc_stack.ss_sp = stacks + (size_t)t * stack;
      gc_fibers[t].start.uc_stack.ss_size = stack;
      gc_fibers[t].start.uc_link = NULL;
      makecontext(&gc_fibers[t].start, gc_entry, 0);
      gc_fibers[t].state = GC_RUNNING;
      gc_fibers[t].started = 0;
    }
    uint64_t random = 1234 + b;  // (a fixed xorshift sequence per block: runs repeat)
    for (;;) {
      for (unsigned t = 0; t < block; t++) ids[t] = order == 1 ? block - 1 - t : t;
      if (order == 2) {
        for (unsigned t = block - 1; t > 0; t--) {  // Fisher-Yates
          random ^= random << 13; random ^= random >> 7; random ^= random << 17;
          unsigned other = (unsigned)(random % (t + 1)), kept = ids[t];
          ids[t] = ids[other];
          ids[other] = kept;
        }
      }
      for (unsigned i = 0; i < block; i++) {
        unsigned t = ids[i];
        if (gc_fibers[t].state != GC_RUNNING) continue;
        threadIdx = {t, 0, 0};
        gc_current = t;
        gc_resume(t);
      }
      // every thread now waits at a barrier or a shuffle, or is done
      unsigned done = 0, waiting = 0, released = 0;
      for (unsigned t = 0; t < block; t++) {
        done += gc_fibers[t].state == GC_DONE;
        waiting += gc_fibers[t].state == GC_WAITING;
      }
      if (done == block) break;
      for (unsigned lo = 0; lo < block; lo += 32) {  // warps whose lanes all reached a shuffle
        unsigned hi = lo + 32 < block ? lo + 32 : block, shuffling = 0;
        for (unsigned t = lo; t < hi; t++) shuffling += gc_fibers[t].state == GC_SHUFFLING;
        if (shuffling == hi - lo) {
          for (unsigned t = lo; t < hi; t++) gc_fibers[t].state = GC_RUNNING;
          released++;
        }
      }
      if (released) continue;
      if (waiting == block) {  // the whole block is at the barrier
        for (unsigned t = 0; t < block; t++) gc_fibers[t].state = GC_RUNNING;
        gc_epoch++;
        continue;
      }
      // some threads finished or wait at a shuffle while others wait at a barrier: divergent
      status = 1;
      break;
    }
  }
  free(stacks);
  return status ? status : gc_fault ? 3 : 0;
}
