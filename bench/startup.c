/* Start-up cost of the preload: startup N PROGRAM PRELOAD...
 *
 * Starts PROGRAM (e.g. /bin/true) N times under each PRELOAD ("" = none), interleaved (one of
 * each in turn, so a change in the machine's load hits every variant alike), with an
 * environment holding only LD_PRELOAD. Prints one line per variant: the median and the mean
 * wall time of one start (posix_spawn to waitpid) in ms, and the differences of each from the
 * first variant: "median mean median_diff mean_diff". */
#define _GNU_SOURCE
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#define MAX_VARIANTS 8

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 4) return 2;
    int n = atoi(argv[1]);
    const char *program = argv[2];
    int k = argc - 3;
    if (n < 1 || k > MAX_VARIANTS) return 2;
    double *t = calloc((size_t)n * k, sizeof *t);
    char *args[] = {(char *)program, NULL};
    for (int r = 0; r < n; r++) {
        for (int i = 0; i < k; i++) {
            char preload[4096];
            snprintf(preload, sizeof preload, "LD_PRELOAD=%s", argv[3 + i]);
            char *with[] = {preload, NULL};
            char *none[] = {NULL};
            double t0 = now_ms();
            pid_t pid;
            if (posix_spawn(&pid, program, NULL, NULL, args, argv[3 + i][0] ? with : none) != 0) return 1;
            int status;
            if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return 1;
            t[(size_t)i * n + r] = now_ms() - t0;
        }
    }
    double median[MAX_VARIANTS], mean[MAX_VARIANTS];
    for (int i = 0; i < k; i++) {
        double *v = t + (size_t)i * n, sum = 0;
        for (int r = 0; r < n; r++) sum += v[r];
        qsort(v, n, sizeof *v, cmp);
        median[i] = v[n / 2];
        mean[i] = sum / n;
        printf("%.3f %.3f %+.3f %+.3f\n", median[i], mean[i], median[i] - median[0], mean[i] - mean[0]);
    }
    return 0;
}
