/* error.c -- status strings and the thread-local error message. */
#include "mtl_internal.h"

#include <stdio.h>
#include <string.h>

#define MTLI_MSG_CAP 1024

/* Thread-local: a failed create leaves no handle to ask, and two threads
 * failing at once must not see each other's messages. */
static _Thread_local char mtli_msg[MTLI_MSG_CAP];

const char *mtl_status_string(mtl_status status)
{
    switch (status) {
    case MTL_OK: return "ok";
    case MTL_ERR_INVALID_ARGUMENT: return "invalid argument";
    case MTL_ERR_OUT_OF_MEMORY: return "out of memory";
    case MTL_ERR_SHAPE: return "shape mismatch";
    case MTL_ERR_STATE: return "wrong call order or state";
    case MTL_ERR_IO: return "I/O error";
    case MTL_ERR_FORMAT: return "bad file format";
    case MTL_ERR_VERSION: return "version mismatch";
    case MTL_ERR_NON_FINITE: return "non-finite value";
    case MTL_ERR_UNSUPPORTED: return "unsupported";
    case MTL_ERR_INTERNAL: return "internal error";
    case MTL_ERR_NOT_FOUND: return "not found";
    }
    return "unknown status";
}

const char *mtl_last_error_message(void)
{
    return mtli_msg;
}

mtl_status mtli_fail(mtl_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(mtli_msg, sizeof mtli_msg, fmt, ap);
    va_end(ap);
    return status;
}

mtl_status mtli_fail_prefix(mtl_status status, const char *fmt, ...)
{
    char prefix[MTLI_MSG_CAP];
    char old[MTLI_MSG_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, mtli_msg, sizeof old);
    /* Truncation is acceptable for a message: keep the prefix whole. */
    size_t np = strlen(prefix);
    memcpy(mtli_msg, prefix, np + 1);
    size_t room = sizeof mtli_msg - np - 1;
    strncat(mtli_msg, old, room);
    return status;
}
