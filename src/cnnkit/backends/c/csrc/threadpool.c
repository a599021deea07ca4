#define _POSIX_C_SOURCE 200809L

#include "threadpool.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

/* Workers waiting for the next region, and the caller waiting for workers, spin this long before they
 * sleep on a condition variable: long enough to bridge the gap between the kernels of one training step,
 * short enough to give the core back when Python does other work. */
#define SPIN_NANOSECONDS 100000

struct scratch {
    void *ptr;
    size_t bytes;
};

static struct {
    pthread_mutex_t call_lock; /* held for a whole parallel region: one region at a time */
    pthread_mutex_t lock;      /* guards sleeping on and signalling the two condition variables */
    pthread_cond_t wake;       /* workers: a new generation (a region, or stop) */
    pthread_cond_t done;       /* the caller: every worker finished the region */
    atomic_int threads;        /* wanted, the caller included */
    int started;               /* workers were started for the current `threads` */
    int workers;               /* worker threads running (threads - 1 unless pthread_create failed) */
    int stop;                  /* workers exit at the next generation */
    unsigned first_generation; /* the generation new workers start from */
    pthread_t ids[CNK_MAX_THREADS];
    cnk_chunk_fn fn; /* the current region */
    void *ctx;
    int64_t chunks;
    atomic_uint generation;
    atomic_llong next;
    atomic_int finished;
    atomic_int status;
} pool = {.call_lock = PTHREAD_MUTEX_INITIALIZER, .lock = PTHREAD_MUTEX_INITIALIZER,
          .wake = PTHREAD_COND_INITIALIZER, .done = PTHREAD_COND_INITIALIZER, .threads = 1};

static struct scratch scratch[CNK_MAX_THREADS][CNK_SCRATCH_SLOTS];

/* The worker index of this thread inside a parallel region, -1 outside one. */
static _Thread_local int current_worker = -1;

void *cnk_scratch(int worker, int slot, size_t bytes)
{
    struct scratch *s = &scratch[worker][slot];
    if (s->ptr != NULL && s->bytes >= bytes)
        return s->ptr;
    size_t size = (bytes / CNK_ALIGN + 1) * CNK_ALIGN;
    void *ptr = aligned_alloc(CNK_ALIGN, size);
    if (ptr == NULL)
        return NULL;
    free(s->ptr);
    s->ptr = ptr;
    s->bytes = size;
    return ptr;
}

static int64_t nanoseconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void record(int status)
{
    int none = CNK_OK;
    if (status != CNK_OK)
        atomic_compare_exchange_strong(&pool.status, &none, status);
}

static void run_chunks(int worker)
{
    int64_t i;
    while ((i = atomic_fetch_add(&pool.next, 1)) < pool.chunks)
        record(pool.fn(pool.ctx, i, worker));
}

static int run_inline(int64_t chunks, cnk_chunk_fn fn, void *ctx, int worker)
{
    int first = CNK_OK;
    for (int64_t i = 0; i < chunks; i++) {
        int status = fn(ctx, i, worker);
        if (first == CNK_OK)
            first = status;
    }
    return first;
}

static unsigned wait_for_generation(unsigned seen)
{
    unsigned now;
    int64_t deadline = nanoseconds() + SPIN_NANOSECONDS;
    for (int round = 1;; round++) {
        if ((now = atomic_load(&pool.generation)) != seen)
            return now;
        cpu_relax();
        if (round % 64 == 0 && nanoseconds() > deadline)
            break;
    }
    pthread_mutex_lock(&pool.lock);
    while ((now = atomic_load(&pool.generation)) == seen)
        pthread_cond_wait(&pool.wake, &pool.lock);
    pthread_mutex_unlock(&pool.lock);
    return now;
}

static void wait_for_workers(void)
{
    int64_t deadline = nanoseconds() + SPIN_NANOSECONDS;
    for (int round = 1;; round++) {
        if (atomic_load(&pool.finished) == pool.workers)
            return;
        cpu_relax();
        if (round % 64 == 0 && nanoseconds() > deadline)
            break;
    }
    pthread_mutex_lock(&pool.lock);
    while (atomic_load(&pool.finished) != pool.workers)
        pthread_cond_wait(&pool.done, &pool.lock);
    pthread_mutex_unlock(&pool.lock);
}

static void *worker_main(void *arg)
{
    int worker = (int)(intptr_t)arg;
    unsigned seen = pool.first_generation;
    current_worker = worker;
    for (;;) {
        seen = wait_for_generation(seen);
        if (pool.stop)
            return NULL;
        run_chunks(worker);
        if (atomic_fetch_add(&pool.finished, 1) + 1 == pool.workers) {
            pthread_mutex_lock(&pool.lock);
            pthread_cond_signal(&pool.done);
            pthread_mutex_unlock(&pool.lock);
        }
    }
}

/* Starts a new generation: the current region, or `stop`. Called with call_lock held. */
static void publish(void)
{
    pthread_mutex_lock(&pool.lock);
    atomic_fetch_add(&pool.generation, 1);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
}

static void stop_workers(void)
{
    if (pool.workers > 0) {
        pool.stop = 1;
        publish();
        for (int i = 0; i < pool.workers; i++)
            pthread_join(pool.ids[i], NULL);
    }
    pool.stop = 0;
    pool.workers = 0;
    pool.started = 0;
}

/* fork() in a process with a pool: the prepare handler waits for the running region (if any), so the
 * child starts with no region in flight; the child has none of the parent's workers and starts its own
 * when it first needs them. */
static void before_fork(void)
{
    pthread_mutex_lock(&pool.call_lock);
    pthread_mutex_lock(&pool.lock);
}

static void after_fork_in_parent(void)
{
    pthread_mutex_unlock(&pool.lock);
    pthread_mutex_unlock(&pool.call_lock);
}

static void after_fork_in_child(void)
{
    pool.workers = 0;
    pool.started = 0;
    pthread_cond_init(&pool.wake, NULL);
    pthread_cond_init(&pool.done, NULL);
    pthread_mutex_unlock(&pool.lock);
    pthread_mutex_unlock(&pool.call_lock);
}

static void register_fork_handlers(void)
{
    pthread_atfork(before_fork, after_fork_in_parent, after_fork_in_child);
}

/* Starts threads - 1 workers with every signal blocked (signals are Python's main thread's business). */
static void start_workers(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, register_fork_handlers);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pool.first_generation = atomic_load(&pool.generation);
    int wanted = atomic_load(&pool.threads) - 1;
    int started = 0;
    while (started < wanted &&
           pthread_create(&pool.ids[started], NULL, worker_main, (void *)(intptr_t)(started + 1)) == 0)
        started++;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pool.workers = started;
    pool.started = 1;
}

int cnk_parallel_for(int64_t chunks, cnk_chunk_fn fn, void *ctx)
{
    return cnk_parallel_for_work(chunks, INT64_MAX, fn, ctx);
}

int cnk_parallel_for_work(int64_t chunks, int64_t work, cnk_chunk_fn fn, void *ctx)
{
    if (chunks <= 0)
        return CNK_OK;
    if (current_worker >= 0)
        return run_inline(chunks, fn, ctx, current_worker);
    pthread_mutex_lock(&pool.call_lock);
    current_worker = 0;
    int inline_only = chunks == 1 || work < CNK_INLINE_WORK;
    if (!inline_only && !pool.started && atomic_load(&pool.threads) > 1)
        start_workers();
    int status;
    if (inline_only || pool.workers == 0) {
        status = run_inline(chunks, fn, ctx, 0);
    } else {
        pool.fn = fn;
        pool.ctx = ctx;
        pool.chunks = chunks;
        atomic_store(&pool.next, 0);
        atomic_store(&pool.finished, 0);
        atomic_store(&pool.status, CNK_OK);
        publish();
        run_chunks(0);
        wait_for_workers();
        status = atomic_load(&pool.status);
    }
    current_worker = -1;
    pthread_mutex_unlock(&pool.call_lock);
    return status;
}

int cnk_set_num_threads(int threads)
{
    if (threads < 1 || threads > CNK_MAX_THREADS)
        return CNK_EINVAL;
    pthread_mutex_lock(&pool.call_lock);
    if (threads != atomic_load(&pool.threads)) {
        stop_workers();
        atomic_store(&pool.threads, threads);
    }
    pthread_mutex_unlock(&pool.call_lock);
    return CNK_OK;
}

int cnk_get_num_threads(void) { return atomic_load(&pool.threads); }
