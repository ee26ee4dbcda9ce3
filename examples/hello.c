/* hello.c -- the smallest libmtl program: versions and BLIS configuration. */
#include <mtl.h>
#include <stdio.h>

int main(void)
{
    const char *arch = NULL;
    mtl_status s = mtl_blis_select_best_arch(&arch);
    if (s != MTL_OK) fprintf(stderr, "note: %s\n", mtl_last_error_message());
    printf("libmtl %s (header %d, library %d)\n", mtl_version_string(), MTL_VERSION_NUMBER,
           mtl_version_number());
    printf("BLIS %s, kernels '%s'%s, threading %s; libmtl's small kernels: %s\n", mtl_blis_version(),
           mtl_blis_arch(), mtl_blis_is_fallback() ? " (generic fallback!)" : "", mtl_blis_threading(),
           mtl_small_kernels());
    return 0;
}
