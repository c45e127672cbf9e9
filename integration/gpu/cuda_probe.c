/* Loads the CUDA driver the way a CUDA program does (dlopen of
 * libcuda.so.1, found through LD_LIBRARY_PATH or the ld.so cache), calls
 * cuInit and names every device it can see. Used on real GPUs by
 * integration/gpu/prove.sh and against the stand-in driver by the tests.
 * Prints one line per fact; exits non-zero when the driver cannot be
 * loaded or initialised. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

typedef int (*init_fn)(unsigned int);
typedef int (*int_fn)(int *);
typedef int (*name_fn)(char *, int, int);

int main(void)
{
    void *h = dlopen("libcuda.so.1", RTLD_NOW);
    if (!h) {
        printf("dlopen libcuda.so.1: %s\n", dlerror());
        return 2;
    }
    init_fn cu_init = (init_fn)dlsym(h, "cuInit");
    int_fn driver_version = (int_fn)dlsym(h, "cuDriverGetVersion");
    int_fn device_count = (int_fn)dlsym(h, "cuDeviceGetCount");
    name_fn device_name = (name_fn)dlsym(h, "cuDeviceGetName");
    if (!cu_init || !driver_version || !device_count || !device_name) {
        printf("libcuda.so.1 lacks a driver entry point\n");
        return 3;
    }
    int rc = cu_init(0);
    printf("cuInit: %d\n", rc);
    if (rc != 0)
        return 4;
    int version = 0, count = 0;
    driver_version(&version);
    device_count(&count);
    printf("driver: %d.%d\n", version / 1000, (version % 1000) / 10);
    printf("devices: %d\n", count);
    for (int i = 0; i < count; i++) {
        char name[256] = "";
        device_name(name, sizeof name, i);
        printf("device %d: %s\n", i, name);
    }
    return 0;
}
