/* test_files.c -- model files through the public API: metadata, round
 * trips through buffers and paths, crash-safe saving, corruption and
 * truncation, locale independence. */
#include <dirent.h>
#include <spawn.h>
#include <sys/wait.h>
#include <errno.h>
#include <locale.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "files_common.h"

extern char **environ;

static char g_dir[64]; /* a fresh temporary directory per test run */

static const char *tmp_path(const char *name)
{
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

/* Everything observable about two models is equal, bitwise. */
static int models_equal(const mtl_model *a, const mtl_model *b)
{
    ASSERT_EQ_INT(mtl_model_input_count(a), mtl_model_input_count(b));
    ASSERT_EQ_INT(mtl_model_task_count(a), mtl_model_task_count(b));
    ASSERT_EQ_INT(mtl_model_layer_count(a), mtl_model_layer_count(b));
    ASSERT_EQ_INT(mtl_model_embedding_width(a), mtl_model_embedding_width(b));
    ASSERT_EQ_INT(mtl_model_target_width(a), mtl_model_target_width(b));
    ASSERT_EQ_INT(mtl_model_output_width(a), mtl_model_output_width(b));
    ASSERT_EQ_INT(mtl_model_is_finalized(b), 1);
    int64_t n = mtl_model_param_count(a);
    ASSERT_EQ_INT(mtl_model_param_count(b), n);
    float *pa = malloc((size_t)n * 4), *pb = malloc((size_t)n * 4);
    ASSERT(pa && pb);
    ASSERT_OK(mtl_model_get_params(a, pa, n));
    ASSERT_OK(mtl_model_get_params(b, pb, n));
    int same = memcmp(pa, pb, (size_t)n * 4) == 0;
    free(pa);
    free(pb);
    ASSERT(same);
    ASSERT_EQ_INT(mtl_model_param_block_count(a), mtl_model_param_block_count(b));
    for (int64_t i = 0; i < mtl_model_param_block_count(a); i++) {
        const char *na, *nb;
        int64_t oa, ra, ca, la, ob, rb, cb, lb;
        ASSERT_OK(mtl_model_param_block(a, i, &na, &oa, &ra, &ca, &la));
        ASSERT_OK(mtl_model_param_block(b, i, &nb, &ob, &rb, &cb, &lb));
        ASSERT(strcmp(na, nb) == 0 && oa == ob && ra == rb && ca == cb && la == lb);
    }
    for (int64_t t = 0; t < mtl_model_task_count(a); t++) {
        const char *na, *nb, *ua, *ub, *da, *db;
        ASSERT_OK(mtl_model_task_name(a, t, &na));
        ASSERT_OK(mtl_model_task_name(b, t, &nb));
        ASSERT(strcmp(na, nb) == 0);
        mtl_task_type ta, tb;
        ASSERT_OK(mtl_model_task_type(a, t, &ta));
        ASSERT_OK(mtl_model_task_type(b, t, &tb));
        ASSERT_EQ_INT(ta, tb);
        int64_t oa, ob, tca, tcb, oca, ocb;
        ASSERT_OK(mtl_model_task_outputs(a, t, &oa));
        ASSERT_OK(mtl_model_task_outputs(b, t, &ob));
        ASSERT_EQ_INT(oa, ob);
        ASSERT_OK(mtl_model_task_columns(a, t, &tca, &oca));
        ASSERT_OK(mtl_model_task_columns(b, t, &tcb, &ocb));
        ASSERT(tca == tcb && oca == ocb);
        static const int f64opts[] = { MTL_TASK_OPT_LOSS_WEIGHT, MTL_TASK_OPT_HUBER_DELTA };
        for (int k = 0; k < 2; k++) {
            double va, vb;
            ASSERT_OK(mtl_model_get_task_f64(a, t, f64opts[k], &va));
            ASSERT_OK(mtl_model_get_task_f64(b, t, f64opts[k], &vb));
            ASSERT(memcmp(&va, &vb, sizeof va) == 0);
        }
        static const int i64opts[] = { MTL_TASK_OPT_LOSS, MTL_TASK_OPT_STANDARDIZE, MTL_TASK_OPT_LOG_TARGET };
        for (int k = 0; k < 3; k++) {
            int64_t va, vb;
            ASSERT_OK(mtl_model_get_task_i64(a, t, i64opts[k], &va));
            ASSERT_OK(mtl_model_get_task_i64(b, t, i64opts[k], &vb));
            ASSERT_EQ_INT(va, vb);
        }
        ASSERT_OK(mtl_model_get_task_text(a, t, &ua, &da));
        ASSERT_OK(mtl_model_get_task_text(b, t, &ub, &db));
        ASSERT((ua == NULL) == (ub == NULL) && (!ua || strcmp(ua, ub) == 0));
        ASSERT((da == NULL) == (db == NULL) && (!da || strcmp(da, db) == 0));
    }
    for (int64_t i = 0; i < mtl_model_input_count(a); i++) {
        const char *fa, *fb;
        ASSERT_OK(mtl_model_get_feature_name(a, i, &fa));
        ASSERT_OK(mtl_model_get_feature_name(b, i, &fb));
        ASSERT((fa == NULL) == (fb == NULL) && (!fa || strcmp(fa, fb) == 0));
    }
    ASSERT_EQ_INT(mtl_model_metadata_count(a), mtl_model_metadata_count(b));
    for (int64_t i = 0; i < mtl_model_metadata_count(a); i++) {
        const char *ka, *va, *kb, *vb;
        ASSERT_OK(mtl_model_metadata_at(a, i, &ka, &va));
        ASSERT_OK(mtl_model_metadata_at(b, i, &kb, &vb));
        ASSERT(strcmp(ka, kb) == 0 && strcmp(va, vb) == 0);
    }
    /* Predictions (which go through the scalers) are bitwise equal. */
    float x[SAMPLE_ROWS * SAMPLE_INPUTS], y[SAMPLE_ROWS * SAMPLE_TARGETS];
    sample_data(x, y);
    int64_t ow = mtl_model_output_width(a), tw = mtl_model_target_width(a);
    float *oa = malloc(sizeof(float) * SAMPLE_ROWS * (size_t)ow), *ob = malloc(sizeof(float) * SAMPLE_ROWS * (size_t)ow);
    mtl_workspace *wa = NULL, *wb = NULL;
    ASSERT(oa && ob);
    ASSERT_OK(mtl_workspace_create(&wa, a, 7)); /* chunks of 7 rows */
    ASSERT_OK(mtl_workspace_create(&wb, b, SAMPLE_ROWS));
    ASSERT(mtl_model_input_count(a) <= SAMPLE_INPUTS);
    ASSERT_OK(mtl_model_predict(a, wa, SAMPLE_ROWS, x, SAMPLE_INPUTS, oa, ow));
    ASSERT_OK(mtl_model_predict(b, wb, SAMPLE_ROWS, x, SAMPLE_INPUTS, ob, ow));
    same = memcmp(oa, ob, sizeof(float) * SAMPLE_ROWS * (size_t)ow) == 0;
    ASSERT_OK(mtl_model_predict_labels(a, wa, SAMPLE_ROWS, x, SAMPLE_INPUTS, oa, tw));
    ASSERT_OK(mtl_model_predict_labels(b, wb, SAMPLE_ROWS, x, SAMPLE_INPUTS, ob, tw));
    same = same && memcmp(oa, ob, sizeof(float) * SAMPLE_ROWS * (size_t)tw) == 0;
    mtl_workspace_destroy(wa);
    mtl_workspace_destroy(wb);
    free(oa);
    free(ob);
    ASSERT(same);
    /* The domain (part of the scalers) answers identically. */
    float probe[4 * SAMPLE_INPUTS] = { 500, 5, 0, 100, 5, 0, 500, 50, 0, -1, -1, 9 };
    int64_t da[4], db[4];
    mtl_status sa = mtl_model_check_domain(a, 4, probe, SAMPLE_INPUTS, da);
    mtl_status sb = mtl_model_check_domain(b, 4, probe, SAMPLE_INPUTS, db);
    ASSERT_EQ_INT(sa, sb);
    if (sa == MTL_OK) ASSERT(memcmp(da, db, sizeof da) == 0);
    return 0;
}

/* ---- metadata ------------------------------------------------------------------ */

TEST(metadata_api)
{
    mtl_model *m = NULL;
    ASSERT_OK(mtl_model_create(&m, NULL, 2));
    const char *v = NULL, *k = NULL;
    ASSERT_EQ_INT(mtl_model_metadata_count(m), 0);
    ASSERT_STATUS(MTL_ERR_NOT_FOUND, mtl_model_get_metadata(m, "author", &v));
    ASSERT_MSG_HAS("author");
    ASSERT_OK(mtl_model_set_metadata(m, "author", "Ada"));
    ASSERT_OK(mtl_model_set_metadata(m, "year", "2024"));
    ASSERT_OK(mtl_model_set_metadata(m, "lab", "K\xc3\xb8" "benhavn"));
    ASSERT_OK(mtl_model_set_metadata(m, "author", "Grace")); /* replace keeps the position */
    ASSERT_EQ_INT(mtl_model_metadata_count(m), 3);
    ASSERT_OK(mtl_model_metadata_at(m, 0, &k, &v));
    ASSERT(strcmp(k, "author") == 0 && strcmp(v, "Grace") == 0);
    ASSERT_OK(mtl_model_get_metadata(m, "lab", &v));
    ASSERT(strcmp(v, "K\xc3\xb8" "benhavn") == 0);
    ASSERT_OK(mtl_model_set_metadata(m, "year", NULL)); /* remove */
    ASSERT_OK(mtl_model_set_metadata(m, "year", NULL)); /* removing an absent key is fine */
    ASSERT_EQ_INT(mtl_model_metadata_count(m), 2);
    ASSERT_OK(mtl_model_metadata_at(m, 1, &k, &v));
    ASSERT(strcmp(k, "lab") == 0);
    /* many keys: the table grows */
    char key[32];
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "k%d", i);
        ASSERT_OK(mtl_model_set_metadata(m, key, key));
    }
    ASSERT_EQ_INT(mtl_model_metadata_count(m), 102);
    ASSERT_OK(mtl_model_get_metadata(m, "k77", &v));
    ASSERT(strcmp(v, "k77") == 0);
    /* bad arguments change nothing */
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_set_metadata(m, "", "x"));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_set_metadata(m, NULL, "x"));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_set_metadata(m, "bad", "\xff"));
    ASSERT_MSG_HAS("UTF-8");
    char *big = malloc(70000);
    ASSERT(big);
    memset(big, 'a', 69999);
    big[69999] = 0;
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_set_metadata(m, "big", big));
    big[65536] = 0; /* exactly 64 KiB is allowed */
    ASSERT_OK(mtl_model_set_metadata(m, "big", big));
    free(big);
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_metadata_at(m, 103, &k, &v));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_metadata_at(m, -1, &k, &v));
    ASSERT_EQ_INT(mtl_model_metadata_count(NULL), 0);

    /* feature names */
    const char *name = "x";
    ASSERT_OK(mtl_model_get_feature_name(m, 1, &name));
    ASSERT(name == NULL);
    ASSERT_OK(mtl_model_set_feature_name(m, 1, "p / bar"));
    ASSERT_OK(mtl_model_get_feature_name(m, 1, &name));
    ASSERT(strcmp(name, "p / bar") == 0);
    ASSERT_OK(mtl_model_get_feature_name(m, 0, &name));
    ASSERT(name == NULL);
    ASSERT_OK(mtl_model_set_feature_name(m, 1, NULL));
    ASSERT_OK(mtl_model_get_feature_name(m, 1, &name));
    ASSERT(name == NULL);
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_set_feature_name(m, 2, "z"));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_get_feature_name(m, -1, &name));

    /* task texts */
    int64_t t;
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_set_task_text(m, 0, "K", NULL));
    ASSERT_OK(mtl_model_add_task(m, "T", MTL_TASK_REGRESSION, 1, &t));
    const char *u = "x", *d = "x";
    ASSERT_OK(mtl_model_get_task_text(m, t, &u, &d));
    ASSERT(u == NULL && d == NULL);
    ASSERT_OK(mtl_model_set_task_text(m, t, "K", "temperature"));
    ASSERT_OK(mtl_model_get_task_text(m, t, &u, &d));
    ASSERT(strcmp(u, "K") == 0 && strcmp(d, "temperature") == 0);
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_set_task_text(m, t, "\xc3", NULL));
    ASSERT_OK(mtl_model_get_task_text(m, t, &u, &d)); /* unchanged */
    ASSERT(strcmp(u, "K") == 0);
    ASSERT_OK(mtl_model_set_task_text(m, t, NULL, "only a description"));
    ASSERT_OK(mtl_model_get_task_text(m, t, &u, NULL));
    ASSERT(u == NULL);
    mtl_model_destroy(m); /* frees all of it (LeakSanitizer checks) */
    return 0;
}

/* ---- round trips ---------------------------------------------------------------- */

TEST(round_trip_buffer)
{
    mtl_model *m = NULL, *back = NULL;
    ASSERT_OK(sample_model(&m, NULL, 1));
    size_t need = 0, got = 0;
    ASSERT_OK(mtl_model_save_buffer(m, NULL, 0, &need));
    ASSERT(need > 100);
    unsigned char *buf = malloc(need + 16);
    ASSERT(buf);
    ASSERT_STATUS(MTL_ERR_SHAPE, mtl_model_save_buffer(m, buf, need - 1, &got));
    ASSERT_EQ_INT(got, need); /* the size needed is reported */
    ASSERT_OK(mtl_model_save_buffer(m, buf, need + 16, &got));
    ASSERT_EQ_INT(got, need);
    ASSERT_OK(mtl_model_load_buffer(&back, NULL, buf, got));
    int r = models_equal(m, back);
    /* the loaded model saves to the same bytes */
    unsigned char *again = NULL;
    size_t again_size = 0;
    ASSERT_OK(save_to_malloc(back, &again, &again_size));
    ASSERT_EQ_INT(again_size, got);
    ASSERT(memcmp(again, buf, got) == 0);
    free(again);
    free(buf);
    mtl_model_destroy(back);
    mtl_model_destroy(m);
    return r;
}

/* No scalers, no names, no metadata: the optional sections are absent. */
TEST(round_trip_minimal)
{
    mtl_model *m = NULL, *back = NULL;
    ASSERT_OK(mtl_model_create(&m, NULL, 1));
    ASSERT_OK(mtl_model_add_task(m, "y", MTL_TASK_REGRESSION, 1, NULL));
    ASSERT_OK(mtl_model_finalize(m));
    unsigned char *buf = NULL;
    size_t size = 0;
    ASSERT_OK(save_to_malloc(m, &buf, &size));
    ASSERT_OK(mtl_model_load_buffer(&back, NULL, buf, size));
    int r = models_equal(m, back);
    int64_t dom;
    float x = 0;
    ASSERT_STATUS(MTL_ERR_STATE, mtl_model_check_domain(back, 1, &x, 1, &dom)); /* no scalers */
    free(buf);
    mtl_model_destroy(back);
    mtl_model_destroy(m);
    return r;
}

TEST(round_trip_path)
{
    mtl_model *m = NULL, *back = NULL;
    ASSERT_OK(sample_model(&m, NULL, 1));
    const char *path = tmp_path("sample.mtl");
    ASSERT_OK(mtl_model_save(m, path));
    ASSERT_OK(mtl_model_load(&back, NULL, path));
    int r = models_equal(m, back);
    size_t fsize = 0, bsize = 0;
    unsigned char *file = read_all(path, &fsize), *buf = NULL;
    ASSERT(file);
    ASSERT_OK(save_to_malloc(m, &buf, &bsize));
    ASSERT_EQ_INT(fsize, bsize);
    ASSERT(memcmp(file, buf, fsize) == 0); /* path and buffer writers agree */
    /* saving over an existing file replaces it and leaves no temp file */
    ASSERT_OK(mtl_model_set_metadata(m, "author", "someone else"));
    ASSERT_OK(mtl_model_save(m, path));
    mtl_model *third = NULL;
    ASSERT_OK(mtl_model_load(&third, NULL, path));
    const char *v;
    ASSERT_OK(mtl_model_get_metadata(third, "author", &v));
    ASSERT(strcmp(v, "someone else") == 0);
    ASSERT_EQ_INT(count_temp_files(g_dir), 0);
    /* a relative path (no directory part) works too */
    char cwd[512];
    ASSERT(getcwd(cwd, sizeof cwd));
    ASSERT(chdir(g_dir) == 0);
    mtl_status rel = mtl_model_save(m, "relative.mtl");
    mtl_model *fourth = NULL;
    mtl_status rel_load = mtl_model_load(&fourth, NULL, "relative.mtl");
    ASSERT(chdir(cwd) == 0);
    ASSERT_OK(rel);
    ASSERT_OK(rel_load);
    mtl_model_destroy(fourth);
    free(file);
    free(buf);
    mtl_model_destroy(third);
    mtl_model_destroy(back);
    mtl_model_destroy(m);
    return r;
}

/* ---- saving: errors and crash safety ------------------------------------------------ */

TEST(save_errors_keep_old_file)
{
    mtl_model *m = NULL, *unfinished = NULL;
    ASSERT_OK(sample_model(&m, NULL, 1));
    const char *path = tmp_path("keep.mtl");
    ASSERT_OK(mtl_model_save(m, path));
    size_t old_size = 0;
    unsigned char *old = read_all(path, &old_size);
    ASSERT(old);

    ASSERT_OK(mtl_model_create(&unfinished, NULL, 2));
    ASSERT_STATUS(MTL_ERR_STATE, mtl_model_save(unfinished, path));
    size_t sz;
    ASSERT_STATUS(MTL_ERR_STATE, mtl_model_save_buffer(unfinished, NULL, 0, &sz));
    mtl_model_destroy(unfinished);
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_save(NULL, path));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_save(m, NULL));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_save(m, ""));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_save_buffer(m, NULL, 0, NULL));

    /* a missing directory */
    ASSERT_STATUS(MTL_ERR_IO, mtl_model_save(m, tmp_path("no/such/dir/x.mtl")));
    ASSERT_MSG_HAS("No such file or directory");
    ASSERT_MSG_HAS("no/such/dir/x.mtl");

    /* the target is a directory: the rename fails after the whole file was
     * written, and the temporary file must go */
    const char *dir = tmp_path("a_directory");
    ASSERT(mkdir(dir, 0755) == 0);
    ASSERT_STATUS(MTL_ERR_IO, mtl_model_save(m, dir));
    ASSERT_MSG_HAS("a_directory");
    ASSERT_EQ_INT(count_temp_files(g_dir), 0);
    struct stat st;
    ASSERT(stat(dir, &st) == 0 && S_ISDIR(st.st_mode));

    /* the disk "fills up" mid-write (RLIMIT_FSIZE works even for root) */
    ASSERT_OK(mtl_model_set_metadata(m, "padding", "................................................................"));
    struct rlimit saved, small;
    ASSERT(getrlimit(RLIMIT_FSIZE, &saved) == 0);
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    small = saved;
    small.rlim_cur = 200;
    ASSERT(setrlimit(RLIMIT_FSIZE, &small) == 0);
    mtl_status full = mtl_model_save(m, path);
    char msg[512];
    snprintf(msg, sizeof msg, "%s", mtl_last_error_message());
    ASSERT(setrlimit(RLIMIT_FSIZE, &saved) == 0);
    signal(SIGXFSZ, old_handler);
    ASSERT_EQ_INT(full, MTL_ERR_IO);
    ASSERT(strstr(msg, "keep.mtl") && strstr(msg, "large"));
    ASSERT_EQ_INT(count_temp_files(g_dir), 0);
    size_t now_size = 0;
    unsigned char *now = read_all(path, &now_size);
    ASSERT(now && now_size == old_size && memcmp(now, old, old_size) == 0);
    free(now);

    /* a read-only directory (root ignores permissions: skipped then) */
    if (geteuid() != 0) {
        const char *ro = tmp_path("ro");
        ASSERT(mkdir(ro, 0755) == 0);
        char target[300];
        snprintf(target, sizeof target, "%s/m.mtl", ro);
        ASSERT_OK(mtl_model_save(m, target));
        ASSERT(chmod(ro, 0555) == 0);
        ASSERT_STATUS(MTL_ERR_IO, mtl_model_save(m, target));
        ASSERT_MSG_HAS("Permission denied");
        ASSERT(chmod(ro, 0755) == 0);
        mtl_model *back = NULL;
        ASSERT_OK(mtl_model_load(&back, NULL, target));
        mtl_model_destroy(back);
        unlink(target);
        rmdir(ro);
    } else {
        printf("  (read-only directory case skipped: running as root; RLIMIT_FSIZE case covers it)\n");
    }
    free(old);
    rmdir(dir);
    mtl_model_destroy(m);
    return 0;
}

TEST(load_errors)
{
    mtl_model *out = NULL;
    ASSERT_STATUS(MTL_ERR_IO, mtl_model_load(&out, NULL, tmp_path("missing.mtl")));
    ASSERT_MSG_HAS("missing.mtl");
    ASSERT(out == NULL);
    ASSERT_STATUS(MTL_ERR_IO, mtl_model_load(&out, NULL, g_dir));
    ASSERT_MSG_HAS("directory");
    const char *empty = tmp_path("empty.mtl");
    FILE *f = fopen(empty, "wb");
    ASSERT(f);
    fclose(f);
    ASSERT_STATUS(MTL_ERR_FORMAT, mtl_model_load(&out, NULL, empty));
    ASSERT_MSG_HAS("empty.mtl");
    const char *text = tmp_path("text.mtl");
    f = fopen(text, "wb");
    fputs("1.5,2.5\n3.5,4.5\n", f);
    fclose(f);
    ASSERT_STATUS(MTL_ERR_FORMAT, mtl_model_load(&out, NULL, text));
    ASSERT_MSG_HAS("magic");
    ASSERT(out == NULL);
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_load(NULL, NULL, text));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_load_buffer(&out, NULL, NULL, 10));
    ASSERT_STATUS(MTL_ERR_FORMAT, mtl_model_load_buffer(&out, NULL, "", 0));
    unlink(empty);
    unlink(text);
    return 0;
}

/* ---- corruption ------------------------------------------------------------------- */

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* A load that succeeded must give a usable model. */
static int exercise(mtl_model *m)
{
    size_t size = 0;
    ASSERT_OK(mtl_model_save_buffer(m, NULL, 0, &size));
    ASSERT(mtl_model_param_count(m) > 0);
    /* predict on inputs of the model's width (it may differ from the
     * original's when a forged count still made sense) */
    int64_t d = mtl_model_input_count(m), ow = mtl_model_output_width(m);
    ASSERT(d >= 1 && ow >= 1);
    float *x = calloc((size_t)(4 * d), sizeof *x), *o = calloc((size_t)(4 * ow), sizeof *o);
    mtl_workspace *ws = NULL;
    ASSERT(x && o);
    for (int64_t i = 0; i < 4 * d; i++) x[i] = (float)(i % 7) - 3.0f;
    ASSERT_OK(mtl_workspace_create(&ws, m, 4));
    mtl_status st = mtl_model_predict(m, ws, 4, x, d, o, ow);
    mtl_workspace_destroy(ws);
    free(x);
    free(o);
    ASSERT_OK(st);
    for (int64_t i = 0; i < mtl_model_metadata_count(m); i++) {
        const char *k, *v;
        ASSERT_OK(mtl_model_metadata_at(m, i, &k, &v));
        ASSERT(strlen(k) <= 65536 && strlen(v) <= 65536);
    }
    return 0;
}

TEST(corruption_every_byte)
{
    mtl_model *m = NULL;
    ASSERT_OK(sample_model(&m, NULL, 1));
    unsigned char *buf = NULL;
    size_t size = 0;
    ASSERT_OK(save_to_malloc(m, &buf, &size));
    mtl_model_destroy(m);
    unsigned char *bad = malloc(size);
    ASSERT(bad);
    int loaded_forged = 0, rejected_forged = 0;
    for (size_t i = 0; i < size; i++) {
        static const unsigned char flips[] = { 0xFF, 0x01, 0x80 };
        for (int k = 0; k < 3; k++) {
            memcpy(bad, buf, size);
            bad[i] ^= flips[k];
            mtl_model *out = NULL;
            /* As stored: the checksum (or magic/version/size check) catches
             * every single-byte change. */
            mtl_status st = mtl_model_load_buffer(&out, NULL, bad, size);
            if (st == MTL_OK) FAILF("byte %zu ^ 0x%02x loaded despite the checksum", i, flips[k]);
            ASSERT(st == MTL_ERR_FORMAT || st == MTL_ERR_VERSION);
            ASSERT(out == NULL);
            ASSERT(strstr(mtl_last_error_message(), "byte "));
            /* With a forged checksum, the parser itself must cope: an
             * error, or a model that works. */
            if (i < size - 4) {
                put32(bad + size - 4, crc32c(bad, size - 4));
                st = mtl_model_load_buffer(&out, NULL, bad, size);
                if (st == MTL_OK) {
                    loaded_forged++;
                    int r = exercise(out);
                    mtl_model_destroy(out);
                    if (r) FAILF("byte %zu: forged file loaded but is unusable", i);
                } else {
                    rejected_forged++;
                    ASSERT(st == MTL_ERR_FORMAT || st == MTL_ERR_VERSION);
                    ASSERT(strstr(mtl_last_error_message(), "byte "));
                }
            }
        }
    }
    printf("  %zu bytes x 3 flips: all rejected as stored; with forged CRC %d loaded, %d rejected\n", size,
           loaded_forged, rejected_forged);
    ASSERT(rejected_forged > 0 && loaded_forged > 0);
    free(bad);
    free(buf);
    return 0;
}

TEST(truncation_every_length)
{
    mtl_model *m = NULL;
    ASSERT_OK(sample_model(&m, NULL, 1));
    unsigned char *buf = NULL;
    size_t size = 0;
    ASSERT_OK(save_to_malloc(m, &buf, &size));
    mtl_model_destroy(m);
    unsigned char *cut = malloc(size);
    for (size_t n = 0; n < size; n++) {
        mtl_model *out = NULL;
        /* exactly n bytes, in a separate allocation so ASan sees overreads */
        unsigned char *exact = malloc(n ? n : 1);
        memcpy(exact, buf, n);
        mtl_status st = mtl_model_load_buffer(&out, NULL, exact, n);
        free(exact);
        if (st != MTL_ERR_FORMAT) FAILF("truncated to %zu of %zu bytes: status %d", n, size, (int)st);
        /* Forge size field and checksum so the section parser sees it. */
        if (n >= 28) {
            memcpy(cut, buf, n);
            put64(cut + 16, n);
            put32(cut + n - 4, crc32c(cut, n - 4));
            exact = malloc(n);
            memcpy(exact, cut, n);
            st = mtl_model_load_buffer(&out, NULL, exact, n);
            free(exact);
            if (st == MTL_OK) {
                int r = exercise(out);
                mtl_model_destroy(out);
                if (r) FAILF("truncated to %zu: loaded but unusable", n);
            } else if (st != MTL_ERR_FORMAT) {
                FAILF("forged truncation to %zu: status %d (%s)", n, (int)st, mtl_last_error_message());
            }
        }
    }
    free(cut);
    free(buf);
    return 0;
}

/* ---- locale ------------------------------------------------------------------------- */

/* Try comma-decimal locales; if none is installed, compile de_DE into a
 * private directory with localedef (offline, from /usr/share/i18n) and
 * point LOCPATH at it. */
static const char *use_comma_locale(void)
{
    static const char *names[] = { "de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "nl_NL.UTF-8", "ru_RU.UTF-8" };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (setlocale(LC_ALL, names[i])) return names[i];
    char cmd[512];
    snprintf(cmd, sizeof cmd, "localedef -i de_DE -f UTF-8 %s/de_DE.UTF-8 >/dev/null 2>&1", g_dir);
    if (system(cmd) != 0) return NULL;
    setenv("LOCPATH", g_dir, 1);
    return setlocale(LC_ALL, "de_DE.UTF-8") ? "de_DE.UTF-8 (compiled with localedef)" : NULL;
}

TEST(locale_independent)
{
    mtl_model *m = NULL;
    ASSERT_OK(sample_model(&m, NULL, 1));
    unsigned char *c_bytes = NULL;
    size_t c_size = 0;
    ASSERT_OK(save_to_malloc(m, &c_bytes, &c_size));
    const char *loc = use_comma_locale();
    if (!loc) {
        printf("  SKIPPED: no comma-decimal locale is installed and localedef could not build one\n");
        free(c_bytes);
        mtl_model_destroy(m);
        return 0;
    }
    char probe[32];
    snprintf(probe, sizeof probe, "%.1f", 1.5);
    int comma = strcmp(probe, "1,5") == 0;
    printf("  locale %s: printf gives \"%s\"\n", loc, probe);
    unsigned char *l_bytes = NULL;
    size_t l_size = 0;
    mtl_status st = save_to_malloc(m, &l_bytes, &l_size);
    const char *path = tmp_path("locale.mtl");
    mtl_status st_path = mtl_model_save(m, path);
    mtl_model *back = NULL;
    mtl_status st_load = mtl_model_load(&back, NULL, path);
    setlocale(LC_ALL, "C");
    unsetenv("LOCPATH");
    ASSERT(comma); /* the locale really is a comma locale */
    ASSERT_OK(st);
    ASSERT_OK(st_path);
    ASSERT_OK(st_load);
    ASSERT_EQ_INT(l_size, c_size);
    ASSERT(memcmp(l_bytes, c_bytes, c_size) == 0);
    int r = models_equal(m, back);
    free(c_bytes);
    free(l_bytes);
    mtl_model_destroy(back);
    mtl_model_destroy(m);
    return r;
}

/* ---- allocation failures -------------------------------------------------------------- */

static long g_fail_at = -1, g_alloc_count;
static void *failing_alloc(void *user, size_t size, size_t alignment)
{
    (void)user;
    if (g_alloc_count++ == g_fail_at) return NULL;
    void *p = NULL;
    return posix_memalign(&p, alignment, size) == 0 ? p : NULL;
}
static void plain_free(void *user, void *p)
{
    (void)user;
    free(p);
}

/* Fail the 1st, 2nd, ... allocation of a load until it succeeds: each
 * failure is MTL_ERR_OUT_OF_MEMORY and leaks nothing (LeakSanitizer). */
TEST(load_allocation_failures)
{
    mtl_model *m = NULL;
    ASSERT_OK(sample_model(&m, NULL, 1));
    unsigned char *buf = NULL;
    size_t size = 0;
    ASSERT_OK(save_to_malloc(m, &buf, &size));
    const char *path = tmp_path("alloc.mtl");
    ASSERT_OK(mtl_model_save(m, path));
    mtl_allocator a = MTL_ALLOCATOR_INIT;
    a.alloc = failing_alloc;
    a.free = plain_free;
    mtl_context *ctx = NULL;
    ASSERT_OK(mtl_context_create(&ctx, &a));
    for (int via_path = 0; via_path < 2; via_path++) {
        long n;
        for (n = 0; n < 10000; n++) {
            g_fail_at = n;
            g_alloc_count = 0;
            mtl_model *out = NULL;
            mtl_status st = via_path ? mtl_model_load(&out, ctx, path) : mtl_model_load_buffer(&out, ctx, buf, size);
            if (st == MTL_OK) {
                ASSERT(g_alloc_count <= n); /* no allocation failed */
                g_fail_at = -1;
                int r = models_equal(m, out);
                mtl_model_destroy(out);
                if (r) return r;
                break;
            }
            if (st != MTL_ERR_OUT_OF_MEMORY)
                FAILF("allocation %ld failing gave %d (%s)", n, (int)st, mtl_last_error_message());
            ASSERT(out == NULL);
        }
        ASSERT(n > 5 && n < 10000);
    }
    g_fail_at = -1;
    mtl_context_destroy(ctx);
    free(buf);
    mtl_model_destroy(m);
    return 0;
}

/* ---- crash safety ------------------------------------------------------------------
 * A child process saves two different models over one path, alternately,
 * forever; it is killed (SIGKILL) at a random moment.  Whatever the moment,
 * the path must hold one of the two files, whole.  (A kill cannot test
 * power loss, which the fsyncs are for; it does test that no reader ever
 * sees a partly written file.)  MTL_CRASH_KILLS sets the number of kills
 * (default 25; the long_tests option registers a 1000-kill run). */

static mtl_status crash_models(mtl_model **a, mtl_model **b)
{
    mtl_status st = sample_model(a, NULL, 1);
    if (st == MTL_OK) st = sample_model(b, NULL, 0);
    if (st == MTL_OK) st = mtl_model_set_metadata(*b, "variant", "B, without scalers, longer metadata .......");
    return st;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int crash_child(const char *path)
{
    mtl_model *a = NULL, *b = NULL;
    if (crash_models(&a, &b) != MTL_OK) return 1;
    if (mtl_model_save(a, path) != MTL_OK) return 1;
    if (write(1, "r", 1) != 1) return 1; /* ready: saving from now on */
    /* One byte after every completed save, so the parent can aim its kill
     * at any phase of the loop however slow the machine is. */
    for (;;) {
        if (mtl_model_save(b, path) != MTL_OK) return 1;
        if (write(1, "b", 1) != 1) return 1;
        if (mtl_model_save(a, path) != MTL_OK) return 1;
        if (write(1, "a", 1) != 1) return 1;
    }
}

TEST(crash_during_save)
{
    mtl_model *a = NULL, *b = NULL;
    ASSERT_OK(crash_models(&a, &b));
    unsigned char *ba = NULL, *bb = NULL;
    size_t na = 0, nb = 0;
    ASSERT_OK(save_to_malloc(a, &ba, &na));
    ASSERT_OK(save_to_malloc(b, &bb, &nb));
    ASSERT(na != nb);
    const char *env = getenv("MTL_CRASH_KILLS");
    int kills = env ? atoi(env) : 25;
    char exe[512];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    ASSERT(len > 0);
    exe[len] = 0;
    const char *path = tmp_path("crash.mtl");
    int seen_a = 0, seen_b = 0;
    uint64_t rs = 99;
    for (int k = 0; k < kills; k++) {
        int fds[2];
        ASSERT(pipe(fds) == 0);
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
        posix_spawn_file_actions_addclose(&fa, fds[0]);
        char *argv[] = { exe, "--crash-child", (char *)path, NULL };
        pid_t pid;
        ASSERT(posix_spawn(&pid, exe, &fa, NULL, argv, environ) == 0);
        posix_spawn_file_actions_destroy(&fa);
        close(fds[1]);
        char c = 0;
        ssize_t got = read(fds[0], &c, 1);
        /* Let 0-3 more saves complete (timing them), then kill at a random
         * moment within about one save: the kill lands in every phase of a
         * save (temp file, write, fsync, rename) whatever the load. */
        int wait_saves = (int)((sample_rand(&rs) + 0.5f) * 4.0f) & 3;
        double t0 = now_seconds(), per_save = 0.002;
        for (int w = 0; w < wait_saves && got == 1; w++) got = read(fds[0], &c, 1);
        if (wait_saves > 0) per_save = (now_seconds() - t0) / wait_saves;
        if (got == 1) usleep((useconds_t)((sample_rand(&rs) + 0.5f) * 1.5 * per_save * 1e6));
        kill(pid, SIGKILL);
        close(fds[0]);
        int status;
        ASSERT(waitpid(pid, &status, 0) == pid);
        ASSERT(got == 1);
        size_t n = 0;
        unsigned char *now = read_all(path, &n);
        ASSERT(now);
        if (n == na && memcmp(now, ba, na) == 0)
            seen_a++;
        else if (n == nb && memcmp(now, bb, nb) == 0)
            seen_b++;
        else
            FAILF("kill %d: the file is neither model (%zu bytes)", k, n);
        free(now);
        mtl_model *back = NULL;
        ASSERT_OK(mtl_model_load(&back, NULL, path));
        mtl_model_destroy(back);
    }
    /* A killed save may leave its temporary file behind (never the
     * target): the host may delete ".mtl-*.tmp" files. */
    int left = count_temp_files(g_dir);
    printf("  %d kills: file was A %d times, B %d times, whole every time; %d temporary files left\n", kills, seen_a,
           seen_b, left);
    ASSERT(seen_a + seen_b == kills);
    if (kills >= 25) ASSERT(seen_a > 0 && seen_b > 0); /* the kills did land mid-run */
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -f '%s'/.mtl-*.tmp", g_dir);
    if (system(cmd) != 0) printf("  (could not remove temporary files)\n");
    free(ba);
    free(bb);
    mtl_model_destroy(a);
    mtl_model_destroy(b);
    return 0;
}

static int run(int argc, char **argv)
{
    static const test_case tests[] = {
        TEST_ENTRY(metadata_api), TEST_ENTRY(round_trip_buffer), TEST_ENTRY(round_trip_minimal),
        TEST_ENTRY(round_trip_path), TEST_ENTRY(save_errors_keep_old_file), TEST_ENTRY(load_errors),
        TEST_ENTRY(corruption_every_byte), TEST_ENTRY(truncation_every_length),
        TEST_ENTRY(locale_independent), TEST_ENTRY(load_allocation_failures), TEST_ENTRY(crash_during_save),
    };
    return test_main(argc, argv, tests, (int)(sizeof tests / sizeof tests[0]));
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--crash-child") == 0) return crash_child(argv[2]);
    snprintf(g_dir, sizeof g_dir, "/tmp/mtl-files-XXXXXX");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    int r = run(argc, argv);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    return r;
}
