/* ns per call of cudaStreamQuery / cuStreamQuery, reached four ways: the runtime export (direct
 * or through a preloaded shim), a driver pointer from cuGetProcAddress_v2, and a driver pointer
 * from dlsym(dlopen("libcuda.so.1")). Each figure is the best of several timed loops. Mode
 * "faulting" times the runtime export while faults are on (calls may return errors). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int cudaStreamQuery(void *stream);
typedef int (*query_fn)(void *);
typedef int (*gpa_fn)(const char *, void **, int, unsigned long long, int *);

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static int g_errors_ok;

static double time_calls(query_fn f, long n) {
    double best = 1e30;
    for (int rep = 0; rep < 7; rep++) {
        int acc = 0;
        double t0 = now_ns();
        for (long i = 0; i < n; i++) acc |= f((void *)i);
        double dt = (now_ns() - t0) / n;
        if (acc != 0 && !g_errors_ok) { fprintf(stderr, "unexpected error %d\n", acc); exit(1); }
        if (dt < best) best = dt;
    }
    return best;
}

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "runtime";
    long n = argc > 2 ? atol(argv[2]) : 20000000;
    query_fn f = cudaStreamQuery;
    g_errors_ok = strcmp(what, "faulting") == 0;
    if (strcmp(what, "gpa") == 0 || strcmp(what, "dlsym") == 0) {
        void *h = dlopen("libcuda.so.1", RTLD_NOW);
        if (!h) { fprintf(stderr, "%s\n", dlerror()); return 1; }
        if (strcmp(what, "dlsym") == 0) {
            f = (query_fn)dlsym(h, "cuStreamQuery");
        } else {
            gpa_fn gpa = (gpa_fn)dlsym(h, "cuGetProcAddress_v2");
            int st = 0;
            if (gpa("cuStreamQuery", (void **)&f, 12000, 0, &st) != 0) return 1;
        }
    } else if (strcmp(what, "lookup") == 0) {
        /* cost of one dlsym of a CUDA name on a libcuda handle */
        void *h = dlopen("libcuda.so.1", RTLD_NOW);
        double best = 1e30;
        for (int rep = 0; rep < 7; rep++) {
            double t0 = now_ns();
            for (long i = 0; i < n; i++) if (!dlsym(h, "cuStreamQuery")) return 1;
            double dt = (now_ns() - t0) / n;
            if (dt < best) best = dt;
        }
        printf("%.2f\n", best);
        return 0;
    }
    printf("%.2f\n", time_calls(f, n));
    return 0;
}
