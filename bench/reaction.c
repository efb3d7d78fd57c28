/* Toggle reaction: reaction TOGGLE FLIPS THREADS RUNS.
 *
 * RUNS times over: THREADS threads call cudaStreamQuery in a loop (64 threads on 2 cores is a
 * loaded machine) while the main thread flips the toggle file (atomic rename, as the cuda-fault
 * helper writes it) FLIPS times; then the threads stop.
 *
 * The file cycles through three states ("0", "1 48", "1 79"), so every return code names the
 * state a call saw (0, 214, 100). For each flip it records how long after the write completed
 * a call could still START and see the previous state: the latest start time, over all threads,
 * of such a call. That is the window in which the file and the process disagree. (How long until
 * every thread has made a call at all is the scheduler's business, not the shim's: 64 busy
 * threads take turns on the cores.)
 *
 * Prints one line, in milliseconds:
 *   p50 p99 max worst_to_off worst_to_on worst_run_p99
 * p50/p99/max over every flip of every run (max is the worst run's worst flip); the worst flip
 * that turned faults off ("1 79" -> "0") and on ("0" -> "1 48"); the p99 of the worst run. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int cudaStreamQuery(void *stream);

#define MAX_THREADS 256
#define MAX_FLIPS 4096
static atomic_int stop;
static atomic_int flip; /* the current flip; the file holds state flip % 3 */
static const int CODE[3] = {0, 214, 100};
static const char *TEXT[3] = {"0\n", "1 48\n", "1 79\n"};
static _Atomic double written_at[MAX_FLIPS + 1];
/* Per flip and thread: the latest start (ms after the write) of a call that saw the old state. */
static double stale[MAX_FLIPS + 1][MAX_THREADS];
/* Per thread: the last flip it saw take effect. */
static atomic_int seen[MAX_THREADS];

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void *loop(void *arg) {
    long id = (long)arg;
    while (!atomic_load(&stop)) {
        int f = atomic_load(&flip);
        double start = now_ms();
        int code = cudaStreamQuery(0);
        /* A flip published during the call makes it ambiguous: skip it. */
        if (f == 0 || atomic_load(&flip) != f) continue;
        if (code == CODE[f % 3]) {
            atomic_store(&seen[id], f);
        } else if (code == CODE[(f + 2) % 3]) {
            double late = start - atomic_load(&written_at[f]);
            if (late > stale[f][id]) stale[f][id] = late;
        }
    }
    return 0;
}

static void write_toggle(const char *path, const char *text) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    fputs(text, f);
    fclose(f);
    rename(tmp, path);
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One run: FLIPS flips, each waited for until every thread saw it. Writes each flip's window
 * into lag[0..flips). Returns 0, or 1 when a flip was never seen. */
static int one_run(const char *path, int flips, int threads, double *lag) {
    memset(stale, 0, sizeof stale);
    for (int k = 0; k < MAX_THREADS; k++) atomic_store(&seen[k], 0);
    atomic_store(&flip, 0);
    atomic_store(&stop, 0);
    write_toggle(path, "0\n");
    pthread_t t[MAX_THREADS];
    for (long i = 0; i < threads; i++) pthread_create(&t[i], 0, loop, (void *)i);
    usleep(50000);
    int rc = 0;
    for (int i = 1; i <= flips && rc == 0; i++) {
        usleep(3000 + (rand() % 7000)); /* land at a random point of the poll interval */
        write_toggle(path, TEXT[i % 3]);
        /* Published after the rename: a call that reads flip i started after the write. */
        atomic_store(&written_at[i], now_ms());
        atomic_store(&flip, i);
        /* Every thread must have seen this flip before the next one. */
        double t0 = now_ms();
        for (int k = 0; k < threads && rc == 0; k++) {
            while (atomic_load(&seen[k]) != i) {
                if (now_ms() - t0 > 10000) {
                    fprintf(stderr, "no reaction within 10 s\n");
                    rc = 1;
                    break;
                }
                sched_yield();
            }
        }
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < threads; i++) pthread_join(t[i], 0);
    for (int i = 1; i <= flips; i++) {
        lag[i - 1] = 0;
        for (int k = 0; k < threads; k++)
            if (stale[i][k] > lag[i - 1]) lag[i - 1] = stale[i][k];
    }
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *path = argv[1];
    int flips = argc > 2 ? atoi(argv[2]) : 40;
    int threads = argc > 3 ? atoi(argv[3]) : 1;
    int runs = argc > 4 ? atoi(argv[4]) : 1;
    if (threads < 1 || threads > MAX_THREADS || flips < 1 || flips > MAX_FLIPS || runs < 1) return 2;
    double *all = calloc((size_t)flips * runs, sizeof *all);
    double *sorted = calloc(flips, sizeof *sorted);
    double to_off = 0, to_on = 0, worst_max = -1, worst_p99 = 0;
    for (int r = 0; r < runs; r++) {
        double *lag = all + (size_t)r * flips;
        if (one_run(path, flips, threads, lag) != 0) return 1;
        for (int i = 1; i <= flips; i++) {
            if (i % 3 == 0 && lag[i - 1] > to_off) to_off = lag[i - 1];
            if (i % 3 == 1 && lag[i - 1] > to_on) to_on = lag[i - 1];
        }
        memcpy(sorted, lag, flips * sizeof *sorted);
        qsort(sorted, flips, sizeof *sorted, cmp);
        if (sorted[flips - 1] > worst_max) {
            worst_max = sorted[flips - 1];
            worst_p99 = sorted[(flips * 99) / 100];
        }
    }
    size_t n = (size_t)flips * runs;
    qsort(all, n, sizeof *all, cmp);
    printf("%.2f %.2f %.2f %.2f %.2f %.2f\n", all[n / 2], all[(n * 99) / 100], all[n - 1], to_off, to_on, worst_p99);
    return 0;
}
