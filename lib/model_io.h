/*
 * model_io.h -- the model sections of a file, shared by model files
 * (model_io.c) and checkpoints (checkpoint_io.c).
 */
#ifndef MTL_MODEL_IO_H
#define MTL_MODEL_IO_H

#include "file_format.h"

/* Write ARCH, PARAMS and, when set, SCALERS, FEATURES and METADATA. */
void mtli_model_write_sections(mtli_writer *w, const mtl_model *m);
/* Build a finalized model from the model sections of a verified file:
 * through the definition API, then parameters, scalers and text. */
mtl_status mtli_model_read_sections(mtl_model **out, const mtl_context *ctx, const mtli_file *f);

/* A vector with the layout of the parameter buffer (parameters, optimiser
 * moments, best parameters) in the file's canonical order: layer by layer
 * (trunk, then each task's head, output layer last), each as weight
 * (fan_in x fan_out, row-major), bias, then norm gain and shift if any. */
void mtli_w_param_vector(mtli_writer *w, const mtl_model *m, const float *v);
/* Read one such vector of m->n_params values into v (all must be finite). */
mtl_status mtli_r_param_vector(mtli_reader *r, const mtl_model *m, const char *field, float *v);

/* Index of the first NaN or infinity in v[0..n), or n if there is none. */
int64_t mtli_first_non_finite(const float *v, int64_t n);
/* A model can be written: finalized, every parameter finite. */
mtl_status mtli_check_saveable(const mtl_model *model, const char *fn);

/* Turn the failure of a setter the loader called with a value from the file
 * into a format error at byte `at` (a version error if the file is from a
 * newer minor format); MTL_OK and MTL_ERR_OUT_OF_MEMORY pass through. */
mtl_status mtli_file_value_check(mtl_status st, const mtli_file *f, const mtli_reader *r, size_t at,
                                 const char *what);

#endif /* MTL_MODEL_IO_H */
