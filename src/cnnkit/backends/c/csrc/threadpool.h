/* The one thread pool of the library: a fixed partition of work into chunks, run by pthreads.
 *
 * A kernel splits its work into `chunks` pieces and calls cnk_parallel_for; each chunk runs exactly once,
 * on some thread. A reduction's pieces are chosen from the problem's shape alone (never from the thread
 * count): it writes one partial result per chunk and adds the partials in chunk order afterwards, so
 * results are bitwise identical for any thread count. Only a split of disjoint outputs, each computed by
 * the same operations in any split, may follow the thread count (conv2d's filter blocks do).
 *
 * The pool is created lazily by the first cnk_parallel_for, re-created lazily in a forked child, and its
 * workers never hold up process exit. Parallel regions are serialised by a process-wide mutex, so kernels
 * called from several Python threads at once (ctypes releases the GIL) are safe; a cnk_parallel_for
 * inside a chunk runs its chunks inline on the calling thread.
 */
#ifndef CNK_THREADPOOL_H
#define CNK_THREADPOOL_H

#include "common.h"

#define CNK_MAX_THREADS 256

/* Runs one chunk. `worker` (0 <= worker < the thread count) names the scratch slots this call may use;
 * return CNK_OK or a cnk_status (the first failure is what cnk_parallel_for returns). */
typedef int (*cnk_chunk_fn)(void *ctx, int64_t chunk, int worker);

/* Runs fn(ctx, i, worker) for every chunk i in [0, chunks), on up to the pool's thread count threads,
 * and returns when all are done. */
int cnk_parallel_for(int64_t chunks, cnk_chunk_fn fn, void *ctx);

/* Work estimates for cnk_parallel_for_work, in units of about a nanosecond of one core: a float streamed
 * through an elementwise kernel costs CNK_WORK_PER_FLOAT, a multiply-add of a GEMM 1 / CNK_FMAS_PER_WORK. */
#define CNK_WORK_PER_FLOAT 1
#define CNK_FMAS_PER_WORK 16
/* A region estimated below this runs inline on the calling thread: waking the workers would cost more
 * (-DCNK_INLINE_WORK=0 turns this off, for measuring). */
#ifndef CNK_INLINE_WORK
#define CNK_INLINE_WORK 20000
#endif

/* The work of `fmas` multiply-adds (a double, so huge products saturate instead of overflowing). */
static inline int64_t cnk_fma_work(double fmas)
{
    double work = fmas / CNK_FMAS_PER_WORK;
    return work >= 9e18 ? INT64_MAX : (int64_t)work;
}

/* As cnk_parallel_for, but runs the chunks inline on the calling thread when `work` (the whole region's
 * estimate, in the units above) is below CNK_INLINE_WORK. The chunks are the same either way, so results
 * do not change; only where they run does. */
int cnk_parallel_for_work(int64_t chunks, int64_t work, cnk_chunk_fn fn, void *ctx);

/* Scratch slots: per-worker workspaces that live as long as the process and only grow. A chunk may use
 * its worker's slots freely; their contents do not survive the chunk. GEMM uses the GEMM slots, so a
 * chunk that calls cnk_gemm_serial keeps its own data in CNK_SCRATCH_KERNEL. */
enum { CNK_SCRATCH_GEMM_A, CNK_SCRATCH_GEMM_B, CNK_SCRATCH_KERNEL, CNK_SCRATCH_SLOTS };

/* A CNK_ALIGN-aligned buffer of at least `bytes` for (worker, slot), or NULL when out of memory. */
void *cnk_scratch(int worker, int slot, size_t bytes);

/* Sets the number of threads (the caller included), 1 to CNK_MAX_THREADS; workers start lazily. */
CNK_API int cnk_set_num_threads(int threads);
CNK_API int cnk_get_num_threads(void);

#endif
