/* run_gpu.c - GPU memory through NVML, loaded at run time. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#include "run_gpu.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct nvml_memory {
    unsigned long long total, free, used;
} nvml_memory;

typedef struct nvml {
    void *lib;
    int ok;
    int (*init)(void);
    int (*by_index)(unsigned int, void **);
    int (*by_uuid)(const char *, void **);
    int (*memory)(void *, nvml_memory *);
    int (*name)(void *, char *, unsigned int);
    int (*driver)(char *, unsigned int); /* optional */
} nvml;

static nvml N;

static int nvml_load(char *why, size_t why_len)
{
    if (N.ok)
        return 0;
    if (!N.lib)
        N.lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!N.lib) {
        snprintf(why, why_len, "NVML (libnvidia-ml.so.1) is not installed");
        return -1;
    }
    N.init = (int (*)(void))dlsym(N.lib, "nvmlInit_v2");
    N.by_index = (int (*)(unsigned int, void **))dlsym(N.lib, "nvmlDeviceGetHandleByIndex_v2");
    N.by_uuid = (int (*)(const char *, void **))dlsym(N.lib, "nvmlDeviceGetHandleByUUID");
    N.memory = (int (*)(void *, nvml_memory *))dlsym(N.lib, "nvmlDeviceGetMemoryInfo");
    N.name = (int (*)(void *, char *, unsigned int))dlsym(N.lib, "nvmlDeviceGetName");
    N.driver = (int (*)(char *, unsigned int))dlsym(N.lib, "nvmlSystemGetDriverVersion");
    if (!N.init || !N.by_index || !N.by_uuid || !N.memory) {
        snprintf(why, why_len, "NVML lacks nvmlInit_v2/nvmlDeviceGetMemoryInfo");
        return -1;
    }
    int rc = N.init();
    if (rc != 0) {
        snprintf(why, why_len, "nvmlInit failed (%d): no driver or no GPU", rc);
        return -1;
    }
    N.ok = 1;
    return 0;
}

int run_gpu_memory(const fa4cp_world_row *row, size_t *free_bytes, size_t *total_bytes, char *name,
                   size_t name_len, char *why, size_t why_len)
{
    void *dev = NULL;
    int rc;
    if (name_len)
        name[0] = 0;
    if (row->gpu < 0) {
        snprintf(why, why_len, "rank %d has no GPU", row->rank);
        return -1;
    }
    if (nvml_load(why, why_len))
        return -1;
    /* the physical device: the CUDA_VISIBLE_DEVICES entry (index or UUID), else the ordinal */
    const char *id = row->gpu_id;
    if (!strncmp(id, "MIG-", 4)) {
        snprintf(why, why_len, "rank %d uses MIG instance %s: NVML reports the whole GPU", row->rank, id);
        return -1;
    }
    if (!strncmp(id, "GPU-", 4))
        rc = N.by_uuid(id, &dev);
    else
        rc = N.by_index((unsigned)(id[0] ? atoi(id) : row->gpu), &dev);
    if (rc != 0) {
        snprintf(why, why_len, "NVML does not know GPU '%s' of rank %d (%d)", id[0] ? id : "?", row->rank, rc);
        return -1;
    }
    nvml_memory m;
    if (N.memory(dev, &m) != 0) {
        snprintf(why, why_len, "nvmlDeviceGetMemoryInfo failed for rank %d", row->rank);
        return -1;
    }
    if (N.name && name_len)
        N.name(dev, name, (unsigned)name_len);
    *free_bytes = (size_t)m.free;
    *total_bytes = (size_t)m.total;
    return 0;
}

int run_gpu_info(const fa4cp_world_row *row, char *model, size_t model_len, char *driver, size_t driver_len)
{
    size_t fr, tot;
    char why[256];
    if (driver_len)
        driver[0] = 0;
    if (run_gpu_memory(row, &fr, &tot, model, model_len, why, sizeof why))
        return -1;
    if (N.driver && driver_len && N.driver(driver, (unsigned)driver_len) != 0)
        driver[0] = 0;
    return 0;
}
