/* The cheapest possible CUDA functions, so the benchmark measures the interposition and not the
 * work behind it. Built twice: as libcudart.so.12 (runtime symbols) and libcuda.so.1 (driver
 * symbols plus a cuGetProcAddress_v2 that hands them out, as the real driver does). */
#include <string.h>

#ifdef FAKE_DRIVER
int cuStreamQuery(void *stream) { (void)stream; return 0; }
int cuDriverGetVersion(int *v) { *v = 12090; return 0; }
int cuGetProcAddress_v2(const char *symbol, void **pfn, int version, unsigned long long flags, int *status) {
    (void)version; (void)flags;
    if (strcmp(symbol, "cuStreamQuery") == 0) { *pfn = (void *)cuStreamQuery; if (status) *status = 0; return 0; }
    *pfn = 0; if (status) *status = 1; return 500;
}
#else
int cudaStreamQuery(void *stream) { (void)stream; return 0; }
#endif
