/* Toggle reaction: one thread calls cudaStreamQuery in a loop; the main thread flips the toggle
 * file (atomic rename, as the cuda-fault helper writes it) and records how long until the loop
 * sees the new state. Prints "median max" in milliseconds over the flips. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int cudaStreamQuery(void *stream);
static atomic_int seen_error;
static atomic_int stop;

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void *loop(void *arg) {
    (void)arg;
    while (!atomic_load(&stop)) atomic_store(&seen_error, cudaStreamQuery(0) != 0);
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
    double *lat = calloc(flips, sizeof *lat);
    write_toggle(path, "0\n");
    pthread_t t;
    pthread_create(&t, 0, loop, 0);
    usleep(50000);
    for (int i = 0; i < flips; i++) {
        int want = (i % 2 == 0);
        usleep(3000 + (rand() % 7000)); /* land at a random point of the poll interval */
        double t0 = now_ms();
        write_toggle(path, want ? "1\n" : "0\n");
        while (atomic_load(&seen_error) != want) {
            if (now_ms() - t0 > 5000) { fprintf(stderr, "no reaction within 5 s\n"); return 1; }
        }
        lat[i] = now_ms() - t0;
    }
    atomic_store(&stop, 1);
    pthread_join(t, 0);
    qsort(lat, flips, sizeof *lat, cmp);
    printf("%.2f %.2f\n", lat[flips / 2], lat[flips - 1]);
    return 0;
}
