/* version.c -- library version (the header is the single source of truth). */
#include "mtl_internal.h"

#define MTLI_STR2(x) #x
#define MTLI_STR(x) MTLI_STR2(x)

int mtl_version_number(void)
{
    return MTL_VERSION_NUMBER;
}

const char *mtl_version_string(void)
{
    return MTLI_STR(MTL_VERSION_MAJOR) "." MTLI_STR(MTL_VERSION_MINOR) "." MTLI_STR(MTL_VERSION_PATCH);
}
