/* The original Dynamo fault-injection tool's design, reproduced as a baseline: on every call,
 * open and read the toggle file (then the fallback file when absent), and look the real function
 * up with dlsym(RTLD_NEXT). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>

static int toggle_on(void) {
    int inject = 0;
    FILE *f = fopen("/host-fault/cuda_fault_enabled", "r");
    if (!f) f = fopen("/tmp/cuda_fault_enabled", "r");
    if (f) {
        char v[4] = {0};
        if (fgets(v, sizeof v, f)) inject = (v[0] == '1');
        fclose(f);
    }
    return inject;
}

int cudaStreamQuery(void *stream) {
    if (toggle_on()) return 100;
    int (*real)(void *) = (int (*)(void *))dlsym(RTLD_NEXT, "cudaStreamQuery");
    return real ? real(stream) : 100;
}
