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

/* One family: run `call`, keep its result in v_, judge it with ok, name it with errstr. */
#define FA4CP_CALL_CHECK_(kind, type, ok, errstr, what, call, ...)                                 \
    do {                                                                                           \
        type v_ = (call);                                                                          \
        kind(__VA_ARGS__ ok, what, call, errstr);                                                  \
    } while (0)

#ifdef HAVE_CUDA
#define FA4CP_CUDA_(kind, what, call, ...)                                                         \
    FA4CP_CALL_CHECK_(kind, cudaError_t, v_ == cudaSuccess, cudaGetErrorString(v_), what, call, __VA_ARGS__)
#define FA4CP_CUDA_TRY(what, call) FA4CP_CUDA_(FA4CP_CHECK_TRY_, what, call, FA4CP_ERR_CUDA, )
#define FA4CP_CUDA_RETURN(what, call) FA4CP_CUDA_(FA4CP_CHECK_RETURN_, what, call, FA4CP_ERR_CUDA, )
#define FA4CP_CUDA_IGNORE(what, call) FA4CP_CUDA_(FA4CP_CHECK_IGNORE_, what, call, )
#endif

#ifdef HAVE_NCCL
/* "error string: last error" of an NCCL result, in a per-thread buffer */
const char *fa4cp_nccl_error_text(int result);
#define FA4CP_NCCL_(kind, what, call, ...)                                                         \
    FA4CP_CALL_CHECK_(kind, ncclResult_t, v_ == ncclSuccess || v_ == ncclInProgress,              \
                      fa4cp_nccl_error_text((int)v_), what, call, __VA_ARGS__)
#define FA4CP_NCCL_TRY(what, call) FA4CP_NCCL_(FA4CP_CHECK_TRY_, what, call, FA4CP_ERR_NCCL, )
#define FA4CP_NCCL_RETURN(what, call) FA4CP_NCCL_(FA4CP_CHECK_RETURN_, what, call, FA4CP_ERR_NCCL, )
#define FA4CP_NCCL_IGNORE(what, call) FA4CP_NCCL_(FA4CP_CHECK_IGNORE_, what, call, )
#endif

#ifdef HAVE_PMIX
#define FA4CP_PMIX_(kind, what, call, ...)                                                         \
    FA4CP_CALL_CHECK_(kind, pmix_status_t, v_ == PMIX_SUCCESS, PMIx_Error_string(v_), what, call, __VA_ARGS__)
#define FA4CP_PMIX_TRY(what, call) FA4CP_PMIX_(FA4CP_CHECK_TRY_, what, call, FA4CP_ERR_PMIX, )
#define FA4CP_PMIX_RETURN(what, call) FA4CP_PMIX_(FA4CP_CHECK_RETURN_, what, call, FA4CP_ERR_PMIX, )
#define FA4CP_PMIX_IGNORE(what, call) FA4CP_PMIX_(FA4CP_CHECK_IGNORE_, what, call, )
#endif


#endif
