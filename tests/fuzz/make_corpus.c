/* make_corpus.c -- writes the hand-made part of the fuzz seed corpora.
 *
 * Run by hand when the file format or the targets change (the output is
 * committed; tests/fuzz/run_fuzz.sh only reads it):
 *
 *     ninja -C build tests/fuzz/make_fuzz_corpus
 *     build/tests/fuzz/make_fuzz_corpus tests/fuzz/corpus
 *     cp tests/golden/model_v1_0.mtl tests/golden/checkpoint_v1_0.mtlc tests/fuzz/corpus/model_file/ ...
 *
 * (run_fuzz.sh -s does both.)  It writes small valid files that between
 * them use every section, activation, task type, optimiser, schedule and
 * loss-weighting method, plus framing edge cases (unknown sections, a
 * newer minor version, a future major version, an empty file) and CSV
 * edge cases (quoting, CRLF, BOM, missing cells, exponents, gzip). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mtl.h"
#include "../files_common.h"

#define CHECK(x)                                                                              \
    do {                                                                                      \
        mtl_status s_ = (x);                                                                  \
        if (s_ != MTL_OK) {                                                                   \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, mtl_status_string(s_),      \
                    mtl_last_error_message());                                                \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)

static const char *g_out;

static void write_bytes(const char *target, const char *name, const void *data, size_t size)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", g_out, target);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        perror(path);
        exit(1);
    }
    snprintf(path, sizeof path, "%s/%s/%s", g_out, target, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void fix_frame(unsigned char *b, size_t n)
{
    put64(b + 16, n);
    put32(b + n - 4, crc32c(b, n - 4));
}

static void save_model(const mtl_model *m, const char *name)
{
    unsigned char *b = NULL;
    size_t n = 0;
    CHECK(save_to_malloc(m, &b, &n));
    write_bytes("model_file", name, b, n);
    write_bytes("load_buffer", name, b, n);
    free(b);
}

static void save_checkpoint(const mtl_trainer *t, const char *name)
{
    size_t n = 0;
    CHECK(mtl_trainer_save_checkpoint_buffer(t, NULL, 0, &n));
    unsigned char *b = malloc(n);
    CHECK(mtl_trainer_save_checkpoint_buffer(t, b, n, &n));
    write_bytes("checkpoint", name, b, n);
    free(b);
}

/* ---- models -------------------------------------------------------------- */

static mtl_model *tiny_model(int64_t inputs, mtl_activation act, unsigned flags)
{
    mtl_model *m = NULL;
    CHECK(mtl_model_create(&m, NULL, inputs));
    CHECK(mtl_model_add_trunk_layer(m, 3, act, 0.0f, flags));
    CHECK(mtl_model_add_task(m, "a", MTL_TASK_REGRESSION, 1, NULL));
    CHECK(mtl_model_add_task(m, "b", MTL_TASK_BINARY, 2, NULL));
    CHECK(mtl_model_add_head_layer(m, 1, 2, act, 0.25f, 0));
    CHECK(mtl_model_finalize(m));
    return m;
}

static void models(void)
{
    mtl_model *m = NULL;
    CHECK(mtl_model_create(&m, NULL, 1)); /* the smallest model: no trunk, one output */
    CHECK(mtl_model_add_task(m, "y", MTL_TASK_REGRESSION, 1, NULL));
    CHECK(mtl_model_finalize(m));
    save_model(m, "minimal.mtl");
    mtl_model_destroy(m);

    static const char *act_names[] = { "identity", "relu", "leaky_relu", "tanh", "sigmoid", "gelu", "softplus" };
    for (int a = 0; a <= MTL_ACT_SOFTPLUS; a++) {
        char name[64];
        snprintf(name, sizeof name, "act_%s%s.mtl", act_names[a], a % 2 ? "_norm" : "");
        m = tiny_model(2, (mtl_activation)a, a % 2 ? MTL_LAYER_NORM : 0);
        save_model(m, name);
        mtl_model_destroy(m);
    }

    /* multiclass without trunk, texts, names, metadata, scalers */
    CHECK(mtl_model_create(&m, NULL, 2));
    int64_t t;
    CHECK(mtl_model_add_task(m, "k", MTL_TASK_MULTICLASS, 4, &t));
    CHECK(mtl_model_add_task(m, "E", MTL_TASK_REGRESSION, 1, NULL));
    CHECK(mtl_model_set_task_i64(m, 1, MTL_TASK_OPT_LOG_TARGET, 1));
    CHECK(mtl_model_set_task_i64(m, 1, MTL_TASK_OPT_LOSS, MTL_LOSS_MAE));
    CHECK(mtl_model_finalize(m));
    CHECK(mtl_model_set_task_text(m, t, "class", "\xe2\x88\x86G\xe2\x80\xa1 channel"));
    CHECK(mtl_model_set_feature_name(m, 1, "p"));
    CHECK(mtl_model_set_metadata(m, "k", "v"));
    float x[8] = { 1, 2, 3, 5, 8, 13, 21, 34 }, y[8] = { 0, 1, 3, 2, 1, 2, 2, 4 };
    mtl_dataset *ds = NULL;
    CHECK(mtl_dataset_create(&ds, NULL, 4, 2, 2, x, 2, y, 2, NULL, 0, NULL, MTL_DATASET_COPY));
    CHECK(mtl_model_fit_scalers(m, ds));
    mtl_dataset_destroy(ds);
    save_model(m, "multiclass_scalers_texts.mtl");

    /* framing edge cases, from this model's bytes */
    unsigned char *b = NULL;
    size_t n = 0;
    CHECK(save_to_malloc(m, &b, &n));
    mtl_model_destroy(m);
    unsigned char *big = malloc(n + 64);
    /* an unknown section (id 31, then id 1000) before the trailer */
    for (int k = 0; k < 2; k++) {
        memcpy(big, b, n - 4);
        put32(big + n - 4, k ? 1000u : 31u);
        put64(big + n, 5);
        memcpy(big + n + 8, "extra", 5);
        fix_frame(big, n + 17);
        write_bytes("load_buffer", k ? "unknown_section_1000.mtl" : "unknown_section_31.mtl", big, n + 17);
        write_bytes("model_file", k ? "unknown_section_1000.mtl" : "unknown_section_31.mtl", big, n + 17);
    }
    memcpy(big, b, n); /* a newer minor version: trailing fields are allowed */
    put32(big + 8, 1u << 16 | 7u);
    fix_frame(big, n);
    write_bytes("load_buffer", "minor_1_7.mtl", big, n);
    write_bytes("model_file", "minor_1_7.mtl", big, n);
    put32(big + 8, 2u << 16); /* a future major version */
    fix_frame(big, n);
    write_bytes("load_buffer", "major_2.mtl", big, n);
    memcpy(big, b, n); /* a stale checksum */
    big[n - 1] ^= 1;
    write_bytes("load_buffer", "bad_crc.mtl", big, n);
    write_bytes("load_buffer", "header_only.mtl", b, 24);
    write_bytes("load_buffer", "empty", b, 0);
    free(big);
    free(b);
}

/* ---- checkpoints ----------------------------------------------------------- */

static void train_and_save(mtl_trainer *t, const char *name, int fit)
{
    float x[SAMPLE_ROWS * SAMPLE_INPUTS], y[SAMPLE_ROWS * SAMPLE_TARGETS];
    sample_data(x, y);
    if (fit) {
        mtl_dataset *all = NULL, *val = NULL;
        int64_t rows[6] = { 1, 5, 9, 13, 17, 21 };
        CHECK(mtl_dataset_create(&all, NULL, SAMPLE_ROWS, SAMPLE_INPUTS, SAMPLE_TARGETS, x, SAMPLE_INPUTS, y,
                                 SAMPLE_TARGETS, NULL, 0, NULL, MTL_DATASET_COPY));
        CHECK(mtl_dataset_view(&val, all, 6, rows));
        CHECK(mtl_trainer_set_i64(t, MTL_OPT_EPOCHS, 3));
        CHECK(mtl_trainer_set_i64(t, MTL_OPT_EARLY_STOP_PATIENCE, 2));
        CHECK(mtl_trainer_fit(t, all, val, NULL, NULL));
        mtl_dataset_destroy(val);
        mtl_dataset_destroy(all);
    } else {
        for (int s = 0; s < 3; s++)
            CHECK(mtl_trainer_step(t, 8, x + 8 * s * SAMPLE_INPUTS, SAMPLE_INPUTS, y + 8 * s * SAMPLE_TARGETS,
                                   SAMPLE_TARGETS, NULL, 0, NULL, NULL));
    }
    save_checkpoint(t, name);
}

static void checkpoints(void)
{
    static const char *wnames[] = { "", "fixed", "uncertainty", "dwa", "gls", "rlw", "gradnorm",
                                    "pcgrad", "mgda", "cagrad", "imtl_g", "upgrad" };
    for (int w = MTL_WEIGHTING_FIXED; w <= MTL_WEIGHTING_UPGRAD; w++) {
        mtl_model *m = NULL;
        mtl_trainer *t = NULL;
        CHECK(sample_model(&m, NULL, 1));
        CHECK(mtl_trainer_create(&t, m, 8));
        CHECK(mtl_trainer_set_i64(t, MTL_OPT_WEIGHTING, w));
        if (w == MTL_WEIGHTING_PCGRAD) CHECK(mtl_trainer_set_i64(t, MTL_OPT_DIAGNOSTICS, 1));
        if (w == MTL_WEIGHTING_MGDA) CHECK(mtl_trainer_set_i64(t, MTL_OPT_AFFINITY, 1));
        char name[64];
        snprintf(name, sizeof name, "weighting_%s.mtlc", wnames[w]);
        train_and_save(t, name, w == MTL_WEIGHTING_DWA || w == MTL_WEIGHTING_GRADNORM);
        mtl_trainer_destroy(t);
        mtl_model_destroy(m);
    }
    /* optimisers and schedules */
    for (int k = 0; k < 3; k++) {
        mtl_model *m = NULL;
        CHECK(sample_model(&m, NULL, 1));
        mtl_trainer *t = NULL;
        CHECK(mtl_trainer_create(&t, m, 8));
        if (k == 0) {
            CHECK(mtl_trainer_set_i64(t, MTL_OPT_OPTIMIZER, MTL_OPTIMIZER_SGD));
            CHECK(mtl_trainer_set_f64(t, MTL_OPT_MOMENTUM, 0.9));
            CHECK(mtl_trainer_set_i64(t, MTL_OPT_NESTEROV, 1));
            CHECK(mtl_trainer_set_i64(t, MTL_OPT_SCHEDULE, MTL_SCHEDULE_PLATEAU));
            CHECK(mtl_trainer_set_i64(t, MTL_OPT_PLATEAU_PATIENCE, 1));
        } else if (k == 1) {
            CHECK(mtl_trainer_set_i64(t, MTL_OPT_OPTIMIZER, MTL_OPTIMIZER_SGD));
            CHECK(mtl_trainer_set_i64(t, MTL_OPT_SCHEDULE, MTL_SCHEDULE_STEP));
            CHECK(mtl_trainer_set_i64(t, MTL_OPT_SCHEDULE_STEP_EPOCHS, 1));
            CHECK(mtl_trainer_set_f64(t, MTL_OPT_CLIP_NORM, 0.5));
        } else {
            CHECK(mtl_trainer_set_i64(t, MTL_OPT_OPTIMIZER, MTL_OPTIMIZER_ADAMW));
            CHECK(mtl_trainer_set_f64(t, MTL_OPT_WEIGHT_DECAY, 0.01));
            CHECK(mtl_trainer_set_i64(t, MTL_OPT_SCHEDULE, MTL_SCHEDULE_COSINE));
            CHECK(mtl_trainer_set_i64(t, MTL_OPT_WARMUP_STEPS, 2));
        }
        static const char *names[] = { "sgd_nesterov_plateau_fit.mtlc", "sgd_step_clip_fit.mtlc",
                                       "adamw_cosine_fit.mtlc" };
        train_and_save(t, names[k], 1);
        mtl_trainer_destroy(t);
        mtl_model_destroy(m);
    }
    /* a fresh trainer on the smallest model (no steps taken) */
    mtl_model *m = NULL;
    mtl_trainer *t = NULL;
    CHECK(mtl_model_create(&m, NULL, 1));
    CHECK(mtl_model_add_task(m, "y", MTL_TASK_REGRESSION, 1, NULL));
    CHECK(mtl_model_finalize(m));
    CHECK(mtl_trainer_create(&t, m, 1));
    save_checkpoint(t, "minimal_fresh.mtlc");
    mtl_trainer_destroy(t);
    mtl_model_destroy(m);
}

/* ---- CSV ------------------------------------------------------------------- */

static void csv_text(const char *name, const char *text)
{
    write_bytes("csv", name, text, strlen(text));
}

static void csvs(void)
{
    csv_text("simple.csv", "a,b,y\n1,2,3\n4,5,6\n");
    csv_text("one_column.csv", "x\n1\n2\n-3.5\n");
    csv_text("crlf_bom.csv", "\xef\xbb\xbfT / K,p,\"G\xe2\x80\xa1\"\r\n300,1.5e0,12.25\r\n350.5,2,\r\n");
    csv_text("quoted.csv", "\"a,1\",\"b\"\"q\",y\n\"1\",\" 2 \",\"3\"\n\"4\n\",5,6\n");
    csv_text("missing_nan.csv", "a,b,y,z\n1,,NaN,\n2,3,nan,4\n,5,6,7\n8,9,,\n");
    csv_text("numbers.csv", "a,b,c\n1e-45,3.4028235e38,-0.0\n.5,5.,+7\n1e-50,123456789012345678901234567890,0.1\n");
    csv_text("blank_lines.csv", "a,y\n\n1,2\n\n3,4\n");
    csv_text("no_newline.csv", "a,y\n1,2");
    csv_text("not_numbers.csv", "a,y\n1,x\ninf,2\n0x10,3\n");
    csv_text("ragged.csv", "a,b,y\n1,2\n1,2,3,4\n");
    csv_text("header_only.csv", "a,b,y\n");
    csv_text("number_first.csv", "2.5e-3,y\n1,2\n");
    csv_text("ws.csv", " a , b ,y\n 1 ,\t2\t, 3 \n");
    /* gzip: two members, as gzip -c a b > ab.gz would write */
    static const unsigned char gz[] = {
        0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x4b, 0xd4, 0xa9, 0xe4, 0x32, 0xd4,
        0x31, 0xe2, 0x02, 0x00, 0x23, 0xf5, 0x86, 0x63, 0x08, 0x00, 0x00, 0x00, 0x1f, 0x8b, 0x08, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x33, 0xd6, 0x31, 0xe1, 0x02, 0x00, 0x3e, 0x2d, 0x72, 0xa9,
        0x04, 0x00, 0x00, 0x00,
    };
    write_bytes("csv", "two_members.csv.gz", gz, sizeof gz);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTPUT_DIR (normally tests/fuzz/corpus)\n", argv[0]);
        return 2;
    }
    g_out = argv[1];
    if (mkdir(g_out, 0755) != 0 && errno != EEXIST) {
        perror(g_out);
        return 1;
    }
    models();
    checkpoints();
    csvs();
    printf("wrote the seed corpora under %s\n", g_out);
    return 0;
}
