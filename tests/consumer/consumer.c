/* A program built only from `pkg-config --cflags --libs libmtl` against an
 * installed libmtl: checks header and library agree and BLIS is reachable. */
#include <mtl.h>
#include <stdio.h>

int main(void)
{
    if (mtl_version_number() != MTL_VERSION_NUMBER) {
        fprintf(stderr, "header %d, library %d\n", MTL_VERSION_NUMBER, mtl_version_number());
        return 1;
    }
    mtl_context *ctx = NULL;
    if (mtl_context_create(&ctx, NULL) != MTL_OK) return 1;
    mtl_context_destroy(ctx);
    printf("consumer: libmtl %s, BLIS %s (%s)\n", mtl_version_string(), mtl_blis_version(), mtl_blis_arch());
    return 0;
}
