/*
 * fake_rknn.c: a test double of Rockchip's librknnrt.so (RKNN API 2.x) for vigil.
 *
 * Build: cc -std=c11 -O1 -g -shared -fPIC -Wall -Wextra -Werror -o librknnrt.so fake_rknn.c
 * (C11 + libc/POSIX only; also builds with aarch64-linux-gnu-gcc.)
 *
 * Models. A "model" is a small text file (or the same bytes in memory, size
 * > 0; size 0 means `model` is a NUL-terminated path) whose first line is
 * exactly "FAKE-RKNN yolov5", "FAKE-RKNN yolov8", "FAKE-RKNN yolov5 nc1hwc2"
 * or "FAKE-RKNN yolov8 nc1hwc2" (a trailing \r is allowed; later lines are
 * ignored). The "nc1hwc2" variants are the same models whose native output
 * layout is NC1HWC2, as a real RK3588 model's usually is (see Outputs).
 * Anything else: RKNN_ERR_MODEL_INVALID (-6), as the real runtime returns
 * for a bad model.
 *
 * Input (both models, INPUT_ATTR = NATIVE_INPUT_ATTR = NATIVE_NHWC_INPUT_ATTR):
 *   index 0, name "input0", dims [1,640,640,3], fmt NHWC (1), type U8 (3),
 *   qnt NONE, zp 0, scale 1, n_elems = size = size_with_stride = 1228800,
 *   w_stride 640, h_stride 640.
 *
 * Outputs: int8, qnt AFFINE (2), value = (q - zp) * scale. OUTPUT_ATTR
 * describes NCHW (fmt 0, dims [1,C,H,W]); NATIVE_NHWC_OUTPUT_ATTR (11)
 * describes NHWC (fmt 1, dims [1,H,W,C]). NATIVE_OUTPUT_ATTR describes NCHW
 * too, except for the "nc1hwc2" models: there it is NC1HWC2 (fmt 2), n_dims
 * 5, dims [1,C1,H,W,16] with C1 = ceil(C/16), w_stride W, h_stride H,
 * n_elems = size = size_with_stride = C1*H*W*16. A mem bound with
 * set_io_mem is written in the layout of the attr it was bound with: fmt 0
 * or 1 (any model), or fmt 2 only for an "nc1hwc2" model and only with that
 * native attr's n_dims, dims and w_stride (0 or W); element (c, h, w) is at
 * ((c/16)*H*W + h*W + w)*16 + c%16 and the padding channels of the last
 * block hold the zero point. Any other fmt, type or NC1HWC2 shape is a
 * violation. outputs_get always returns NCHW.
 *   yolov5: 3 outputs "output0..2", [1,255,80,80], [1,255,40,40],
 *     [1,255,20,20], zp -128, scale 1/255 for all three.
 *   yolov8: 9 outputs "output0..8", per stride 8/16/32 (grids 80/40/20):
 *     box DFL logits [1,64,H,W] zp -128 scale ln(3)/8 (0.1373265),
 *     class scores [1,80,H,W] zp -128 scale 1/255,
 *     score sum [1,1,H,W] zp -128 scale 1/255.
 *   Every value is the zero point (-128: probability 0 / logit 0) except:
 *   yolov5, output1 (stride 16, 40x40), row 20, col 20, anchor 0 (30x61),
 *     channels (anchor 0 is channels 0..84): x q=-64 (64/255), y q=-64,
 *     w q=105 (233/255), h q=103 (231/255), objectness q=127 (1.0),
 *     class 0 q=102 (230/255 = 0.90196).
 *     Decodes (zoo postprocess) to class 0, score 0.90196,
 *     centre ((2*64/255 - 0.5 + 20) * 16) = 320.0314 both axes,
 *     w = (2*233/255)^2 * 30 = 100.1869, h = (2*231/255)^2 * 61 = 200.2320:
 *     box (269.938, 219.916, 370.125, 420.147).
 *     (Stride 8 cannot give a 100x200 box: its anchors top out at 132x92.)
 *   yolov8, outputs 0..2 (stride 8, 80x80), row 40, col 40 (cell centre
 *     324,324): box logits q=18 (20.05) at left bin 7, top bin 13, right bin
 *     6, bottom bin 12, and q=10 (18.95, = 20.05 - ln 3) at left bin 6 and
 *     right bin 5; so softmax expectations are left 6.75, top 13, right 5.75,
 *     bottom 12 strides (to within 1e-6); class 0 q=102 (0.90196), score sum
 *     q=102 (0.90196).
 *     Decodes to class 0, score 0.90196, box (270, 220, 370, 420).
 *   Both: centre (320,320), 100x200, in 640x640 input pixels.
 *
 * Memory: rknn_create_mem makes a memfd of `size` bytes, mapped shared
 * (virt_addr, fd, size, flags 1); rknn_create_mem_from_fd maps the caller's
 * fd itself (virt_addr is the caller's `virt`, or the fake's mapping +
 * offset when virt is NULL; flags 2). phys_addr is 0.
 * rknn_destroy_mem keeps the record (marked dead); a create_mem mapping is
 * replaced by anonymous zero memory so a stale virt_addr does not crash.
 * rknn_run reads the input from the bound input mem, else from the last
 * rknn_inputs_set, and writes every bound output mem; it also refreshes the
 * copies rknn_outputs_get hands out (malloc'ed, freed a few releases later).
 *
 * Misuse is recorded as a violation ("function: message") and the call
 * returns an error (RKNN_ERR_PARAM_INVALID -5, CTX_INVALID -7,
 * INPUT_INVALID -8, ...). Contexts and mems are never freed, so using them
 * after destroy is reported, not a crash.
 *
 * Test-only exports:
 *   size_t fake_rknn_report(char *buf, size_t cap): one line of JSON:
 *     {"calls":{fn:N,...},"live":{"contexts":N,"mems":N,"outputs":N},
 *      "max_live":{...same keys...},"violations":["fn: message",...],
 *      "violations_dropped":N,"last_input_mean":F|null,"last_core_mask":N,
 *      "last_error":"..."}
 *     "outputs" counts rknn_outputs_get calls not yet released.
 *     NUL-terminated, truncated to cap, returns the full length.
 *   void fake_rknn_reset(void): forgets everything (context ids are not
 *     reused, so stale ones become "unknown context").
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fake_common.h"

/* ---- rknn_api.h types ---- */

typedef uint64_t rknn_context;

enum {
    RKNN_SUCC = 0,
    RKNN_ERR_FAIL = -1,
    RKNN_ERR_MALLOC_FAIL = -4,
    RKNN_ERR_PARAM_INVALID = -5,
    RKNN_ERR_MODEL_INVALID = -6,
    RKNN_ERR_CTX_INVALID = -7,
    RKNN_ERR_INPUT_INVALID = -8,
    RKNN_ERR_OUTPUT_INVALID = -9,
};

enum {
    RKNN_QUERY_IN_OUT_NUM = 0,
    RKNN_QUERY_INPUT_ATTR = 1,
    RKNN_QUERY_OUTPUT_ATTR = 2,
    RKNN_QUERY_PERF_RUN = 4,
    RKNN_QUERY_SDK_VERSION = 5,
    RKNN_QUERY_MEM_SIZE = 6,
    RKNN_QUERY_NATIVE_INPUT_ATTR = 8,
    RKNN_QUERY_NATIVE_OUTPUT_ATTR = 9,
    RKNN_QUERY_NATIVE_NHWC_INPUT_ATTR = 10,
    RKNN_QUERY_NATIVE_NHWC_OUTPUT_ATTR = 11,
};

enum { T_F32 = 0, T_F16 = 1, T_I8 = 2, T_U8 = 3 };
enum { FMT_NCHW = 0, FMT_NHWC = 1, FMT_NC1HWC2 = 2 };
enum { QNT_NONE = 0, QNT_DFP = 1, QNT_AFFINE = 2 };

#define RKNN_MAX_DIMS 16
#define RKNN_MAX_NAME_LEN 256

typedef struct {
    uint32_t n_input;
    uint32_t n_output;
} rknn_input_output_num;

typedef struct {
    uint32_t index;
    uint32_t n_dims;
    uint32_t dims[RKNN_MAX_DIMS];
    char name[RKNN_MAX_NAME_LEN];
    uint32_t n_elems;
    uint32_t size;
    int fmt;
    int type;
    int qnt_type;
    int8_t fl;
    int32_t zp;
    float scale;
    uint32_t w_stride;
    uint32_t size_with_stride;
    uint8_t pass_through;
    uint32_t h_stride;
} rknn_tensor_attr;

typedef struct {
    char api_version[256];
    char drv_version[256];
} rknn_sdk_version;

typedef struct {
    uint32_t total_weight_size;
    uint32_t total_internal_size;
    uint64_t total_dma_allocated_size;
    uint32_t total_sram_size;
    uint32_t free_sram_size;
    uint32_t reserved[10];
} rknn_mem_size;

typedef struct {
    int64_t run_duration;
} rknn_perf_run;

typedef struct {
    void *virt_addr;
    uint64_t phys_addr;
    int32_t fd;
    int32_t offset;
    uint32_t size;
    uint32_t flags;
    void *priv_data;
} rknn_tensor_mem;

typedef struct {
    uint32_t index;
    void *buf;
    uint32_t size;
    uint8_t pass_through;
    int type;
    int fmt;
} rknn_input;

typedef struct {
    uint8_t want_float;
    uint8_t is_prealloc;
    uint32_t index;
    void *buf;
    uint32_t size;
} rknn_output;

typedef struct {
    rknn_context ctx;
    int32_t real_model_offset;
    uint32_t real_model_size;
    int32_t model_buffer_fd;
    uint32_t model_buffer_flags;
    uint8_t reserved[112];
} rknn_init_extend;

typedef struct {
    uint64_t frame_id;
    int32_t non_block;
    int32_t timeout_ms;
    int32_t fence_fd;
} rknn_run_extend;

_Static_assert(sizeof(rknn_context) == 8, "rknn_context");
_Static_assert(sizeof(rknn_tensor_attr) == 376, "rknn_tensor_attr");
_Static_assert(offsetof(rknn_tensor_attr, dims) == 8, "attr.dims");
_Static_assert(offsetof(rknn_tensor_attr, name) == 72, "attr.name");
_Static_assert(offsetof(rknn_tensor_attr, n_elems) == 328, "attr.n_elems");
_Static_assert(offsetof(rknn_tensor_attr, size) == 332, "attr.size");
_Static_assert(offsetof(rknn_tensor_attr, fmt) == 336, "attr.fmt");
_Static_assert(offsetof(rknn_tensor_attr, type) == 340, "attr.type");
_Static_assert(offsetof(rknn_tensor_attr, qnt_type) == 344, "attr.qnt_type");
_Static_assert(offsetof(rknn_tensor_attr, fl) == 348, "attr.fl");
_Static_assert(offsetof(rknn_tensor_attr, zp) == 352, "attr.zp");
_Static_assert(offsetof(rknn_tensor_attr, scale) == 356, "attr.scale");
_Static_assert(offsetof(rknn_tensor_attr, w_stride) == 360, "attr.w_stride");
_Static_assert(offsetof(rknn_tensor_attr, size_with_stride) == 364, "attr.sws");
_Static_assert(offsetof(rknn_tensor_attr, pass_through) == 368, "attr.pass_through");
_Static_assert(offsetof(rknn_tensor_attr, h_stride) == 372, "attr.h_stride");
_Static_assert(sizeof(rknn_tensor_mem) == 40, "rknn_tensor_mem");
_Static_assert(offsetof(rknn_tensor_mem, phys_addr) == 8, "mem.phys_addr");
_Static_assert(offsetof(rknn_tensor_mem, fd) == 16, "mem.fd");
_Static_assert(offsetof(rknn_tensor_mem, offset) == 20, "mem.offset");
_Static_assert(offsetof(rknn_tensor_mem, size) == 24, "mem.size");
_Static_assert(offsetof(rknn_tensor_mem, flags) == 28, "mem.flags");
_Static_assert(offsetof(rknn_tensor_mem, priv_data) == 32, "mem.priv_data");
_Static_assert(sizeof(rknn_input) == 32, "rknn_input");
_Static_assert(offsetof(rknn_input, buf) == 8, "input.buf");
_Static_assert(offsetof(rknn_input, size) == 16, "input.size");
_Static_assert(offsetof(rknn_input, pass_through) == 20, "input.pass_through");
_Static_assert(offsetof(rknn_input, type) == 24, "input.type");
_Static_assert(offsetof(rknn_input, fmt) == 28, "input.fmt");
_Static_assert(sizeof(rknn_output) == 24, "rknn_output");
_Static_assert(offsetof(rknn_output, is_prealloc) == 1, "output.is_prealloc");
_Static_assert(offsetof(rknn_output, index) == 4, "output.index");
_Static_assert(offsetof(rknn_output, buf) == 8, "output.buf");
_Static_assert(offsetof(rknn_output, size) == 16, "output.size");
_Static_assert(sizeof(rknn_init_extend) == 136, "rknn_init_extend");
_Static_assert(sizeof(rknn_run_extend) == 24, "rknn_run_extend");
_Static_assert(sizeof(rknn_mem_size) == 64, "rknn_mem_size");
_Static_assert(sizeof(rknn_sdk_version) == 512, "rknn_sdk_version");

/* ---- model description ---- */

#define IN_W 640
#define IN_H 640
#define IN_C 3
#define IN_BYTES (IN_W * IN_H * IN_C)
#define MAX_OUT 9
#define LN3 1.0986122886681098 /* ln(3): no libm needed */

struct tdesc {
    int c, h, w;
    int32_t zp;
    float scale;
};

enum { YOLOV5 = 5, YOLOV8 = 8 };
/* Or-ed into a parsed kind: the model's native output layout is NC1HWC2. */
#define KIND_NC1HWC2 0x100
/* Channels per NC1HWC2 block (int8 on RK3588). */
#define C2 16

static int model_outputs(int kind, struct tdesc out[MAX_OUT]) {
    static const int grids[3] = {80, 40, 20};
    if (kind == YOLOV5) {
        for (int i = 0; i < 3; i++)
            out[i] = (struct tdesc){255, grids[i], grids[i], -128, 1.0f / 255.0f};
        return 3;
    }
    for (int s = 0; s < 3; s++) {
        int g = grids[s];
        out[3 * s + 0] = (struct tdesc){64, g, g, -128, (float)(LN3 / 8.0)};
        out[3 * s + 1] = (struct tdesc){80, g, g, -128, 1.0f / 255.0f};
        out[3 * s + 2] = (struct tdesc){1, g, g, -128, 1.0f / 255.0f};
    }
    return 9;
}

static size_t tensor_elems(const struct tdesc *t) { return (size_t)t->c * t->h * t->w; }

/* Elements of t in NC1HWC2 (padding channels included). */
static size_t nc1hwc2_elems(const struct tdesc *t) {
    return (size_t)((t->c + C2 - 1) / C2) * t->h * t->w * C2;
}

/* ---- bookkeeping ---- */

enum {
    F_rknn_init,
    F_rknn_dup_context,
    F_rknn_destroy,
    F_rknn_query,
    F_rknn_set_core_mask,
    F_rknn_inputs_set,
    F_rknn_run,
    F_rknn_outputs_get,
    F_rknn_outputs_release,
    F_rknn_create_mem,
    F_rknn_create_mem_from_fd,
    F_rknn_destroy_mem,
    F_rknn_set_io_mem,
    F_rknn_mem_sync,
    F_COUNT
};
static const char *const fn_names[F_COUNT] = {
    "rknn_init",         "rknn_dup_context",     "rknn_destroy",
    "rknn_query",        "rknn_set_core_mask",   "rknn_inputs_set",
    "rknn_run",          "rknn_outputs_get",     "rknn_outputs_release",
    "rknn_create_mem",   "rknn_create_mem_from_fd", "rknn_destroy_mem",
    "rknn_set_io_mem",   "rknn_mem_sync",
};

struct mem {
    rknn_tensor_mem pub; /* handed out as rknn_tensor_mem* */
    int alive;
    rknn_context ctx;
    int own_fd;        /* create_mem: the fake's memfd */
    uint8_t *map_base; /* the fake's mapping */
    size_t map_len;
    uint8_t *data; /* map_base + offset */
    uint32_t size;
    struct mem *next;
};

struct ctx {
    rknn_context id;
    int alive;
    int kind;
    int nc1hwc2; /* native outputs are NC1HWC2 */
    int n_out;
    struct tdesc out[MAX_OUT];
    int8_t *out_data[MAX_OUT]; /* NCHW, refreshed by rknn_run */
    uint8_t *input_buf;        /* from rknn_inputs_set */
    int input_src;             /* 0 none, 1 inputs_set, 2 bound mem */
    struct mem *in_mem;
    struct mem *out_mem[MAX_OUT];
    int out_mem_fmt[MAX_OUT];
    int ran;
    struct ctx *next;
};

struct oset { /* one rknn_outputs_get */
    rknn_context ctx;
    int released;
    int bufs_freed;
    uint32_t n;
    void *bufs[MAX_OUT];
    int owned[MAX_OUT];
    struct oset *next;
};

#define MAX_VIOLATIONS 256

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long g_calls[F_COUNT];
static struct ctx *g_ctxs;
static struct mem *g_mems;
static struct oset *g_osets;
static rknn_context g_next_ctx = 0x5a000010;
static long g_live_ctx, g_max_ctx, g_live_mem, g_max_mem, g_live_out, g_max_out;
static char *g_viol_msg[MAX_VIOLATIONS];
static struct vlog g_viol = {g_viol_msg, MAX_VIOLATIONS, 0, 0};
static double g_last_mean = -1.0;
static long g_last_core_mask = -1;
static char g_last_error[512];

static void violation(int fn, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void violation(int fn, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vlog_vformat(msg, sizeof msg, fn_names[fn], fmt, ap);
    va_end(ap);
    snprintf(g_last_error, sizeof g_last_error, "%s", msg);
    vlog_add(&g_viol, msg);
}

/* An error that is not misuse (a bad model file...): only last_error. */
static void soft_error(int fn, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void soft_error(int fn, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vlog_vformat(g_last_error, sizeof g_last_error, fn_names[fn], fmt, ap);
    va_end(ap);
}

static void enter(int fn) {
    pthread_mutex_lock(&g_lock);
    g_calls[fn]++;
}

static void leave(void) { pthread_mutex_unlock(&g_lock); }

static void bump(long *live, long *max, long d) {
    *live += d;
    if (*live > *max) *max = *live;
}

/* The live context `id`, or NULL after recording why. */
static struct ctx *get_ctx(int fn, rknn_context id) {
    for (struct ctx *c = g_ctxs; c; c = c->next) {
        if (c->id != id) continue;
        if (!c->alive) {
            violation(fn, "context 0x%llx used after rknn_destroy", (unsigned long long)id);
            return NULL;
        }
        return c;
    }
    violation(fn, "unknown context 0x%llx", (unsigned long long)id);
    return NULL;
}

static struct mem *find_mem(const rknn_tensor_mem *p) {
    for (struct mem *m = g_mems; m; m = m->next)
        if (&m->pub == p) return m;
    return NULL;
}

/* The live mem `p`, or NULL after recording why. */
static struct mem *get_mem(int fn, const rknn_tensor_mem *p) {
    if (!p) {
        violation(fn, "mem is NULL");
        return NULL;
    }
    struct mem *m = find_mem(p);
    if (!m) {
        violation(fn, "mem %p was not made by rknn_create_mem*", (const void *)p);
        return NULL;
    }
    if (!m->alive) {
        violation(fn, "mem %p used after rknn_destroy_mem", (const void *)p);
        return NULL;
    }
    return m;
}

/* ---- model loading ---- */

static int parse_model(const char *bytes, size_t len) {
    size_t n = 0;
    while (n < len && bytes[n] != '\n' && bytes[n] != 0) n++;
    if (n > 0 && bytes[n - 1] == '\r') n--;
    if (n == 16 && memcmp(bytes, "FAKE-RKNN yolov5", 16) == 0) return YOLOV5;
    if (n == 16 && memcmp(bytes, "FAKE-RKNN yolov8", 16) == 0) return YOLOV8;
    if (n == 24 && memcmp(bytes, "FAKE-RKNN yolov5 nc1hwc2", 24) == 0)
        return YOLOV5 | KIND_NC1HWC2;
    if (n == 24 && memcmp(bytes, "FAKE-RKNN yolov8 nc1hwc2", 24) == 0)
        return YOLOV8 | KIND_NC1HWC2;
    return 0;
}

static struct ctx *new_ctx(int kind) {
    struct ctx *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->kind = kind & ~KIND_NC1HWC2;
    c->nc1hwc2 = (kind & KIND_NC1HWC2) != 0;
    c->n_out = model_outputs(c->kind, c->out);
    c->input_buf = malloc(IN_BYTES);
    int ok = c->input_buf != NULL;
    for (int i = 0; i < c->n_out && ok; i++) {
        c->out_data[i] = malloc(tensor_elems(&c->out[i]));
        ok = c->out_data[i] != NULL;
    }
    if (!ok) {
        free(c->input_buf);
        for (int i = 0; i < c->n_out; i++) free(c->out_data[i]);
        free(c);
        return NULL;
    }
    c->id = g_next_ctx;
    g_next_ctx += 0x10;
    c->alive = 1;
    c->next = g_ctxs;
    g_ctxs = c;
    bump(&g_live_ctx, &g_max_ctx, 1);
    return c;
}

EXPORT int rknn_init(rknn_context *context, void *model, uint32_t size, uint32_t flag,
                     rknn_init_extend *extend) {
    (void)flag;
    enter(F_rknn_init);
    int ret = RKNN_SUCC;
    if (!context || !model) {
        violation(F_rknn_init, "%s is NULL", context ? "model" : "context");
        ret = RKNN_ERR_PARAM_INVALID;
        goto out;
    }
    int kind;
    uint32_t model_size = size;
    if (size > 0) {
        kind = parse_model(model, size);
    } else {
        char head[64];
        FILE *f = fopen((const char *)model, "rb");
        if (!f) {
            soft_error(F_rknn_init, "cannot open model file %.200s", (const char *)model);
            ret = RKNN_ERR_MODEL_INVALID;
            goto out;
        }
        size_t n = fread(head, 1, sizeof head, f);
        if (fseek(f, 0, SEEK_END) == 0) model_size = (uint32_t)ftell(f);
        fclose(f);
        kind = parse_model(head, n);
    }
    if (!kind) {
        soft_error(F_rknn_init,
                   "invalid model (first line is not \"FAKE-RKNN yolov5|yolov8[ nc1hwc2]\")");
        ret = RKNN_ERR_MODEL_INVALID;
        goto out;
    }
    struct ctx *c = new_ctx(kind);
    if (!c) {
        ret = RKNN_ERR_MALLOC_FAIL;
        goto out;
    }
    *context = c->id;
    if (extend) {
        extend->real_model_offset = 0;
        extend->real_model_size = model_size;
    }
out:
    leave();
    return ret;
}

EXPORT int rknn_dup_context(rknn_context *context_in, rknn_context *context_out) {
    enter(F_rknn_dup_context);
    int ret = RKNN_SUCC;
    struct ctx *src;
    if (!context_in || !context_out) {
        violation(F_rknn_dup_context, "a context pointer is NULL");
        ret = RKNN_ERR_PARAM_INVALID;
    } else if (!(src = get_ctx(F_rknn_dup_context, *context_in))) {
        ret = RKNN_ERR_CTX_INVALID;
    } else {
        struct ctx *c = new_ctx(src->kind | (src->nc1hwc2 ? KIND_NC1HWC2 : 0));
        if (!c)
            ret = RKNN_ERR_MALLOC_FAIL;
        else
            *context_out = c->id;
    }
    leave();
    return ret;
}

EXPORT int rknn_destroy(rknn_context context) {
    enter(F_rknn_destroy);
    int ret = RKNN_SUCC;
    struct ctx *c = get_ctx(F_rknn_destroy, context);
    if (!c) {
        ret = RKNN_ERR_CTX_INVALID;
        goto out;
    }
    int mems = 0, sets = 0;
    for (struct mem *m = g_mems; m; m = m->next) mems += m->alive && m->ctx == context;
    for (struct oset *o = g_osets; o; o = o->next) sets += !o->released && o->ctx == context;
    if (mems)
        violation(F_rknn_destroy,
                  "create_mem without destroy_mem before destroy (%d mems of context 0x%llx "
                  "still alive)",
                  mems, (unsigned long long)context);
    if (sets)
        violation(F_rknn_destroy,
                  "outputs_get without outputs_release before destroy (%d unreleased)", sets);
    c->alive = 0;
    free(c->input_buf);
    c->input_buf = NULL;
    for (int i = 0; i < c->n_out; i++) {
        free(c->out_data[i]);
        c->out_data[i] = NULL;
    }
    g_live_ctx--;
out:
    leave();
    return ret;
}

/* ---- queries ---- */

/* fmt: the layout of an output attr (FMT_NCHW, FMT_NHWC or FMT_NC1HWC2). */
static void fill_attr(const struct ctx *c, int input, uint32_t index, int fmt,
                      rknn_tensor_attr *a) {
    memset(a, 0, sizeof *a);
    a->index = index;
    a->n_dims = 4;
    if (input) {
        a->dims[0] = 1;
        a->dims[1] = IN_H;
        a->dims[2] = IN_W;
        a->dims[3] = IN_C;
        snprintf(a->name, sizeof a->name, "input%u", index);
        a->n_elems = a->size = a->size_with_stride = IN_BYTES;
        a->fmt = FMT_NHWC;
        a->type = T_U8;
        a->qnt_type = QNT_NONE;
        a->zp = 0;
        a->scale = 1.0f;
        a->w_stride = IN_W;
        a->h_stride = IN_H;
        return;
    }
    const struct tdesc *t = &c->out[index];
    a->dims[0] = 1;
    a->n_elems = a->size = a->size_with_stride = (uint32_t)tensor_elems(t);
    if (fmt == FMT_NHWC) {
        a->dims[1] = (uint32_t)t->h;
        a->dims[2] = (uint32_t)t->w;
        a->dims[3] = (uint32_t)t->c;
        a->fmt = FMT_NHWC;
    } else if (fmt == FMT_NC1HWC2) {
        a->n_dims = 5;
        a->dims[1] = (uint32_t)((t->c + C2 - 1) / C2);
        a->dims[2] = (uint32_t)t->h;
        a->dims[3] = (uint32_t)t->w;
        a->dims[4] = C2;
        a->fmt = FMT_NC1HWC2;
        a->n_elems = a->size = a->size_with_stride = (uint32_t)nc1hwc2_elems(t);
    } else {
        a->dims[1] = (uint32_t)t->c;
        a->dims[2] = (uint32_t)t->h;
        a->dims[3] = (uint32_t)t->w;
        a->fmt = FMT_NCHW;
    }
    snprintf(a->name, sizeof a->name, "output%u", index);
    a->type = T_I8;
    a->qnt_type = QNT_AFFINE;
    a->zp = t->zp;
    a->scale = t->scale;
    a->w_stride = (uint32_t)t->w;
    a->h_stride = (uint32_t)t->h;
}

EXPORT int rknn_query(rknn_context context, int cmd, void *info, uint32_t size) {
    enter(F_rknn_query);
    int ret = RKNN_SUCC;
    struct ctx *c = get_ctx(F_rknn_query, context);
    if (!c) {
        ret = RKNN_ERR_CTX_INVALID;
        goto out;
    }
    if (!info) {
        violation(F_rknn_query, "cmd %d: info is NULL", cmd);
        ret = RKNN_ERR_PARAM_INVALID;
        goto out;
    }
    switch (cmd) {
    case RKNN_QUERY_IN_OUT_NUM:
        if (size != sizeof(rknn_input_output_num)) {
            violation(F_rknn_query, "IN_OUT_NUM: size %u, expected %zu", size,
                      sizeof(rknn_input_output_num));
            ret = RKNN_ERR_PARAM_INVALID;
            break;
        }
        ((rknn_input_output_num *)info)->n_input = 1;
        ((rknn_input_output_num *)info)->n_output = (uint32_t)c->n_out;
        break;
    case RKNN_QUERY_INPUT_ATTR:
    case RKNN_QUERY_NATIVE_INPUT_ATTR:
    case RKNN_QUERY_NATIVE_NHWC_INPUT_ATTR:
    case RKNN_QUERY_OUTPUT_ATTR:
    case RKNN_QUERY_NATIVE_OUTPUT_ATTR:
    case RKNN_QUERY_NATIVE_NHWC_OUTPUT_ATTR: {
        int input = cmd == RKNN_QUERY_INPUT_ATTR || cmd == RKNN_QUERY_NATIVE_INPUT_ATTR ||
                    cmd == RKNN_QUERY_NATIVE_NHWC_INPUT_ATTR;
        if (size != sizeof(rknn_tensor_attr)) {
            violation(F_rknn_query, "cmd %d: size %u, expected %zu", cmd, size,
                      sizeof(rknn_tensor_attr));
            ret = RKNN_ERR_PARAM_INVALID;
            break;
        }
        rknn_tensor_attr *a = info;
        uint32_t n = input ? 1 : (uint32_t)c->n_out;
        if (a->index >= n) {
            violation(F_rknn_query, "cmd %d: index %u out of range (%u %s)", cmd, a->index, n,
                      input ? "inputs" : "outputs");
            ret = RKNN_ERR_PARAM_INVALID;
            break;
        }
        int fmt = FMT_NCHW;
        if (cmd == RKNN_QUERY_NATIVE_NHWC_OUTPUT_ATTR) fmt = FMT_NHWC;
        if (cmd == RKNN_QUERY_NATIVE_OUTPUT_ATTR && c->nc1hwc2) fmt = FMT_NC1HWC2;
        fill_attr(c, input, a->index, fmt, a);
        break;
    }
    case RKNN_QUERY_PERF_RUN:
        if (size < sizeof(rknn_perf_run)) {
            violation(F_rknn_query, "PERF_RUN: size %u too small", size);
            ret = RKNN_ERR_PARAM_INVALID;
            break;
        }
        ((rknn_perf_run *)info)->run_duration = 10000;
        break;
    case RKNN_QUERY_SDK_VERSION: {
        if (size < sizeof(rknn_sdk_version)) {
            violation(F_rknn_query, "SDK_VERSION: size %u, expected %zu", size,
                      sizeof(rknn_sdk_version));
            ret = RKNN_ERR_PARAM_INVALID;
            break;
        }
        rknn_sdk_version *v = info;
        memset(v, 0, sizeof *v);
        snprintf(v->api_version, sizeof v->api_version, "fake 2.3.2");
        snprintf(v->drv_version, sizeof v->drv_version, "fake 2.3.2");
        break;
    }
    case RKNN_QUERY_MEM_SIZE: {
        if (size < 16) {
            violation(F_rknn_query, "MEM_SIZE: size %u too small", size);
            ret = RKNN_ERR_PARAM_INVALID;
            break;
        }
        rknn_mem_size m;
        memset(&m, 0, sizeof m);
        m.total_weight_size = 7u << 20;
        m.total_internal_size = 12u << 20;
        m.total_dma_allocated_size = 20u << 20;
        memcpy(info, &m, size < sizeof m ? size : sizeof m);
        break;
    }
    default:
        violation(F_rknn_query, "cmd %d is not supported by the fake", cmd);
        ret = RKNN_ERR_PARAM_INVALID;
    }
out:
    leave();
    return ret;
}

EXPORT int rknn_set_core_mask(rknn_context context, int core_mask) {
    enter(F_rknn_set_core_mask);
    int ret = RKNN_SUCC;
    if (!get_ctx(F_rknn_set_core_mask, context)) {
        ret = RKNN_ERR_CTX_INVALID;
    } else if (core_mask != 0 && core_mask != 1 && core_mask != 2 && core_mask != 4 &&
               core_mask != 3 && core_mask != 7 && core_mask != 0xFFFF) {
        violation(F_rknn_set_core_mask, "invalid core mask 0x%x", (unsigned)core_mask);
        ret = RKNN_ERR_PARAM_INVALID;
    } else {
        g_last_core_mask = core_mask;
    }
    leave();
    return ret;
}

/* ---- inference ---- */

EXPORT int rknn_inputs_set(rknn_context context, uint32_t n_inputs, rknn_input inputs[]) {
    enter(F_rknn_inputs_set);
    int ret = RKNN_SUCC;
    struct ctx *c = get_ctx(F_rknn_inputs_set, context);
    if (!c) {
        ret = RKNN_ERR_CTX_INVALID;
        goto out;
    }
    if (!inputs || n_inputs != 1) {
        violation(F_rknn_inputs_set, "expected 1 input, got %u%s", n_inputs,
                  inputs ? "" : " (NULL array)");
        ret = RKNN_ERR_PARAM_INVALID;
        goto out;
    }
    const rknn_input *in = &inputs[0];
    if (in->index != 0 || !in->buf || (in->type != T_U8 && in->type != T_I8) ||
        (in->fmt != FMT_NHWC && in->fmt != FMT_NCHW) || in->size < IN_BYTES) {
        violation(F_rknn_inputs_set,
                  "bad input: index %u buf %p size %u (need %d) type %d fmt %d (fake takes U8/I8 "
                  "NHWC/NCHW)",
                  in->index, in->buf, in->size, IN_BYTES, in->type, in->fmt);
        ret = RKNN_ERR_INPUT_INVALID;
        goto out;
    }
    memcpy(c->input_buf, in->buf, IN_BYTES);
    c->input_src = 1;
out:
    leave();
    return ret;
}

/* Writes the one detection into NCHW tensor `i` of c (already all zp). */
static void place_detection(struct ctx *c, int i) {
    const struct tdesc *t = &c->out[i];
    int8_t *d = c->out_data[i];
#define AT(ch, row, col) d[((size_t)(ch) * t->h + (size_t)(row)) * t->w + (size_t)(col)]
    if (c->kind == YOLOV5) {
        if (i != 1) return; /* stride 16, 40x40 */
        const int row = 20, col = 20, base = 0 /* anchor 0 */;
        AT(base + 0, row, col) = -64; /* x: 64/255 */
        AT(base + 1, row, col) = -64; /* y */
        AT(base + 2, row, col) = 105; /* w: 233/255 */
        AT(base + 3, row, col) = 103; /* h: 231/255 */
        AT(base + 4, row, col) = 127; /* objectness 1.0 */
        AT(base + 5, row, col) = 102; /* class 0: 230/255 */
        return;
    }
    const int row = 40, col = 40;
    switch (i) {
    case 0: /* boxes: side * 16 + bin */
        AT(0 * 16 + 6, row, col) = 10;
        AT(0 * 16 + 7, row, col) = 18; /* left 6.75 */
        AT(1 * 16 + 13, row, col) = 18; /* top 13 */
        AT(2 * 16 + 5, row, col) = 10;
        AT(2 * 16 + 6, row, col) = 18;  /* right 5.75 */
        AT(3 * 16 + 12, row, col) = 18; /* bottom 12 */
        break;
    case 1:
        AT(0, row, col) = 102; /* class 0 */
        break;
    case 2:
        AT(0, row, col) = 102; /* score sum */
        break;
    default:
        break;
    }
#undef AT
}

/* Copies NCHW `src` of t into dst in layout fmt (NC1HWC2: padding channels
 * get the zero point). */
static void copy_layout(const struct tdesc *t, const int8_t *src, uint8_t *dst, int fmt) {
    size_t n = tensor_elems(t);
    size_t plane = (size_t)t->h * t->w;
    if (fmt == FMT_NC1HWC2) {
        memset(dst, (uint8_t)(int8_t)t->zp, nc1hwc2_elems(t));
        for (size_t ch = 0; ch < (size_t)t->c; ch++)
            for (size_t p = 0; p < plane; p++)
                dst[((ch / C2) * plane + p) * C2 + ch % C2] = (uint8_t)src[ch * plane + p];
        return;
    }
    if (fmt != FMT_NHWC) {
        memcpy(dst, src, n);
        return;
    }
    for (size_t ch = 0; ch < (size_t)t->c; ch++)
        for (size_t p = 0; p < plane; p++) dst[p * t->c + ch] = (uint8_t)src[ch * plane + p];
}

EXPORT int rknn_run(rknn_context context, rknn_run_extend *extend) {
    (void)extend;
    enter(F_rknn_run);
    int ret = RKNN_SUCC;
    struct ctx *c = get_ctx(F_rknn_run, context);
    if (!c) {
        ret = RKNN_ERR_CTX_INVALID;
        goto out;
    }
    const uint8_t *in = NULL;
    if (c->input_src == 2) {
        if (!c->in_mem->alive)
            violation(F_rknn_run, "input mem %p used after rknn_destroy_mem",
                      (void *)&c->in_mem->pub);
        else
            in = c->in_mem->data;
    } else if (c->input_src == 1) {
        in = c->input_buf;
    } else {
        violation(F_rknn_run, "no input: neither rknn_inputs_set nor an input set_io_mem");
    }
    if (!in) {
        ret = RKNN_ERR_INPUT_INVALID;
        goto out;
    }
    uint64_t sum = 0;
    for (size_t i = 0; i < IN_BYTES; i++) sum += in[i];
    g_last_mean = (double)sum / IN_BYTES;
    for (int i = 0; i < c->n_out; i++) {
        memset(c->out_data[i], (uint8_t)(int8_t)c->out[i].zp, tensor_elems(&c->out[i]));
        place_detection(c, i);
        struct mem *m = c->out_mem[i];
        if (!m) continue;
        if (!m->alive) {
            violation(F_rknn_run, "output %d mem %p used after rknn_destroy_mem", i,
                      (void *)&m->pub);
            continue;
        }
        copy_layout(&c->out[i], c->out_data[i], m->data, c->out_mem_fmt[i]);
    }
    c->ran = 1;
out:
    leave();
    return ret;
}

/* Frees output copies of all but the newest few released sets, and forgets
 * the records of old released sets. */
static void trim_osets(void) {
    int released = 0;
    struct oset **pp = &g_osets;
    while (*pp) {
        struct oset *o = *pp;
        if (o->released) {
            released++;
            if (released > 4 && !o->bufs_freed) {
                for (uint32_t i = 0; i < o->n; i++)
                    if (o->owned[i]) free(o->bufs[i]);
                o->bufs_freed = 1;
            }
            if (released > 32) {
                *pp = o->next;
                free(o);
                continue;
            }
        }
        pp = &o->next;
    }
}

EXPORT int rknn_outputs_get(rknn_context context, uint32_t n_outputs, rknn_output outputs[],
                            void *extend) {
    (void)extend;
    enter(F_rknn_outputs_get);
    int ret = RKNN_SUCC;
    struct ctx *c = get_ctx(F_rknn_outputs_get, context);
    if (!c) {
        ret = RKNN_ERR_CTX_INVALID;
        goto out;
    }
    if (!outputs || n_outputs == 0 || n_outputs > (uint32_t)c->n_out) {
        violation(F_rknn_outputs_get, "bad outputs array (%u outputs, model has %d)", n_outputs,
                  c->n_out);
        ret = RKNN_ERR_PARAM_INVALID;
        goto out;
    }
    for (uint32_t i = 0; i < n_outputs; i++) {
        rknn_output *o = &outputs[i];
        if (o->index >= (uint32_t)c->n_out) {
            violation(F_rknn_outputs_get, "output %u: index %u out of range", i, o->index);
            ret = RKNN_ERR_PARAM_INVALID;
            goto out;
        }
        size_t need = tensor_elems(&c->out[o->index]) * (o->want_float ? 4 : 1);
        if (o->is_prealloc && (!o->buf || o->size < need)) {
            violation(F_rknn_outputs_get, "output %u: preallocated buffer %p of %u bytes, need %zu",
                      i, o->buf, o->size, need);
            ret = RKNN_ERR_PARAM_INVALID;
            goto out;
        }
    }
    for (struct oset *s = g_osets; s; s = s->next)
        if (s->ctx == context && !s->released) {
            violation(F_rknn_outputs_get,
                      "outputs_get again without outputs_release of the previous outputs");
            break;
        }
    if (!c->ran) violation(F_rknn_outputs_get, "outputs_get before any rknn_run");
    struct oset *set = calloc(1, sizeof *set);
    if (!set) {
        ret = RKNN_ERR_MALLOC_FAIL;
        goto out;
    }
    set->ctx = context;
    set->n = n_outputs;
    for (uint32_t i = 0; i < n_outputs; i++) {
        rknn_output *o = &outputs[i];
        const struct tdesc *t = &c->out[o->index];
        size_t elems = tensor_elems(t);
        size_t need = elems * (o->want_float ? 4 : 1);
        void *buf = o->is_prealloc ? o->buf : malloc(need);
        if (!buf) {
            for (uint32_t j = 0; j < i; j++)
                if (set->owned[j]) free(set->bufs[j]);
            free(set);
            ret = RKNN_ERR_MALLOC_FAIL;
            goto out;
        }
        if (o->want_float) {
            float *f = buf;
            for (size_t k = 0; k < elems; k++)
                f[k] = (float)(c->out_data[o->index][k] - t->zp) * t->scale;
        } else {
            memcpy(buf, c->out_data[o->index], elems);
        }
        set->bufs[i] = buf;
        set->owned[i] = !o->is_prealloc;
        o->buf = buf;
        o->size = (uint32_t)need;
    }
    set->next = g_osets;
    g_osets = set;
    bump(&g_live_out, &g_max_out, 1);
out:
    leave();
    return ret;
}

static int set_matches(const struct oset *s, uint32_t n, const rknn_output outputs[]) {
    for (uint32_t i = 0; i < n; i++) {
        int found = 0;
        for (uint32_t j = 0; j < s->n && !found; j++) found = s->bufs[j] == outputs[i].buf;
        if (!found) return 0;
    }
    return 1;
}

EXPORT int rknn_outputs_release(rknn_context context, uint32_t n_outputs, rknn_output outputs[]) {
    enter(F_rknn_outputs_release);
    int ret = RKNN_SUCC;
    if (!get_ctx(F_rknn_outputs_release, context)) {
        ret = RKNN_ERR_CTX_INVALID;
        goto out;
    }
    if (!outputs || n_outputs == 0) {
        violation(F_rknn_outputs_release, "bad outputs array (%u outputs)", n_outputs);
        ret = RKNN_ERR_PARAM_INVALID;
        goto out;
    }
    struct oset *pending = NULL, *match = NULL;
    for (struct oset *s = g_osets; s; s = s->next) {
        if (s->ctx != context || s->released) continue;
        if (!pending) pending = s; /* newest */
        if (!match && set_matches(s, n_outputs, outputs)) match = s;
    }
    if (!match) {
        int twice = 0;
        for (struct oset *s = g_osets; s && !twice; s = s->next)
            twice = s->ctx == context && s->released && set_matches(s, n_outputs, outputs);
        if (twice || !pending) {
            violation(F_rknn_outputs_release, twice ? "outputs released twice"
                                                    : "outputs_release without outputs_get");
            ret = RKNN_ERR_PARAM_INVALID;
            goto out;
        }
        violation(F_rknn_outputs_release,
                  "buffers were not returned by outputs_get (releasing the newest outputs)");
        match = pending;
    }
    match->released = 1;
    g_live_out--;
    trim_osets();
out:
    leave();
    return ret;
}

/* ---- memory ---- */

static struct mem *new_mem(rknn_context ctx) {
    struct mem *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->ctx = ctx;
    m->alive = 1;
    m->own_fd = -1;
    m->next = g_mems;
    g_mems = m;
    bump(&g_live_mem, &g_max_mem, 1);
    return m;
}

EXPORT rknn_tensor_mem *rknn_create_mem(rknn_context context, uint32_t size) {
    enter(F_rknn_create_mem);
    rknn_tensor_mem *ret = NULL;
    if (!get_ctx(F_rknn_create_mem, context)) goto out;
    if (size == 0 || size > (1u << 30)) {
        violation(F_rknn_create_mem, "bad size %u", size);
        goto out;
    }
    int fd = memfd_create("fake-rknn-mem", MFD_CLOEXEC);
    if (fd < 0) goto out;
    if (ftruncate(fd, size) != 0) {
        close(fd);
        goto out;
    }
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        close(fd);
        goto out;
    }
    struct mem *m = new_mem(context);
    if (!m) {
        munmap(p, size);
        close(fd);
        goto out;
    }
    m->own_fd = fd;
    m->map_base = m->data = p;
    m->map_len = size;
    m->size = size;
    m->pub.virt_addr = p;
    m->pub.phys_addr = 0;
    m->pub.fd = fd;
    m->pub.offset = 0;
    m->pub.size = size;
    m->pub.flags = 1; /* RKNN_TENSOR_MEMORY_FLAGS_ALLOC_INSIDE */
    ret = &m->pub;
out:
    leave();
    return ret;
}

EXPORT rknn_tensor_mem *rknn_create_mem_from_fd(rknn_context context, int32_t fd, void *virt,
                                                uint32_t size, int32_t offset) {
    enter(F_rknn_create_mem_from_fd);
    rknn_tensor_mem *ret = NULL;
    if (!get_ctx(F_rknn_create_mem_from_fd, context)) goto out;
    if (fd < 0 || fcntl(fd, F_GETFD) == -1) {
        violation(F_rknn_create_mem_from_fd, "fd %d is not an open file descriptor", (int)fd);
        goto out;
    }
    if (size == 0 || size > (1u << 30) || offset < 0) {
        violation(F_rknn_create_mem_from_fd, "bad size %u / offset %d", size, (int)offset);
        goto out;
    }
    size_t len = (size_t)offset + size;
    struct stat st;
    if (fstat(fd, &st) == 0 && st.st_size > 0 && (unsigned long long)st.st_size < len) {
        violation(F_rknn_create_mem_from_fd, "fd %d holds %lld bytes, offset+size is %zu", (int)fd,
                  (long long)st.st_size, len);
        goto out;
    }
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        violation(F_rknn_create_mem_from_fd, "fd %d cannot be mapped for %zu bytes", (int)fd, len);
        goto out;
    }
    struct mem *m = new_mem(context);
    if (!m) {
        munmap(p, len);
        goto out;
    }
    m->map_base = p;
    m->map_len = len;
    m->data = (uint8_t *)p + offset;
    m->size = size;
    m->pub.virt_addr = virt ? virt : m->data;
    m->pub.fd = fd;
    m->pub.offset = offset;
    m->pub.size = size;
    m->pub.flags = 2; /* RKNN_TENSOR_MEMORY_FLAGS_FROM_FD */
    ret = &m->pub;
out:
    leave();
    return ret;
}

EXPORT int rknn_destroy_mem(rknn_context context, rknn_tensor_mem *mem) {
    enter(F_rknn_destroy_mem);
    int ret = RKNN_SUCC;
    int ctx_ok = get_ctx(F_rknn_destroy_mem, context) != NULL;
    struct mem *m = mem ? find_mem(mem) : NULL;
    if (!mem || !m) {
        violation(F_rknn_destroy_mem, "mem %p was not made by rknn_create_mem*", (void *)mem);
        ret = RKNN_ERR_PARAM_INVALID;
    } else if (!m->alive) {
        violation(F_rknn_destroy_mem, "mem %p destroyed twice", (void *)mem);
        ret = RKNN_ERR_PARAM_INVALID;
    } else {
        if (m->own_fd >= 0) {
            /* Keep the address range valid (zero pages) for stale readers. */
            void *p = mmap(m->map_base, m->map_len, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
            if (p == MAP_FAILED) munmap(m->map_base, m->map_len);
            close(m->own_fd);
            m->own_fd = -1;
        } else {
            munmap(m->map_base, m->map_len);
        }
        m->alive = 0;
        g_live_mem--;
        if (!ctx_ok) ret = RKNN_ERR_CTX_INVALID;
    }
    leave();
    return ret;
}

EXPORT int rknn_set_io_mem(rknn_context context, rknn_tensor_mem *mem, rknn_tensor_attr *attr) {
    enter(F_rknn_set_io_mem);
    int ret = RKNN_ERR_PARAM_INVALID;
    struct ctx *c = get_ctx(F_rknn_set_io_mem, context);
    if (!c) {
        ret = RKNN_ERR_CTX_INVALID;
        goto out;
    }
    struct mem *m = get_mem(F_rknn_set_io_mem, mem);
    if (!m) goto out;
    if (!attr) {
        violation(F_rknn_set_io_mem, "attr is NULL");
        goto out;
    }
    char name[RKNN_MAX_NAME_LEN];
    memcpy(name, attr->name, sizeof name);
    name[sizeof name - 1] = 0;
    unsigned idx;
    char tail;
    if (sscanf(name, "input%u%c", &idx, &tail) == 1) {
        if (idx != 0 || attr->index != 0) {
            violation(F_rknn_set_io_mem, "input attr \"%s\" index %u: the model has 1 input", name,
                      attr->index);
            goto out;
        }
        if (attr->fmt != FMT_NHWC || (attr->type != T_U8 && attr->type != T_I8)) {
            violation(F_rknn_set_io_mem, "input attr fmt %d type %d: zero-copy input is U8/I8 NHWC",
                      attr->fmt, attr->type);
            goto out;
        }
        if (m->size < IN_BYTES) {
            violation(F_rknn_set_io_mem, "input mem of %u bytes, the input needs %d", m->size,
                      IN_BYTES);
            goto out;
        }
        c->in_mem = m;
        c->input_src = 2;
        ret = RKNN_SUCC;
    } else if (sscanf(name, "output%u%c", &idx, &tail) == 1) {
        if (idx >= (unsigned)c->n_out || attr->index != idx) {
            violation(F_rknn_set_io_mem, "output attr \"%s\" index %u: the model has %d outputs",
                      name, attr->index, c->n_out);
            goto out;
        }
        const struct tdesc *t = &c->out[idx];
        if (attr->fmt == FMT_NC1HWC2 && attr->type == T_I8) {
            rknn_tensor_attr native;
            fill_attr(c, 0, idx, FMT_NC1HWC2, &native);
            if (!c->nc1hwc2) {
                violation(F_rknn_set_io_mem,
                          "output %u attr fmt NC1HWC2: this model's native output layout is NCHW",
                          idx);
                goto out;
            }
            if (attr->n_dims != 5 || memcmp(attr->dims, native.dims, sizeof native.dims) != 0 ||
                (attr->w_stride != 0 && attr->w_stride != native.w_stride)) {
                violation(F_rknn_set_io_mem,
                          "output %u NC1HWC2 attr n_dims %u dims [%u,%u,%u,%u,%u] w_stride %u is "
                          "not the native attr ([1,%u,%u,%u,%u] w_stride %u)",
                          idx, attr->n_dims, attr->dims[0], attr->dims[1], attr->dims[2],
                          attr->dims[3], attr->dims[4], attr->w_stride, native.dims[1],
                          native.dims[2], native.dims[3], native.dims[4], native.w_stride);
                goto out;
            }
        } else if ((attr->fmt != FMT_NCHW && attr->fmt != FMT_NHWC) || attr->type != T_I8) {
            violation(F_rknn_set_io_mem,
                      "output %u attr fmt %d type %d: the fake supports int8 NCHW/NHWC (and "
                      "NC1HWC2 for nc1hwc2 models) only",
                      idx, attr->fmt, attr->type);
            goto out;
        }
        size_t need = attr->fmt == FMT_NC1HWC2 ? nc1hwc2_elems(t) : tensor_elems(t);
        if (m->size < need) {
            violation(F_rknn_set_io_mem, "output %u mem of %u bytes, the tensor needs %zu", idx,
                      m->size, need);
            goto out;
        }
        c->out_mem[idx] = m;
        c->out_mem_fmt[idx] = attr->fmt;
        ret = RKNN_SUCC;
    } else {
        violation(F_rknn_set_io_mem, "attr name \"%.64s\" is none of this model's tensors", name);
    }
out:
    leave();
    return ret;
}

EXPORT int rknn_mem_sync(rknn_context context, rknn_tensor_mem *mem, int mode) {
    enter(F_rknn_mem_sync);
    int ret = RKNN_SUCC;
    if (!get_ctx(F_rknn_mem_sync, context)) {
        ret = RKNN_ERR_CTX_INVALID;
    } else if (!get_mem(F_rknn_mem_sync, mem)) {
        ret = RKNN_ERR_PARAM_INVALID;
    } else if (mode != 1 && mode != 2 && mode != 3) {
        violation(F_rknn_mem_sync, "bad sync mode %d (TO_DEVICE 1, FROM_DEVICE 2, BIDIRECTIONAL 3)",
                  mode);
        ret = RKNN_ERR_PARAM_INVALID;
    }
    leave();
    return ret;
}

/* ---- test-only report ---- */

EXPORT size_t fake_rknn_report(char *buf, size_t cap) {
    struct sbuf b = {0};
    pthread_mutex_lock(&g_lock);
    sb_put(&b, "{\"calls\":{", 10);
    sb_call_counts(&b, fn_names, g_calls, F_COUNT, 0);
    sb_printf(&b, "},\"live\":{\"contexts\":%ld,\"mems\":%ld,\"outputs\":%ld}", g_live_ctx,
              g_live_mem, g_live_out);
    sb_printf(&b, ",\"max_live\":{\"contexts\":%ld,\"mems\":%ld,\"outputs\":%ld},\"violations\":[",
              g_max_ctx, g_max_mem, g_max_out);
    sb_json_strs(&b, g_viol.msg, g_viol.n);
    sb_printf(&b, "],\"violations_dropped\":%zu,\"last_input_mean\":", g_viol.dropped);
    if (g_last_mean < 0)
        sb_put(&b, "null", 4);
    else
        sb_printf(&b, "%.3f", g_last_mean);
    sb_printf(&b, ",\"last_core_mask\":%ld,\"last_error\":", g_last_core_mask);
    sb_json_str(&b, g_last_error);
    sb_put(&b, "}", 1);
    pthread_mutex_unlock(&g_lock);
    return sb_finish(&b, buf, cap);
}

EXPORT void fake_rknn_reset(void) {
    pthread_mutex_lock(&g_lock);
    memset(g_calls, 0, sizeof g_calls);
    vlog_clear(&g_viol);
    while (g_ctxs) {
        struct ctx *c = g_ctxs;
        g_ctxs = c->next;
        free(c->input_buf);
        for (int i = 0; i < c->n_out; i++) free(c->out_data[i]);
        free(c);
    }
    /* Live mems stay mapped (the caller may still read them); records go. */
    while (g_mems) {
        struct mem *m = g_mems;
        g_mems = m->next;
        free(m);
    }
    /* Unreleased output copies belong to the caller now; released ones go. */
    while (g_osets) {
        struct oset *o = g_osets;
        g_osets = o->next;
        if (o->released && !o->bufs_freed)
            for (uint32_t i = 0; i < o->n; i++)
                if (o->owned[i]) free(o->bufs[i]);
        free(o);
    }
    g_live_ctx = g_max_ctx = g_live_mem = g_max_mem = g_live_out = g_max_out = 0;
    g_last_mean = -1.0;
    g_last_core_mask = -1;
    g_last_error[0] = 0;
    pthread_mutex_unlock(&g_lock);
}

/* With FAKE_REPORT_DIR set, the report is also written to
 * $FAKE_REPORT_DIR/fake_rknn.json whenever the library is unloaded (dlclose
 * or process exit; the last unload wins), so a test can check the pairs of a
 * process it only runs, such as the vigil binary. */
__attribute__((destructor)) static void fake_rknn_write_report(void) {
    fake_write_report("fake_rknn.json", fake_rknn_report);
}
