/* checks.h - call checks for CUDA, NCCL and PMIx.
 *
 * One family per library, three behaviours each:
 *   FA4CP_<LIB>_TRY(what, call)     failure: st = FA4CP_ERR_<LIB> with the message, goto out
 *   FA4CP_<LIB>_RETURN(what, call)  failure: return FA4CP_ERR_<LIB> with the message
 *   FA4CP_<LIB>_IGNORE(what, call)  failure: a warning in the log (cleanup paths)
 * The message is "what: file:line: call failed: <the library's own error
 * string>" (NCCL adds ncclGetLastError), so a failure says where and why.
 * Include the library's header first; a family exists only in builds that
 * have the library (HAVE_CUDA, HAVE_NCCL, HAVE_PMIX).
 */
#ifndef FA4CP_CHECKS_H
#define FA4CP_CHECKS_H

#include "internal.h"

#define FA4CP_CHECK_MSG_ "%s: %s:%d: %s failed: %s"

#define FA4CP_CHECK_TRY_(status, ok, what, call, errstr)                                           \
    do {                                                                                           \
        if (!(ok))                                                                                 \
            FA4CP_FAIL((status), FA4CP_CHECK_MSG_, (what), __FILE__, __LINE__, #call, (errstr));   \
    } while (0)

#define FA4CP_CHECK_RETURN_(status, ok, what, call, errstr)                                        \
    do {                                                                                           \
        if (!(ok))                                                                                 \
            return fa4cp_set_error((status), FA4CP_CHECK_MSG_, (what), __FILE__, __LINE__, #call,  \
                                   (errstr));                                                      \
    } while (0)

#define FA4CP_CHECK_IGNORE_(ok, what, call, errstr)                                                \
    do {                                                                                           \
        if (!(ok))                                                                                 \
            fa4cp_log(FA4CP_LOG_WARN, FA4CP_CHECK_MSG_, (what), __FILE__, __LINE__, #call,         \
                      (errstr));                                                                   \
    } while (0)

#ifdef HAVE_CUDA
#define FA4CP_CUDA_(kind, what, call, ...)                                                         \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        kind(__VA_ARGS__ e_ == cudaSuccess, what, call, cudaGetErrorString(e_));                   \
    } while (0)
#define FA4CP_CUDA_TRY(what, call) FA4CP_CUDA_(FA4CP_CHECK_TRY_, what, call, FA4CP_ERR_CUDA, )
#define FA4CP_CUDA_RETURN(what, call) FA4CP_CUDA_(FA4CP_CHECK_RETURN_, what, call, FA4CP_ERR_CUDA, )
#define FA4CP_CUDA_IGNORE(what, call) FA4CP_CUDA_(FA4CP_CHECK_IGNORE_, what, call, )
#endif

#ifdef HAVE_NCCL
/* "error string (last error)" of an NCCL result, in a static per-thread buffer */
const char *fa4cp_nccl_error_text(int result);
#define FA4CP_NCCL_OK_(r_) ((r_) == ncclSuccess || (r_) == ncclInProgress)
#define FA4CP_NCCL_(kind, what, call, ...)                                                         \
    do {                                                                                           \
        ncclResult_t r_ = (call);                                                                  \
        kind(__VA_ARGS__ FA4CP_NCCL_OK_(r_), what, call, fa4cp_nccl_error_text((int)r_));          \
    } while (0)
#define FA4CP_NCCL_TRY(what, call) FA4CP_NCCL_(FA4CP_CHECK_TRY_, what, call, FA4CP_ERR_NCCL, )
#define FA4CP_NCCL_RETURN(what, call) FA4CP_NCCL_(FA4CP_CHECK_RETURN_, what, call, FA4CP_ERR_NCCL, )
#define FA4CP_NCCL_IGNORE(what, call) FA4CP_NCCL_(FA4CP_CHECK_IGNORE_, what, call, )
#endif

#ifdef HAVE_PMIX
#define FA4CP_PMIX_(kind, what, call, ...)                                                         \
    do {                                                                                           \
        pmix_status_t p_ = (call);                                                                 \
        kind(__VA_ARGS__ p_ == PMIX_SUCCESS, what, call, PMIx_Error_string(p_));                   \
    } while (0)
#define FA4CP_PMIX_TRY(what, call) FA4CP_PMIX_(FA4CP_CHECK_TRY_, what, call, FA4CP_ERR_PMIX, )
#define FA4CP_PMIX_RETURN(what, call) FA4CP_PMIX_(FA4CP_CHECK_RETURN_, what, call, FA4CP_ERR_PMIX, )
#define FA4CP_PMIX_IGNORE(what, call) FA4CP_PMIX_(FA4CP_CHECK_IGNORE_, what, call, )
#endif

#endif
