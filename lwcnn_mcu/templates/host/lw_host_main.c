/*
 * lw_host_main.c - runs the generated model on the host for lwcnn-mcu verify.
 *
 *   lw_host IN.bin N OUT.bin [TRACE.bin]
 *
 * IN.bin holds N inputs of LW_HOST_INPUT_SIZE values each (LW_HOST_IN_T: int8_t, or the model's own
 * input type for its NAME_invoke_float / NAME_invoke_u8); OUT.bin receives N outputs (LW_HOST_OUT_T).
 * With TRACE.bin, every layer's output of the first input is written as records
 * (int32 layer, int32 size, size bytes).
 */
#include <stdio.h>
#include <stdlib.h>

#include "lw_host_model.h" /* the model under test: LW_HOST_* (lwcnn_mcu/hostrun.py) */
#include "lwcnn_hooks.h"

#ifndef LW_HOST_IN_T
#define LW_HOST_IN_T int8_t
#endif
#ifndef LW_HOST_OUT_T
#define LW_HOST_OUT_T int8_t
#endif

static FILE *trace_file;

void lw_host_trace(int layer, const int8_t *data, int32_t size)
{
    if (trace_file != NULL) {
        const int32_t hdr[2] = {layer, size};
        if (fwrite(hdr, sizeof hdr, 1, trace_file) != 1 || fwrite(data, 1, (size_t)size, trace_file) != (size_t)size) {
            fprintf(stderr, "lw_host: trace write failed\n");
            exit(3);
        }
    }
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s IN.bin N OUT.bin [TRACE.bin]\n", argv[0]);
        return 2;
    }
    const long n = strtol(argv[2], NULL, 10);
    FILE *in = fopen(argv[1], "rb");
    FILE *out = fopen(argv[3], "wb");
    if (in == NULL || out == NULL || n < 0) {
        fprintf(stderr, "lw_host: cannot open files\n");
        return 2;
    }
    static LW_HOST_IN_T x[LW_HOST_INPUT_SIZE];
    static LW_HOST_OUT_T y[LW_HOST_OUTPUT_SIZE];
    for (long i = 0; i < n; ++i) {
        if (fread(x, 1, sizeof x, in) != sizeof x) {
            fprintf(stderr, "lw_host: input %ld is truncated\n", i);
            return 2;
        }
        if (i == 0 && argc > 4) {
            trace_file = fopen(argv[4], "wb");
        }
        LW_HOST_INVOKE(x, y);
        if (trace_file != NULL) {
            fclose(trace_file);
            trace_file = NULL;
        }
        if (fwrite(y, 1, sizeof y, out) != sizeof y) {
            fprintf(stderr, "lw_host: write failed\n");
            return 2;
        }
    }
    fclose(in);
    fclose(out);
    return 0;
}
