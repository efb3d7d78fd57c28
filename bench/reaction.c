/* Toggle reaction: THREADS threads call cudaStreamQuery in a loop (64 threads on 2 cores is a
 * loaded machine); the main thread flips the toggle file (atomic rename, as the cuda-fault helper
 * writes it) and records, for each flip, how long until the LAST thread saw the new state.
 * Prints "p50 p99 max" in milliseconds over the flips. */
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
static atomic_int stop;
static atomic_int target; /* 1: the file says on */
static atomic_int flip;   /* number of the current flip */
/* Per thread: the last flip it saw take effect, and when (ms). */
static atomic_int seen_flip[MAX_THREADS];
static _Atomic double seen_at[MAX_THREADS];

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void *loop(void *arg) {
    long id = (long)arg;
    while (!atomic_load(&stop)) {
        int f = atomic_load(&flip);
        int on = cudaStreamQuery(0) != 0;
        if (on == atomic_load(&target) && atomic_load(&seen_flip[id]) != f) {
            atomic_store(&seen_at[id], now_ms());
            atomic_store(&seen_flip[id], f);
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

int main(int argc, char **argv) {
    const char *path = argv[1];
    int flips = argc > 2 ? atoi(argv[2]) : 40;
    int threads = argc > 3 ? atoi(argv[3]) : 1;
    if (threads < 1 || threads > MAX_THREADS) return 2;
    double *lat = calloc(flips, sizeof *lat);
    write_toggle(path, "0\n");
    pthread_t t[MAX_THREADS];
    for (long i = 0; i < threads; i++) pthread_create(&t[i], 0, loop, (void *)i);
    usleep(50000);
    for (int i = 0; i < flips; i++) {
        int want = (i % 2 == 0);
        usleep(3000 + (rand() % 7000)); /* land at a random point of the poll interval */
        atomic_store(&target, want);
        atomic_store(&flip, i + 1);
        double t0 = now_ms();
        write_toggle(path, want ? "1\n" : "0\n");
        for (int k = 0; k < threads; k++) {
            while (atomic_load(&seen_flip[k]) != i + 1) {
                if (now_ms() - t0 > 10000) { fprintf(stderr, "no reaction within 10 s\n"); return 1; }
                sched_yield();
            }
        }
        double last = t0;
        for (int k = 0; k < threads; k++) if (atomic_load(&seen_at[k]) > last) last = atomic_load(&seen_at[k]);
        lat[i] = last - t0;
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < threads; i++) pthread_join(t[i], 0);
    qsort(lat, flips, sizeof *lat, cmp);
    printf("%.2f %.2f %.2f\n", lat[flips / 2], lat[(flips * 99) / 100], lat[flips - 1]);
    return 0;
}
