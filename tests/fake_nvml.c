/* fake_nvml.c - a stand-in libnvidia-ml.so.1 for tests: every GPU reports
 * 80 GiB total and FAKE_NVML_FREE_MIB (default 1024) MiB free. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct fake_memory {
    unsigned long long total, free, used;
} fake_memory;

int nvmlInit_v2(void);
int nvmlShutdown(void);
int nvmlDeviceGetHandleByIndex_v2(unsigned int index, void **dev);
int nvmlDeviceGetHandleByUUID(const char *uuid, void **dev);
int nvmlDeviceGetMemoryInfo(void *dev, fake_memory *m);
int nvmlDeviceGetName(void *dev, char *name, unsigned int len);
int nvmlSystemGetDriverVersion(char *version, unsigned int len);

int nvmlSystemGetDriverVersion(char *version, unsigned int len)
{
    if (len) {
        strncpy(version, "999.1-fake", len - 1);
        version[len - 1] = 0;
    }
    return 0;
}

int nvmlInit_v2(void) { return 0; }
int nvmlShutdown(void) { return 0; }

int nvmlDeviceGetHandleByIndex_v2(unsigned int index, void **dev)
{
    *dev = (void *)(uintptr_t)(index + 1);
    return index < 8 ? 0 : 2; /* NVML_ERROR_INVALID_ARGUMENT */
}

int nvmlDeviceGetHandleByUUID(const char *uuid, void **dev)
{
    *dev = (void *)(uintptr_t)1;
    return uuid && *uuid ? 0 : 2;
}

int nvmlDeviceGetMemoryInfo(void *dev, fake_memory *m)
{
    const char *f = getenv("FAKE_NVML_FREE_MIB");
    (void)dev;
    m->total = 80ULL << 30;
    m->free = (f ? strtoull(f, NULL, 10) : 1024ULL) << 20;
    m->used = m->total - m->free;
    return 0;
}

int nvmlDeviceGetName(void *dev, char *name, unsigned int len)
{
    (void)dev;
    if (len) {
        strncpy(name, "Fake GPU", len - 1);
        name[len - 1] = 0;
    }
    return 0;
}
