// experiment: host cost of the launch path's pieces (not committed)
#include <cuda.h>
#include <cuda_runtime.h>
#include <cudaTypedefs.h>
#include <stdio.h>
#include <time.h>
#include <string.h>
static double now() { timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e6 + t.tv_nsec * 1e-3; }
struct Big { char b[512]; };
__global__ void k4(Big p, CUtensorMap a, CUtensorMap b, CUtensorMap c, CUtensorMap d, int x) { if (x == 12345 && threadIdx.x == 0) printf("%d\n", p.b[0] + ((char*)&a)[0]); }
__global__ void k0(int x) { if (x == 12345) printf("x\n"); }
__global__ void __launch_bounds__(384) kbig(int x) { extern __shared__ char s[]; if (x == 12345) printf("%d\n", s[0]); }
#define T(name, N, ...) do { double t0 = now(); for (int i = 0; i < N; i++) { __VA_ARGS__; } double t1 = now(); printf("%-40s %8.3f us\n", name, (t1 - t0) / N); } while (0)
int main() {
    cudaFree(0);
    cudaStream_t s; cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    void *p; cudaMalloc(&p, 1 << 28);
    PFN_cuTensorMapEncodeTiled_v12000 enc = nullptr; cudaDriverEntryPointQueryResult q;
    cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", (void **)&enc, 12000, cudaEnableDefault, &q);
    CUtensorMap m;
    cuuint64_t gdim[4] = {128, 16, 8192, 32769}; cuuint64_t gstr[3] = {256, 4096, 4096};
    cuuint32_t box[4] = {64, 1, 80, 1}, es[4] = {1, 1, 1, 1};
    const int N = 2000;
    int dev, v;
    T("cudaGetDevice", N, cudaGetDevice(&dev));
    T("cudaDeviceGetAttribute(SMs)", N, cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev));
    T("getenv", N, (void)getenv("FA4CP_CUDA_TUNING"));
    T("tmap encode 4-d", N, enc(&m, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 4, (char *)p + 1048576, gdim, gstr, box, es, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE));
    cudaMemPool_t pool; cudaDeviceGetDefaultMemPool(&pool, 0);
    T("cudaDeviceGetDefaultMemPool", N, cudaDeviceGetDefaultMemPool(&pool, 0));
    void *w;
    T("mallocFromPoolAsync+freeAsync", N, (cudaMallocFromPoolAsync(&w, 4096, pool, s), cudaFreeAsync(w, s)));
    cudaStreamSynchronize(s);
    T("cudaMemsetAsync 4B", N, cudaMemsetAsync(p, 0, 4, s));
    cudaStreamSynchronize(s);
    T("launch k0 (int)", N, k0<<<132, 128, 0, s>>>(0));
    cudaStreamSynchronize(s);
    Big b; memset(&b, 0, sizeof b);
    T("launch k4 (512B + 4 maps)", N, k4<<<132, 384, 0, s>>>(b, m, m, m, m, 0));
    cudaStreamSynchronize(s);
    T("cudaFuncSetAttribute smem", N, cudaFuncSetAttribute(kbig, cudaFuncAttributeMaxDynamicSharedMemorySize, 200000));
    T("launch kbig 200KB", N, kbig<<<132, 384, 200000, s>>>(0));
    cudaStreamSynchronize(s);
    T("cudaGetLastError", N, cudaGetLastError());
    T("cudaStreamQuery", N, cudaStreamQuery(s));
    // idle-stream latency: event, launch, event, sync
    cudaEvent_t e0, e1; cudaEventCreate(&e0); cudaEventCreate(&e1);
    float tot = 0; for (int i = 0; i < 200; i++) { float f; cudaEventRecord(e0, s); k0<<<1, 32, 0, s>>>(0); cudaEventRecord(e1, s); cudaEventSynchronize(e1); cudaEventElapsedTime(&f, e0, e1); tot += f; }
    printf("%-40s %8.3f us\n", "idle: ev, k0, ev (GPU)", tot / 200 * 1000);
    tot = 0; for (int i = 0; i < 200; i++) { float f; cudaEventRecord(e0, s); double t0 = now(); while (now() - t0 < 10) ; k0<<<1, 32, 0, s>>>(0); cudaEventRecord(e1, s); cudaEventSynchronize(e1); cudaEventElapsedTime(&f, e0, e1); tot += f; }
    printf("%-40s %8.3f us\n", "idle: ev, 10us host, k0, ev (GPU)", tot / 200 * 1000);
    tot = 0; for (int i = 0; i < 200; i++) { float f; cudaEventRecord(e0, s); cudaMemsetAsync(p, 0, 4, s); k0<<<1, 32, 0, s>>>(0); cudaEventRecord(e1, s); cudaEventSynchronize(e1); cudaEventElapsedTime(&f, e0, e1); tot += f; }
    printf("%-40s %8.3f us\n", "idle: ev, memset, k0, ev (GPU)", tot / 200 * 1000);
    return 0;
}
