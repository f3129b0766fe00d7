/* run_gpu.h - GPU facts fa4cp-run needs without a CUDA context (private). */
#ifndef FA4CP_RUN_GPU_H
#define FA4CP_RUN_GPU_H

#include "fa4cp.h"

#include <stddef.h>

/* Free and total memory of the GPU of a world row, through NVML (dlopen of
 * libnvidia-ml.so.1: no link dependency, no CUDA context).  0 on success;
 * -1 when there is no GPU, no NVML, or the device is not found (why in
 * `why`).  name gets the device name. */
int run_gpu_memory(const fa4cp_world_row *row, size_t *free_bytes, size_t *total_bytes, char *name,
                   size_t name_len, char *why, size_t why_len);

/* The model (nvmlDeviceGetName) and the driver release
 * (nvmlSystemGetDriverVersion, "" when NVML lacks it) of a row's GPU; 0, or
 * -1 as run_gpu_memory. */
int run_gpu_info(const fa4cp_world_row *row, char *model, size_t model_len, char *driver, size_t driver_len);

#endif
