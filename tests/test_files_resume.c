/* test_files_resume.c -- checkpoints: training N steps straight and N/2
 * steps, checkpoint, reload in a FRESH PROCESS (this executable run again
 * with --resume-child), N/2 more, must give identical bytes. */
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "files_common.h"

extern char **environ;

static char g_dir[64];

#define BATCH 8
#define HALF 12 /* steps before the checkpoint; the straight run takes 2 * HALF */

/* Options that make every piece of state matter: Adam moments and bias
 * correction, weight decay, clipping, a warm-up schedule, per-task lr,
 * dropout (seeded: the seed differs from the default context's). */
static mtl_status configure(mtl_trainer *t)
{
    mtl_status st;
    if ((st = mtl_trainer_set_i64(t, MTL_OPT_SEED, 1234))) return st;
    if ((st = mtl_trainer_set_i64(t, MTL_OPT_OPTIMIZER, MTL_OPTIMIZER_ADAMW))) return st;
    if ((st = mtl_trainer_set_f64(t, MTL_OPT_LEARNING_RATE, 0.02))) return st;
    if ((st = mtl_trainer_set_f64(t, MTL_OPT_WEIGHT_DECAY, 0.01))) return st;
    if ((st = mtl_trainer_set_f64(t, MTL_OPT_CLIP_NORM, 0.5))) return st;
    if ((st = mtl_trainer_set_i64(t, MTL_OPT_SCHEDULE, MTL_SCHEDULE_COSINE))) return st;
    if ((st = mtl_trainer_set_i64(t, MTL_OPT_WARMUP_STEPS, 5))) return st;
    if ((st = mtl_trainer_set_task_f64(t, 1, MTL_TASK_OPT_LR_MULTIPLIER, 0.5))) return st;
    return MTL_OK;
}

/* Steps [from, to): step s trains on rows 5s, 5s+1, ... (mod the data). */
static mtl_status run_steps(mtl_trainer *t, int from, int to)
{
    float x[SAMPLE_ROWS * SAMPLE_INPUTS], y[SAMPLE_ROWS * SAMPLE_TARGETS];
    float bx[BATCH * SAMPLE_INPUTS], by[BATCH * SAMPLE_TARGETS];
    sample_data(x, y);
    for (int s = from; s < to; s++) {
        for (int r = 0; r < BATCH; r++) {
            int row = (5 * s + r) % SAMPLE_ROWS;
            memcpy(bx + r * SAMPLE_INPUTS, x + row * SAMPLE_INPUTS, sizeof(float) * SAMPLE_INPUTS);
            memcpy(by + r * SAMPLE_TARGETS, y + row * SAMPLE_TARGETS, sizeof(float) * SAMPLE_TARGETS);
        }
        mtl_status st = mtl_trainer_step(t, BATCH, bx, SAMPLE_INPUTS, by, SAMPLE_TARGETS, NULL, 0, NULL, NULL);
        if (st != MTL_OK) return st;
    }
    return MTL_OK;
}

static unsigned char *checkpoint_bytes(const mtl_trainer *t, size_t *size)
{
    size_t n = 0;
    if (mtl_trainer_save_checkpoint_buffer(t, NULL, 0, &n) != MTL_OK) return NULL;
    unsigned char *buf = malloc(n);
    if (buf && mtl_trainer_save_checkpoint_buffer(t, buf, n, size) != MTL_OK) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* The child: load with the DEFAULT context (seed 42), train on, save. */
static int resume_child(const char *in, const char *out, int from, int to)
{
    mtl_trainer *t = NULL;
    mtl_model *m = NULL;
    mtl_status st = mtl_trainer_load_checkpoint(&t, &m, NULL, in);
    if (st == MTL_OK) st = run_steps(t, from, to);
    if (st == MTL_OK) st = mtl_trainer_save_checkpoint(t, out);
    if (st != MTL_OK) fprintf(stderr, "child: %s: %s\n", mtl_status_string(st), mtl_last_error_message());
    mtl_trainer_destroy(t);
    mtl_model_destroy(m);
    return st == MTL_OK ? 0 : 1;
}

static int spawn_child(const char *in, const char *out, int from, int to)
{
    char a_from[16], a_to[16];
    snprintf(a_from, sizeof a_from, "%d", from);
    snprintf(a_to, sizeof a_to, "%d", to);
    char *argv[] = { "/proc/self/exe", "--resume-child", (char *)in, (char *)out, a_from, a_to, NULL };
    char exe[512];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return -1;
    exe[n] = 0;
    argv[0] = exe;
    pid_t pid;
    if (posix_spawn(&pid, exe, NULL, NULL, argv, environ) != 0) return -1;
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(resume_in_fresh_process)
{
    /* straight */
    mtl_model *ma = NULL, *mb = NULL;
    mtl_trainer *ta = NULL, *tb = NULL;
    ASSERT_OK(sample_model(&ma, NULL, 1));
    ASSERT_OK(mtl_trainer_create(&ta, ma, BATCH));
    ASSERT_OK(configure(ta));
    ASSERT_OK(run_steps(ta, 0, 2 * HALF));
    size_t straight_size = 0;
    unsigned char *straight = checkpoint_bytes(ta, &straight_size);
    ASSERT(straight);

    /* half, checkpoint, child process resumes */
    ASSERT_OK(sample_model(&mb, NULL, 1));
    ASSERT_OK(mtl_trainer_create(&tb, mb, BATCH));
    ASSERT_OK(configure(tb));
    ASSERT_OK(run_steps(tb, 0, HALF));
    char in[128], out[128];
    snprintf(in, sizeof in, "%s/half.ckpt", g_dir);
    snprintf(out, sizeof out, "%s/resumed.ckpt", g_dir);
    ASSERT_OK(mtl_trainer_save_checkpoint(tb, in));
    ASSERT_EQ_INT(spawn_child(in, out, HALF, 2 * HALF), 0);
    size_t resumed_size = 0;
    unsigned char *resumed = read_all(out, &resumed_size);
    ASSERT(resumed);
    ASSERT_EQ_INT(resumed_size, straight_size);
    if (memcmp(resumed, straight, straight_size) != 0) {
        size_t i = 0;
        while (resumed[i] == straight[i]) i++;
        FAILF("resumed checkpoint differs from the straight run first at byte %zu of %zu", i, straight_size);
    }
    /* The comparison is sensitive: continuing the half-trained model with
     * a FRESH trainer (no moments, counters, seed) ends elsewhere. */
    mtl_trainer *fresh = NULL;
    ASSERT_OK(mtl_trainer_create(&fresh, mb, BATCH));
    ASSERT_OK(mtl_trainer_set_i64(fresh, MTL_OPT_OPTIMIZER, MTL_OPTIMIZER_ADAMW));
    ASSERT_OK(mtl_trainer_set_f64(fresh, MTL_OPT_LEARNING_RATE, 0.02));
    ASSERT_OK(run_steps(fresh, HALF, 2 * HALF));
    int64_t n = mtl_model_param_count(ma);
    float *pa = malloc(sizeof(float) * (size_t)n), *pb = malloc(sizeof(float) * (size_t)n);
    ASSERT_OK(mtl_model_get_params(ma, pa, n));
    ASSERT_OK(mtl_model_get_params(mb, pb, n));
    ASSERT(memcmp(pa, pb, sizeof(float) * (size_t)n) != 0);
    free(pa);
    free(pb);
    mtl_trainer_destroy(fresh);
    free(resumed);
    free(straight);
    mtl_trainer_destroy(ta);
    mtl_trainer_destroy(tb);
    mtl_model_destroy(ma);
    mtl_model_destroy(mb);
    return 0;
}

/* A loaded checkpoint reports what was saved and saves the same bytes. */
TEST(checkpoint_round_trip)
{
    mtl_model *m = NULL, *m2 = NULL;
    mtl_trainer *t = NULL, *t2 = NULL;
    ASSERT_OK(sample_model(&m, NULL, 1));
    ASSERT_OK(mtl_trainer_create(&t, m, BATCH));
    ASSERT_OK(configure(t));
    ASSERT_OK(mtl_trainer_set_i64(t, MTL_OPT_EPOCHS, 17));
    ASSERT_OK(mtl_trainer_set_f64(t, MTL_OPT_EARLY_STOP_MIN_DELTA, 0.125));
    ASSERT_OK(run_steps(t, 0, 3));
    size_t size = 0, size2 = 0;
    unsigned char *bytes = checkpoint_bytes(t, &size);
    ASSERT(bytes);
    ASSERT_OK(mtl_trainer_load_checkpoint_buffer(&t2, &m2, NULL, bytes, size));
    ASSERT_EQ_INT(mtl_trainer_step_count(t2), 3);
    ASSERT(mtl_trainer_learning_rate(t2) == mtl_trainer_learning_rate(t));
    int64_t v;
    double d;
    ASSERT_OK(mtl_trainer_get_i64(t2, MTL_OPT_SEED, &v));
    ASSERT_EQ_INT(v, 1234);
    ASSERT_OK(mtl_trainer_get_i64(t2, MTL_OPT_EPOCHS, &v));
    ASSERT_EQ_INT(v, 17);
    ASSERT_OK(mtl_trainer_get_i64(t2, MTL_OPT_SCHEDULE, &v));
    ASSERT_EQ_INT(v, MTL_SCHEDULE_COSINE);
    ASSERT_OK(mtl_trainer_get_f64(t2, MTL_OPT_EARLY_STOP_MIN_DELTA, &d));
    ASSERT(d == 0.125);
    ASSERT_OK(mtl_trainer_get_task_f64(t2, 1, MTL_TASK_OPT_LR_MULTIPLIER, &d));
    ASSERT(d == 0.5);
    unsigned char *again = checkpoint_bytes(t2, &size2);
    ASSERT(again && size2 == size && memcmp(again, bytes, size) == 0);
    /* a checkpoint is also a model file; a model file is not a checkpoint */
    mtl_model *only = NULL;
    ASSERT_OK(mtl_model_load_buffer(&only, NULL, bytes, size));
    ASSERT_EQ_INT(mtl_model_param_count(only), mtl_model_param_count(m));
    unsigned char *model_bytes = NULL;
    size_t model_size = 0;
    ASSERT_OK(save_to_malloc(m, &model_bytes, &model_size));
    mtl_trainer *t3 = NULL;
    mtl_model *m3 = NULL;
    ASSERT_STATUS(MTL_ERR_FORMAT, mtl_trainer_load_checkpoint_buffer(&t3, &m3, NULL, model_bytes, model_size));
    ASSERT_MSG_HAS("not a checkpoint");
    ASSERT(t3 == NULL && m3 == NULL);
    /* every truncation fails cleanly, and no handle is returned */
    for (size_t n = 0; n < size; n += 1 + n / 64) {
        ASSERT(mtl_trainer_load_checkpoint_buffer(&t3, &m3, NULL, bytes, n) == MTL_ERR_FORMAT);
        ASSERT(t3 == NULL && m3 == NULL);
    }
    free(model_bytes);
    mtl_model_destroy(only);
    free(again);
    free(bytes);
    mtl_trainer_destroy(t2); /* trainer before its model */
    mtl_model_destroy(m2);
    mtl_trainer_destroy(t);
    mtl_model_destroy(m);
    return 0;
}

/* ---- resume through mtl_trainer_fit ---------------------------------------
 * fit trains until MTL_OPT_EPOCHS epochs are complete, so the resumed run
 * simply calls fit again.  The checkpoint is written from the progress
 * callback at epoch EPOCHS/2, where a host would write it (fit restores
 * the best weights when it returns, so a checkpoint written after an
 * interrupted fit would hold those instead of the current ones). */

#define FIT_EPOCHS 8

typedef struct fit_config {
    const char *name;
    mtl_status (*apply)(mtl_trainer *t);
} fit_config;

static mtl_status cfg_adam_cosine_early(mtl_trainer *t)
{
    mtl_status st;
    if ((st = mtl_trainer_set_i64(t, MTL_OPT_SEED, 77))) return st;
    if ((st = mtl_trainer_set_i64(t, MTL_OPT_OPTIMIZER, MTL_OPTIMIZER_ADAM))) return st;
    if ((st = mtl_trainer_set_f64(t, MTL_OPT_LEARNING_RATE, 0.05))) return st;
    if ((st = mtl_trainer_set_i64(t, MTL_OPT_SCHEDULE, MTL_SCHEDULE_COSINE))) return st;
    if ((st = mtl_trainer_set_i64(t, MTL_OPT_WARMUP_STEPS, 4))) return st;
    if ((st = mtl_trainer_set_f64(t, MTL_OPT_MIN_LEARNING_RATE, 0.001))) return st;
    if ((st = mtl_trainer_set_i64(t, MTL_OPT_BATCH_SIZE, 5))) return st; /* 24 rows: a partial batch */
    if ((st = mtl_trainer_set_i64(t, MTL_OPT_EARLY_STOP_PATIENCE, 3))) return st;
    return mtl_trainer_set_i64(t, MTL_OPT_EPOCHS, FIT_EPOCHS);
}

static mtl_status cfg_sgd_plateau(mtl_trainer *t)
{
    mtl_status st;
    if ((st = mtl_trainer_set_i64(t, MTL_OPT_OPTIMIZER, MTL_OPTIMIZER_SGD))) return st;
    if ((st = mtl_trainer_set_f64(t, MTL_OPT_LEARNING_RATE, 0.1))) return st;
    if ((st = mtl_trainer_set_f64(t, MTL_OPT_MOMENTUM, 0.9))) return st;
    if ((st = mtl_trainer_set_i64(t, MTL_OPT_NESTEROV, 1))) return st;
    if ((st = mtl_trainer_set_i64(t, MTL_OPT_SCHEDULE, MTL_SCHEDULE_PLATEAU))) return st;
    if ((st = mtl_trainer_set_i64(t, MTL_OPT_PLATEAU_PATIENCE, 1))) return st;
    if ((st = mtl_trainer_set_f64(t, MTL_OPT_SCHEDULE_GAMMA, 0.5))) return st;
    if ((st = mtl_trainer_set_i64(t, MTL_OPT_BATCH_SIZE, 7))) return st;
    return mtl_trainer_set_i64(t, MTL_OPT_EPOCHS, FIT_EPOCHS);
}

static mtl_status cfg_adamw_dwa(mtl_trainer *t)
{
    mtl_status st;
    if ((st = mtl_trainer_set_i64(t, MTL_OPT_WEIGHTING, MTL_WEIGHTING_DWA))) return st;
    if ((st = mtl_trainer_set_f64(t, MTL_OPT_LEARNING_RATE, 0.02))) return st;
    if ((st = mtl_trainer_set_i64(t, MTL_OPT_BATCH_SIZE, 6))) return st;
    return mtl_trainer_set_i64(t, MTL_OPT_EPOCHS, FIT_EPOCHS);
}

static const fit_config g_fit_configs[] = {
    { "adam_cosine_early", cfg_adam_cosine_early },
    { "sgd_plateau", cfg_sgd_plateau },
    { "adamw_dwa", cfg_adamw_dwa },
};

/* Training and validation sets: two views of the sample data. */
static mtl_status fit_data(mtl_dataset **all, mtl_dataset **train, mtl_dataset **val)
{
    float x[SAMPLE_ROWS * SAMPLE_INPUTS], y[SAMPLE_ROWS * SAMPLE_TARGETS];
    sample_data(x, y);
    int64_t tr[SAMPLE_ROWS], va[SAMPLE_ROWS];
    int ntr = 0, nva = 0;
    for (int r = 0; r < SAMPLE_ROWS; r++) {
        if (r % 4 == 1) va[nva++] = r;
        tr[ntr++] = r; /* validation rows also train: a small data set */
    }
    mtl_status st = mtl_dataset_create(all, NULL, SAMPLE_ROWS, SAMPLE_INPUTS, SAMPLE_TARGETS, x, SAMPLE_INPUTS, y,
                                       SAMPLE_TARGETS, NULL, 0, NULL, MTL_DATASET_COPY);
    if (st == MTL_OK) st = mtl_dataset_view(train, *all, ntr, tr);
    if (st == MTL_OK) st = mtl_dataset_view(val, *all, nva, va);
    return st;
}

typedef struct ckpt_at {
    int64_t epoch;
    const char *path;
    mtl_status status;
} ckpt_at;

static int save_at_epoch(void *user, const mtl_trainer *t, int64_t epoch, int64_t step)
{
    ckpt_at *c = user;
    if (step == -1 && epoch == c->epoch) c->status = mtl_trainer_save_checkpoint(t, c->path);
    return 0;
}

/* The child: load, fit on to MTL_OPT_EPOCHS, save. */
static int fit_child(const char *in, const char *out)
{
    mtl_trainer *t = NULL;
    mtl_model *m = NULL;
    mtl_dataset *all = NULL, *train = NULL, *val = NULL;
    mtl_status st = mtl_trainer_load_checkpoint(&t, &m, NULL, in);
    if (st == MTL_OK) st = fit_data(&all, &train, &val);
    if (st == MTL_OK) st = mtl_trainer_fit(t, train, val, NULL, NULL);
    if (st == MTL_OK) st = mtl_trainer_save_checkpoint(t, out);
    if (st != MTL_OK) fprintf(stderr, "fit child: %s: %s\n", mtl_status_string(st), mtl_last_error_message());
    mtl_dataset_destroy(val);
    mtl_dataset_destroy(train);
    mtl_dataset_destroy(all);
    mtl_trainer_destroy(t);
    mtl_model_destroy(m);
    return st == MTL_OK ? 0 : 1;
}

static int spawn_fit_child(const char *in, const char *out)
{
    char exe[512];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return -1;
    exe[n] = 0;
    char *argv[] = { exe, "--fit-child", (char *)in, (char *)out, NULL };
    pid_t pid;
    if (posix_spawn(&pid, exe, NULL, NULL, argv, environ) != 0) return -1;
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Zero the wall-clock field (PROGRESS offset 56) and the checksum, the
 * only bytes two runs of different duration may differ in. */
static void mask_elapsed(unsigned char *b, size_t n)
{
    size_t pos = 24;
    while (pos + 12 <= n - 4) {
        uint32_t id = (uint32_t)b[pos] | (uint32_t)b[pos + 1] << 8 | (uint32_t)b[pos + 2] << 16 | (uint32_t)b[pos + 3] << 24;
        uint64_t len = 0;
        for (int k = 7; k >= 0; k--) len = len << 8 | b[pos + 4 + k];
        if (id == 18) memset(b + pos + 12 + 56, 0, 8);
        pos += 12 + (size_t)len;
    }
    memset(b + n - 4, 0, 4);
}

TEST(resume_fit_in_fresh_process)
{
    for (size_t c = 0; c < sizeof g_fit_configs / sizeof g_fit_configs[0]; c++) {
        const fit_config *cfg = &g_fit_configs[c];
        mtl_model *m = NULL;
        mtl_trainer *t = NULL;
        mtl_dataset *all = NULL, *train = NULL, *val = NULL;
        char half[128], resumed[128];
        snprintf(half, sizeof half, "%s/%s.half", g_dir, cfg->name);
        snprintf(resumed, sizeof resumed, "%s/%s.resumed", g_dir, cfg->name);
        ASSERT_OK(sample_model(&m, NULL, 1));
        ASSERT_OK(mtl_trainer_create(&t, m, 8));
        ASSERT_OK(cfg->apply(t));
        ASSERT_OK(fit_data(&all, &train, &val));
        ckpt_at at = { FIT_EPOCHS / 2, half, MTL_ERR_INTERNAL };
        ASSERT_OK(mtl_trainer_fit(t, train, val, save_at_epoch, &at));
        ASSERT_OK(at.status);
        size_t straight_size = 0, resumed_size = 0;
        unsigned char *straight = checkpoint_bytes(t, &straight_size);
        ASSERT(straight);
        if (spawn_fit_child(half, resumed) != 0) FAILF("%s: the child process failed", cfg->name);
        unsigned char *back = read_all(resumed, &resumed_size);
        ASSERT(back);
        ASSERT_EQ_INT(resumed_size, straight_size);
        mask_elapsed(straight, straight_size);
        mask_elapsed(back, resumed_size);
        if (memcmp(back, straight, straight_size) != 0) {
            size_t i = 0;
            while (back[i] == straight[i]) i++;
            FAILF("%s: resumed run differs from the straight run first at byte %zu of %zu", cfg->name, i,
                  straight_size);
        }
        printf("  %s: %d epochs straight == %d + checkpoint + %d in a new process (%lld steps)\n", cfg->name,
               FIT_EPOCHS, FIT_EPOCHS / 2, FIT_EPOCHS - FIT_EPOCHS / 2, (long long)mtl_trainer_step_count(t));
        free(back);
        free(straight);
        mtl_dataset_destroy(val);
        mtl_dataset_destroy(train);
        mtl_dataset_destroy(all);
        mtl_trainer_destroy(t);
        mtl_model_destroy(m);
    }
    return 0;
}

/* Flip every byte of a checkpoint, with the checksum forged so the
 * trainer sections' own checks are what stands: each load fails cleanly
 * or gives a trainer that can step and save (under ASan: no crash, no
 * leak). */
TEST(checkpoint_corruption)
{
    mtl_model *m = NULL;
    mtl_trainer *t = NULL;
    ASSERT_OK(sample_model(&m, NULL, 1));
    ASSERT_OK(mtl_trainer_create(&t, m, BATCH));
    ASSERT_OK(configure(t));
    ASSERT_OK(run_steps(t, 0, 2));
    size_t size = 0;
    unsigned char *bytes = checkpoint_bytes(t, &size), *bad = malloc(size);
    ASSERT(bytes && bad);
    int loaded = 0, rejected = 0;
    for (size_t i = 0; i + 4 < size; i++) {
        memcpy(bad, bytes, size);
        bad[i] ^= (unsigned char)(i % 3 == 0 ? 0xFF : i % 3 == 1 ? 0x01 : 0x40);
        uint32_t c = crc32c(bad, size - 4);
        for (int k = 0; k < 4; k++) bad[size - 4 + k] = (unsigned char)(c >> (8 * k));
        mtl_trainer *t2 = NULL;
        mtl_model *m2 = NULL;
        mtl_status st = mtl_trainer_load_checkpoint_buffer(&t2, &m2, NULL, bad, size);
        if (st == MTL_OK) {
            loaded++;
            (void)run_steps(t2, 2, 3); /* any status; it must not crash */
            size_t n2 = 0;
            /* (a forged learning rate can overflow the weights: then the
             * save refuses, rather than write a file no one can load) */
            mtl_status sv = mtl_trainer_save_checkpoint_buffer(t2, NULL, 0, &n2);
            ASSERT(sv == MTL_OK || sv == MTL_ERR_NON_FINITE);
            mtl_trainer_destroy(t2);
            mtl_model_destroy(m2);
        } else {
            rejected++;
            ASSERT(st == MTL_ERR_FORMAT || st == MTL_ERR_VERSION);
            ASSERT(t2 == NULL && m2 == NULL);
            if (!strstr(mtl_last_error_message(), "byte "))
                FAILF("byte %zu: message without an offset: %s", i, mtl_last_error_message());
        }
    }
    printf("  %zu bytes, forged checksum: %d loaded, %d rejected\n", size, loaded, rejected);
    free(bad);
    free(bytes);
    mtl_trainer_destroy(t);
    mtl_model_destroy(m);
    return 0;
}

static int run(int argc, char **argv)
{
    static const test_case tests[] = { TEST_ENTRY(resume_in_fresh_process), TEST_ENTRY(resume_fit_in_fresh_process),
                                       TEST_ENTRY(checkpoint_round_trip), TEST_ENTRY(checkpoint_corruption) };
    return test_main(argc, argv, tests, (int)(sizeof tests / sizeof tests[0]));
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--fit-child") == 0) return fit_child(argv[2], argv[3]);
    if (argc == 6 && strcmp(argv[1], "--resume-child") == 0)
        return resume_child(argv[2], argv[3], atoi(argv[4]), atoi(argv[5]));
    snprintf(g_dir, sizeof g_dir, "/tmp/mtl-resume-XXXXXX");
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
