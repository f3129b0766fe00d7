// experiment: host cost of each piece of a forward call's enqueue, sync every 8 calls (not committed)
#include <cuda.h>
#include <cuda_runtime.h>
#include <cudaTypedefs.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <algorithm>
#include <vector>
static double now() { timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e6 + t.tv_nsec * 1e-3; }
struct Big { char b[600]; };
__global__ void k4(Big p, CUtensorMap a, CUtensorMap b, CUtensorMap c, CUtensorMap d, int x) { if (x == 12345 && threadIdx.x == 0) printf("%d\n", p.b[0] + ((char*)&a)[0]); }
__global__ void k0(int x) { if (x == 12345) printf("x\n"); }
int main() {
    cudaFree(0);
    cudaStream_t s; cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    void *p; cudaMalloc(&p, 1 << 28);
    PFN_cuTensorMapEncodeTiled_v12000 enc = nullptr; cudaDriverEntryPointQueryResult q;
    cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", (void **)&enc, 12000, cudaEnableDefault, &q);
    CUtensorMap m;
    cuuint64_t gdim[4] = {128, 16, 8192, 32769}; cuuint64_t gstr[3] = {256, 4096, 4096};
    cuuint32_t box[4] = {64, 1, 80, 1}, es[4] = {1, 1, 1, 1};
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    cudaMemPool_t pool; cudaMemPoolProps props = {}; props.allocType = cudaMemAllocationTypePinned; props.location.type = cudaMemLocationTypeDevice; props.location.id = 0;
    cudaMemPoolCreate(&pool, &props); uint64_t keep = UINT64_MAX; cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
    const char *names[] = {"IsCapturing", "GetId", "mutex", "getenv", "4 encodes", "memset 4B", "launch k4 (1.1KB params)", "GetLastError", "poolalloc", "poolfree", "launch k0", "total"};
    const int NS = 12; std::vector<double> seg[NS];
    Big b; memset(&b, 0, sizeof b);
    for (int it = 0; it < 4000; ++it) {
        double t[NS + 1]; int k = 0; t[k++] = now();
        cudaStreamCaptureStatus cs; cudaStreamIsCapturing(s, &cs); t[k++] = now();
        unsigned long long sid; cudaStreamGetId(s, &sid); t[k++] = now();
        pthread_mutex_lock(&mu); pthread_mutex_unlock(&mu); t[k++] = now();
        (void)getenv("FA4CP_CUDA_TUNING"); t[k++] = now();
        for (int e = 0; e < 4; e++) enc(&m, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 4, (char *)p + 1048576, gdim, gstr, box, es, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
        t[k++] = now();
        cudaMemsetAsync(p, 0, 4, s); t[k++] = now();
        k4<<<132, 384, 0, s>>>(b, m, m, m, m, 0); t[k++] = now();
        cudaGetLastError(); t[k++] = now();
        void *w; cudaMallocFromPoolAsync(&w, 4096, pool, s); t[k++] = now();
        cudaFreeAsync(w, s); t[k++] = now();
        k0<<<132, 128, 0, s>>>(0); t[k++] = now();
        t[k] = now();
        if (it >= 100) { for (int j = 0; j < NS - 1; j++) seg[j].push_back(t[j + 1] - t[j]); seg[NS - 1].push_back(t[NS - 1] - t[0]); }
        if (it % 8 == 7) cudaStreamSynchronize(s);
    }
    for (int j = 0; j < NS; j++) { std::sort(seg[j].begin(), seg[j].end()); printf("%-28s median %7.3f us  p90 %7.3f\n", names[j], seg[j][seg[j].size() / 2], seg[j][seg[j].size() * 9 / 10]); }
    return 0;
}
