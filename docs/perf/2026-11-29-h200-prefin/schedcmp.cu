// schedcmp.cu - prefin's GPU check (R1, R2): sched_bwd_kernel's list, count and hs against sched_kernel<true>'s on random calls
// build from a build dir: nvcc -gencode arch=compute_90a,code=sm_90a -O3 -std=c++17 -I../lib -I../kernels -cudart static -o schedcmp schedcmp.cu
#include "attn_bwd_kernel.cuh"
#include <cstdio>
#include <cstdlib>
#include <vector>
using namespace fa4cp;
static unsigned long long rs = 12345;
static int rnd(int lo, int hi) { rs = rs * 6364136223846793005ull + 1442695040888963407ull; return lo + (int)((rs >> 33) % (unsigned long long)(hi - lo + 1)); }
#define CK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { printf("CUDA %s at %d\n", cudaGetErrorString(e_), __LINE__); exit(2); } } while (0)
int main(int argc, char **argv) {
    int iters = argc > 1 ? atoi(argv[1]) : 300, bad = 0;
    int *dcu, *dck, *duq, *duk, *s1, *s2;
    const int MAXB = 2048, CAP = 1 << 20;
    CK(cudaMalloc(&dcu, 4 * (MAXB + 1))); CK(cudaMalloc(&dck, 4 * (MAXB + 1)));
    CK(cudaMalloc(&duq, 4 * MAXB)); CK(cudaMalloc(&duk, 4 * MAXB));
    CK(cudaMalloc(&s1, 4 * CAP)); CK(cudaMalloc(&s2, 4 * CAP));
    std::vector<int> h1(CAP), h2(CAP);
    cudaEvent_t a, b, c; cudaEventCreate(&a); cudaEventCreate(&b); cudaEventCreate(&c);
    for (int it = 0; it < iters; ++it) {
        const int kind = it % 6;
        int B = kind == 0 ? 1 : kind == 1 ? rnd(2, 8) : kind == 2 ? rnd(1, 300) : kind == 3 ? 4 : kind == 4 ? rnd(500, 2048) : 2;
        int maxlen = kind == 3 ? 8192 : kind == 5 ? 16384 : kind == 4 ? 600 : rnd(1, 40000);
        if (it % 17 == 5) { B = rnd(1, 3); maxlen = rnd(250000, 330000); } // nbins near SCHED_BWD_MAX_BINS
        std::vector<int> cu(B + 1), ck(B + 1), uq(B), uk(B);
        const bool eq = it % 3 == 0, used = it % 4 == 1;
        int msq = 0, msk = 0;
        for (int i = 0; i < B; ++i) {
            int sq = eq ? maxlen : rnd(0, maxlen), sk = eq ? maxlen : rnd(0, maxlen);
            if (it % 5 == 2) sk = sq;
            uq[i] = sq; uk[i] = sk;
            int pq = used ? rnd(0, 5) : 0, pk = used ? rnd(0, 5) : 0;
            cu[i + 1] = cu[i] + sq + pq; ck[i + 1] = ck[i] + sk + pk;
            msq = std::max(msq, sq + (used ? 0 : 0)); msk = std::max(msk, sk);
        }
        fa4cp_kparams p; memset(&p, 0, sizeof p);
        p.batch = B; p.heads = 16; p.kv_heads = rnd(0, 1) ? 16 : 4;
        p.max_sq = msq + (it % 7 == 0 ? rnd(0, 300) : 0); p.max_sk = msk;
        const int wk = rnd(0, 3);
        p.window_left = wk == 3 ? rnd(0, 3000) : -1;
        p.window_right = wk == 0 ? -1 : wk == 1 ? 0 : rnd(0, 2000);
        CK(cudaMemcpy(dcu, cu.data(), 4 * (B + 1), cudaMemcpyHostToDevice));
        CK(cudaMemcpy(dck, ck.data(), 4 * (B + 1), cudaMemcpyHostToDevice));
        CK(cudaMemcpy(duq, uq.data(), 4 * B, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(duk, uk.data(), 4 * B, cudaMemcpyHostToDevice));
        p.cu_q = dcu; p.cu_k = dck; p.used_q = used ? duq : nullptr; p.used_k = used ? duk : nullptr;
        const int WBN = 128, BI = (it & 1) ? 80 : 64;
        const int nb = (p.max_sk + WBN - 1) / WBN;
        const long long n = (long long)nb * B;
        if (n + 2 > CAP || nb == 0) continue;
        const int nbins = (p.max_sq > 0 ? (p.max_sq + BI - 1) / BI : 0) + 1;
        if (nbins > SCHED_BWD_MAX_BINS) continue;
        CK(cudaMemset(s1, 0xff, 4 * (n + 2))); CK(cudaMemset(s2, 0xff, 4 * (n + 2)));
        int nw = (int)std::min<long long>((n + 31) / 32, 32); nw = std::min(nw, SCHED_BWD_SMEM_INTS / nbins - 1); nw = std::max(nw, 1);
        cudaEventRecord(a);
        sched_kernel<true><<<1, SCHED_THREADS>>>(p, nb, WBN, BI, s1, nullptr, s1 + n + 1, 132);
        cudaEventRecord(b);
        sched_bwd_kernel<1024><<<1, nw * 32, (size_t)(nw + 1) * nbins * 4>>>(p, nb, WBN, BI, nbins, s2, s2 + n + 1, 132);
        cudaEventRecord(c);
        CK(cudaDeviceSynchronize());
        float t1, t2; cudaEventElapsedTime(&t1, a, b); cudaEventElapsedTime(&t2, b, c);
        CK(cudaMemcpy(h1.data(), s1, 4 * (n + 2), cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(h2.data(), s2, 4 * (n + 2), cudaMemcpyDeviceToHost));
        const bool same = memcmp(h1.data(), h2.data(), 4 * (n + 2)) == 0;
        if (!same) ++bad;
        if (!same || it < 12)
            printf("%s it %d B %d max_sq %d nb %d n %lld BI %d wl %d wr %d nbins %d nw %d count %d hs %d/%d old %.1f us new %.1f us\n",
                   same ? "same" : "DIFF", it, B, p.max_sq, nb, n, BI, p.window_left, p.window_right, nbins, nw, h1[0], h1[n + 1], h2[n + 1], t1 * 1e3, t2 * 1e3);
    }
    printf("schedcmp: %d of %d differ\n", bad, iters);
    return bad != 0;
}
