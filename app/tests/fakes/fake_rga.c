/*
 * fake_rga.c: a test double of Rockchip's librga.so (im2d C API) for vigil.
 *
 * Build: cc -std=c11 -O1 -g -shared -fPIC -Wall -Wextra -Werror -o librga.so fake_rga.c
 * (C11 + libc/POSIX only; also builds with aarch64-linux-gnu-gcc.)
 *
 * What it does
 *   - importbuffer_fd maps the fd (MAP_SHARED, wstride*hstride*bpp bytes) and
 *     returns a handle (> 0, never reused); releasebuffer_handle unmaps it.
 *     The fd must still name the file it named at import when the handle
 *     is released (its memory outlives the import, as with librga's kernel
 *     driver); a closed or reused fd is a violation.
 *     Handle records are never freed: use after release, double release and
 *     never-imported handles are recorded as violations (and the call fails)
 *     instead of crashing.
 *   - improcess / imresize_t / imcvtcolor_t: nearest-neighbour scaling from
 *     srect to drect with colour conversion. Sources: NV12 (0xA00), NV21
 *     (0xE00), RGB_888 (0x200), BGR_888 (0x700); destinations RGB_888 and
 *     BGR_888 only. YUV->RGB is BT.601 limited range (RGA's default), integer
 *     math: c=Y-16, d=U-128, e=V-128, R=(298c+409e+128)>>8,
 *     G=(298c-100d-208e+128)>>8, B=(298c+516d+128)>>8, clamped to 0..255.
 *     (So Y=100, U=V=128 gives 98,98,98.) `pat`, prect and the usage bits
 *     are ignored (the work is always synchronous).
 *   - imfill_t fills a rect of an RGB_888/BGR_888 destination. `color` is
 *     read as RGBA8888 little-endian like im_color_t: R = color & 0xff,
 *     G = (color >> 8) & 0xff, B = (color >> 16) & 0xff. A gray 114 border
 *     therefore needs color 0x727272 (or 0xff727272); color 114 gives
 *     (114,0,0).
 *   - A zero im_rect ({0,0,0,0}) means the whole picture, like librga.
 *   - A buffer is resolved by handle (if != 0), else by fd (> 0, mapped for
 *     the duration of the call), else by vir_addr (trusted).
 *
 * rga_buffer_t: the real librga 1.10 layout (96 bytes, align 8 on LP64):
 *   vir_addr @0, phy_addr @8, fd @16, width @20, height @24, wstride @28,
 *   hstride @32, format @36, color_space_mode @40, global_alpha @44,
 *   rd_mode @48, color @52, colorkey_range {max,min} @56, nn (6 x int) @64,
 *   rop_code @88, handle (u32) @92.
 *
 * Test-only exports:
 *   size_t fake_rga_report(char *buf, size_t cap): one line of JSON,
 *     {"calls":{fn:N,...},"live":{"handles":N},"max_live":{"handles":N},
 *      "violations":["fn: message",...],"violations_dropped":N,
 *      "rgb2_over_4g":0}
 *     NUL-terminated, truncated to cap, returns the full length.
 *   void fake_rga_reset(void): forgets counters, violations and records
 *     (handle numbers keep increasing, so a stale handle stays invalid).
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

/* ---- librga types ---- */

typedef uint32_t rga_buffer_handle_t;

typedef enum {
    IM_STATUS_NOERROR = 2,
    IM_STATUS_SUCCESS = 1,
    IM_STATUS_NOT_SUPPORTED = -1,
    IM_STATUS_OUT_OF_MEMORY = -2,
    IM_STATUS_INVALID_PARAM = -3,
    IM_STATUS_ILLEGAL_PARAM = -4,
    IM_STATUS_ERROR_VERSION = -5,
    IM_STATUS_NO_SESSION = -6,
    IM_STATUS_FAILED = 0,
} IM_STATUS;

enum {
    RK_FORMAT_RGB_888 = 0x200,
    RK_FORMAT_BGR_888 = 0x700,
    RK_FORMAT_YCbCr_420_SP = 0xA00, /* NV12 */
    RK_FORMAT_YCrCb_420_SP = 0xE00, /* NV21 */
};

typedef struct {
    int x, y, width, height;
} im_rect;

typedef struct {
    uint32_t width;  /* width stride in pixels */
    uint32_t height; /* height stride in pixels */
    uint32_t format;
} im_handle_param_t;

typedef struct {
    int max, min;
} im_colorkey_range;

typedef struct {
    int scale_r, scale_g, scale_b, offset_r, offset_g, offset_b;
} im_nn_t;

typedef struct {
    void *vir_addr;
    void *phy_addr;
    int fd;
    int width;
    int height;
    int wstride;
    int hstride;
    int format;
    int color_space_mode;
    int global_alpha; /* a union with {u16 alpha0, alpha1} in librga */
    int rd_mode;
    int color;
    im_colorkey_range colorkey_range;
    im_nn_t nn;
    int rop_code;
    rga_buffer_handle_t handle;
} rga_buffer_t;

_Static_assert(sizeof(im_rect) == 16, "im_rect");
_Static_assert(sizeof(im_handle_param_t) == 12, "im_handle_param_t");
_Static_assert(sizeof(rga_buffer_t) == 96, "rga_buffer_t size");
_Static_assert(offsetof(rga_buffer_t, handle) == 92, "rga_buffer_t.handle");
_Static_assert(offsetof(rga_buffer_t, fd) == 16, "rga_buffer_t.fd");
_Static_assert(offsetof(rga_buffer_t, width) == 20, "rga_buffer_t.width");
_Static_assert(offsetof(rga_buffer_t, height) == 24, "rga_buffer_t.height");
_Static_assert(offsetof(rga_buffer_t, wstride) == 28, "rga_buffer_t.wstride");
_Static_assert(offsetof(rga_buffer_t, hstride) == 32, "rga_buffer_t.hstride");
_Static_assert(offsetof(rga_buffer_t, format) == 36, "rga_buffer_t.format");
_Static_assert(offsetof(rga_buffer_t, color_space_mode) == 40, "csm");
_Static_assert(offsetof(rga_buffer_t, rop_code) == 88, "rop_code");

/* ---- bookkeeping ---- */

enum {
    F_importbuffer_fd,
    F_releasebuffer_handle,
    F_wrapbuffer_fd_t,
    F_wrapbuffer_handle_t,
    F_imresize_t,
    F_imcvtcolor_t,
    F_imfill_t,
    F_improcess,
    F_imcheck_t,
    F_imStrError_t,
    F_COUNT
};
static const char *const fn_names[F_COUNT] = {
    "importbuffer_fd", "releasebuffer_handle", "wrapbuffer_fd_t", "wrapbuffer_handle_t",
    "imresize_t",      "imcvtcolor_t",         "imfill_t",        "improcess",
    "imcheck_t",       "imStrError_t",
};

struct handle {
    uint32_t id;
    int alive;
    int fd;
    dev_t dev; /* the file fd named at import: checked again at release */
    ino_t ino;
    uint32_t wstride, hstride, format;
    uint8_t *map;
    size_t size;
    struct handle *next;
};

#define MAX_VIOLATIONS 256

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long g_calls[F_COUNT];
static struct handle *g_handles;
static uint32_t g_next_handle = 1;
static long g_live_handles, g_max_live_handles;
static char *g_viol_msg[MAX_VIOLATIONS];
static struct vlog g_viol = {g_viol_msg, MAX_VIOLATIONS, 0, 0};
static unsigned long g_rga2_over_4g; /* placeholder: always 0 in the fake */

static void violation(int fn, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void violation(int fn, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vlog_vformat(msg, sizeof msg, fn_names[fn], fmt, ap);
    va_end(ap);
    vlog_add(&g_viol, msg);
}

static void enter(int fn) {
    pthread_mutex_lock(&g_lock);
    g_calls[fn]++;
}

static void leave(void) { pthread_mutex_unlock(&g_lock); }

static struct handle *find_handle(uint32_t id) {
    for (struct handle *h = g_handles; h; h = h->next)
        if (h->id == id) return h;
    return NULL;
}

/* Bytes a wstride x hstride picture of `fmt` needs; 0: unsupported. */
static size_t frame_size(int fmt, long ws, long hs) {
    if (ws <= 0 || hs <= 0 || ws > 16384 || hs > 16384) return 0;
    switch (fmt) {
    case RK_FORMAT_YCbCr_420_SP:
    case RK_FORMAT_YCrCb_420_SP:
        return (size_t)ws * (size_t)hs * 3 / 2;
    case RK_FORMAT_RGB_888:
    case RK_FORMAT_BGR_888:
        return (size_t)ws * (size_t)hs * 3;
    default:
        return 0;
    }
}

static int fd_is_open(int fd) { return fd >= 0 && fcntl(fd, F_GETFD) != -1; }

/* Maps `len` bytes of fd; NULL (and a violation) when it cannot. */
static uint8_t *map_fd(int fn, int fd, size_t len) {
    if (!fd_is_open(fd)) {
        violation(fn, "fd %d is not an open file descriptor", fd);
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && st.st_size > 0 && (unsigned long long)st.st_size < len) {
        violation(fn, "fd %d holds %lld bytes, the picture needs %zu", fd, (long long)st.st_size,
                  len);
        return NULL;
    }
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        violation(fn, "fd %d cannot be mapped for %zu bytes", fd, len);
        return NULL;
    }
    return p;
}

/* A resolved picture. */
struct img {
    uint8_t *p;
    int w, h, ws, hs, fmt;
    uint8_t *tmp_map; /* mapped for this call only (fd-wrapped buffers) */
    size_t tmp_len;
};

static void img_done(struct img *im) {
    if (im->tmp_map) munmap(im->tmp_map, im->tmp_len);
    im->tmp_map = NULL;
}

static IM_STATUS resolve(int fn, const char *what, const rga_buffer_t *b, struct img *out) {
    memset(out, 0, sizeof *out);
    out->w = b->width;
    out->h = b->height;
    out->ws = b->wstride;
    out->hs = b->hstride;
    out->fmt = b->format;
    if (out->w <= 0 || out->h <= 0 || out->ws < out->w || out->hs < out->h) {
        violation(fn, "%s: bad geometry %dx%d stride %dx%d", what, out->w, out->h, out->ws, out->hs);
        return IM_STATUS_INVALID_PARAM;
    }
    size_t need = frame_size(out->fmt, out->ws, out->hs);
    if (need == 0) {
        violation(fn, "%s: format 0x%x is not supported by the fake", what, (unsigned)out->fmt);
        return IM_STATUS_NOT_SUPPORTED;
    }
    if (b->handle != 0) {
        struct handle *h = find_handle(b->handle);
        if (!h) {
            violation(fn, "%s: handle %u was never imported", what, b->handle);
            return IM_STATUS_INVALID_PARAM;
        }
        if (!h->alive) {
            violation(fn, "%s: handle %u used after releasebuffer_handle", what, b->handle);
            return IM_STATUS_INVALID_PARAM;
        }
        if (need > h->size) {
            violation(fn, "%s: handle %u: %dx%d fmt 0x%x needs %zu bytes, only %zu imported", what,
                      b->handle, out->ws, out->hs, (unsigned)out->fmt, need, h->size);
            return IM_STATUS_INVALID_PARAM;
        }
        out->p = h->map;
    } else if (b->fd > 0) {
        out->tmp_map = map_fd(fn, b->fd, need);
        if (!out->tmp_map) return IM_STATUS_INVALID_PARAM;
        out->tmp_len = need;
        out->p = out->tmp_map;
    } else if (b->vir_addr) {
        out->p = b->vir_addr;
    } else {
        violation(fn, "%s: buffer has no handle, fd or address", what);
        return IM_STATUS_INVALID_PARAM;
    }
    return IM_STATUS_SUCCESS;
}

/* A zero rect is the whole picture; anything else must lie inside it. */
static int rect_ok(int fn, const char *what, const struct img *im, im_rect *r) {
    if (r->x == 0 && r->y == 0 && r->width == 0 && r->height == 0) {
        r->width = im->w;
        r->height = im->h;
        return 1;
    }
    if (r->x < 0 || r->y < 0 || r->width <= 0 || r->height <= 0 || r->x > im->w - r->width ||
        r->y > im->h - r->height) {
        violation(fn, "%s rect {%d,%d,%d,%d} is not inside %dx%d", what, r->x, r->y, r->width,
                  r->height, im->w, im->h);
        return 0;
    }
    return 1;
}

static int is_rgb(int fmt) { return fmt == RK_FORMAT_RGB_888 || fmt == RK_FORMAT_BGR_888; }

static uint8_t clamp8(int v) {
    if (v < 0) return 0;
    v >>= 8;
    return (uint8_t)(v > 255 ? 255 : v);
}

static void get_rgb(const struct img *im, int x, int y, uint8_t rgb[3]) {
    const uint8_t *p = im->p;
    switch (im->fmt) {
    case RK_FORMAT_RGB_888:
    case RK_FORMAT_BGR_888: {
        const uint8_t *q = p + ((size_t)y * (size_t)im->ws + (size_t)x) * 3;
        int bgr = im->fmt == RK_FORMAT_BGR_888;
        rgb[0] = q[bgr ? 2 : 0];
        rgb[1] = q[1];
        rgb[2] = q[bgr ? 0 : 2];
        return;
    }
    default: { /* NV12 / NV21 */
        int yy = p[(size_t)y * (size_t)im->ws + (size_t)x];
        const uint8_t *uv = p + (size_t)im->ws * (size_t)im->hs + (size_t)(y / 2) * (size_t)im->ws +
                            (size_t)(x & ~1);
        int u = im->fmt == RK_FORMAT_YCbCr_420_SP ? uv[0] : uv[1];
        int v = im->fmt == RK_FORMAT_YCbCr_420_SP ? uv[1] : uv[0];
        int c = yy - 16, d = u - 128, e = v - 128;
        rgb[0] = clamp8(298 * c + 409 * e + 128);
        rgb[1] = clamp8(298 * c - 100 * d - 208 * e + 128);
        rgb[2] = clamp8(298 * c + 516 * d + 128);
        return;
    }
    }
}

static void put_rgb(const struct img *im, int x, int y, const uint8_t rgb[3]) {
    uint8_t *q = im->p + ((size_t)y * (size_t)im->ws + (size_t)x) * 3;
    int bgr = im->fmt == RK_FORMAT_BGR_888;
    q[0] = rgb[bgr ? 2 : 0];
    q[1] = rgb[1];
    q[2] = rgb[bgr ? 0 : 2];
}

/* The work of improcess / imresize_t / imcvtcolor_t / imcheck_t. */
static IM_STATUS process(int fn, rga_buffer_t src, rga_buffer_t dst, im_rect sr, im_rect dr,
                         int run) {
    struct img s, d;
    IM_STATUS st = resolve(fn, "src", &src, &s);
    if (st != IM_STATUS_SUCCESS) return st;
    st = resolve(fn, "dst", &dst, &d);
    if (st != IM_STATUS_SUCCESS) {
        img_done(&s);
        return st;
    }
    if (!is_rgb(d.fmt)) {
        violation(fn, "dst format 0x%x is not supported by the fake (RGB_888/BGR_888 only)",
                  (unsigned)d.fmt);
        st = IM_STATUS_NOT_SUPPORTED;
    } else if (!rect_ok(fn, "src", &s, &sr) || !rect_ok(fn, "dst", &d, &dr)) {
        st = IM_STATUS_INVALID_PARAM;
    } else if (run) {
        for (int dy = 0; dy < dr.height; dy++) {
            int sy = sr.y + (int)(((int64_t)(2 * dy + 1) * sr.height) / (2 * (int64_t)dr.height));
            for (int dx = 0; dx < dr.width; dx++) {
                int sx =
                    sr.x + (int)(((int64_t)(2 * dx + 1) * sr.width) / (2 * (int64_t)dr.width));
                uint8_t rgb[3];
                get_rgb(&s, sx, sy, rgb);
                put_rgb(&d, dr.x + dx, dr.y + dy, rgb);
            }
        }
    }
    img_done(&s);
    img_done(&d);
    return st;
}

/* ---- exported API ---- */

EXPORT rga_buffer_handle_t importbuffer_fd(int fd, im_handle_param_t *param) {
    enter(F_importbuffer_fd);
    rga_buffer_handle_t id = 0;
    if (!param) {
        violation(F_importbuffer_fd, "param is NULL");
        goto out;
    }
    size_t size = frame_size((int)param->format, param->width, param->height);
    if (size == 0) {
        violation(F_importbuffer_fd, "unsupported picture %ux%u format 0x%x", param->width,
                  param->height, param->format);
        goto out;
    }
    uint8_t *map = map_fd(F_importbuffer_fd, fd, size);
    if (!map) goto out;
    struct handle *h = calloc(1, sizeof *h);
    if (!h) {
        munmap(map, size);
        goto out;
    }
    h->id = g_next_handle++;
    h->alive = 1;
    h->fd = fd;
    struct stat st;
    if (fstat(fd, &st) == 0) {
        h->dev = st.st_dev;
        h->ino = st.st_ino;
    }
    h->wstride = param->width;
    h->hstride = param->height;
    h->format = param->format;
    h->map = map;
    h->size = size;
    h->next = g_handles;
    g_handles = h;
    if (++g_live_handles > g_max_live_handles) g_max_live_handles = g_live_handles;
    id = h->id;
out:
    leave();
    return id;
}

EXPORT IM_STATUS releasebuffer_handle(rga_buffer_handle_t handle) {
    enter(F_releasebuffer_handle);
    IM_STATUS st = IM_STATUS_SUCCESS;
    struct handle *h = find_handle(handle);
    if (!h) {
        violation(F_releasebuffer_handle, "handle %u was never imported", handle);
        st = IM_STATUS_INVALID_PARAM;
    } else if (!h->alive) {
        violation(F_releasebuffer_handle, "handle %u released twice", handle);
        st = IM_STATUS_INVALID_PARAM;
    } else {
        /* The memory under an import must outlive it: librga's kernel
         * driver keeps using the buffer until the release. A closed fd (or
         * its number reused for another file) means its owner freed it
         * first, as rknn_destroy_mem or mpp_buffer_group_put do. */
        struct stat now;
        if (!fd_is_open(h->fd) || fstat(h->fd, &now) != 0 || now.st_dev != h->dev ||
            now.st_ino != h->ino)
            violation(F_releasebuffer_handle,
                      "handle %u: fd %d was closed before its import was released (the "
                      "memory under an import must outlive it)",
                      handle, h->fd);
        munmap(h->map, h->size);
        h->map = NULL;
        h->alive = 0;
        g_live_handles--;
    }
    leave();
    return st;
}

static rga_buffer_t wrap(int fd, rga_buffer_handle_t handle, int w, int h, int ws, int hs,
                         int fmt) {
    rga_buffer_t b;
    memset(&b, 0, sizeof b);
    b.fd = fd;
    b.handle = handle;
    b.width = w;
    b.height = h;
    b.wstride = ws ? ws : w;
    b.hstride = hs ? hs : h;
    b.format = fmt;
    b.global_alpha = 0xff;
    return b;
}

EXPORT rga_buffer_t wrapbuffer_handle_t(rga_buffer_handle_t handle, int width, int height,
                                        int wstride, int hstride, int format) {
    enter(F_wrapbuffer_handle_t);
    struct handle *hd = find_handle(handle);
    if (!hd)
        violation(F_wrapbuffer_handle_t, "handle %u was never imported", handle);
    else if (!hd->alive)
        violation(F_wrapbuffer_handle_t, "handle %u used after releasebuffer_handle", handle);
    rga_buffer_t b = wrap(0, handle, width, height, wstride, hstride, format);
    leave();
    return b;
}

EXPORT rga_buffer_t wrapbuffer_fd_t(int fd, int width, int height, int wstride, int hstride,
                                    int format) {
    enter(F_wrapbuffer_fd_t);
    if (!fd_is_open(fd)) violation(F_wrapbuffer_fd_t, "fd %d is not an open file descriptor", fd);
    rga_buffer_t b = wrap(fd, 0, width, height, wstride, hstride, format);
    leave();
    return b;
}

EXPORT IM_STATUS improcess(rga_buffer_t src, rga_buffer_t dst, rga_buffer_t pat, im_rect srect,
                           im_rect drect, im_rect prect, int usage) {
    (void)prect;
    (void)usage;
    enter(F_improcess);
    IM_STATUS st = IM_STATUS_SUCCESS;
    if (pat.handle != 0) { /* ignored, but a bad handle is still misuse */
        struct handle *h = find_handle(pat.handle);
        if (!h || !h->alive) {
            violation(F_improcess, "pat: handle %u is %s", pat.handle,
                      h ? "released" : "never imported");
            st = IM_STATUS_INVALID_PARAM;
        }
    }
    if (st == IM_STATUS_SUCCESS) st = process(F_improcess, src, dst, srect, drect, 1);
    leave();
    return st;
}

EXPORT IM_STATUS imcheck_t(const rga_buffer_t src, const rga_buffer_t dst, const rga_buffer_t pat,
                           const im_rect src_rect, const im_rect dst_rect, const im_rect pat_rect,
                           const int mode_usage) {
    (void)pat;
    (void)pat_rect;
    (void)mode_usage;
    enter(F_imcheck_t);
    IM_STATUS st = process(F_imcheck_t, src, dst, src_rect, dst_rect, 0);
    leave();
    return st == IM_STATUS_SUCCESS ? IM_STATUS_NOERROR : st;
}

EXPORT IM_STATUS imresize_t(const rga_buffer_t src, rga_buffer_t dst, double fx, double fy,
                            int interpolation, int sync) {
    (void)interpolation;
    (void)sync;
    enter(F_imresize_t);
    IM_STATUS st;
    im_rect zero = {0, 0, 0, 0};
    if (fx < 0 || fy < 0 || fx != fx || fy != fy) {
        violation(F_imresize_t, "bad scale factors");
        st = IM_STATUS_INVALID_PARAM;
    } else {
        if (fx > 0 && fy > 0) { /* like librga: the factors set the dst size */
            dst.width = (int)(src.width * fx + 0.5);
            dst.height = (int)(src.height * fy + 0.5);
        }
        st = process(F_imresize_t, src, dst, zero, zero, 1);
    }
    leave();
    return st;
}

EXPORT IM_STATUS imcvtcolor_t(rga_buffer_t src, rga_buffer_t dst, int sfmt, int dfmt, int mode,
                              int sync) {
    (void)sync;
    enter(F_imcvtcolor_t);
    im_rect zero = {0, 0, 0, 0};
    src.format = sfmt;
    dst.format = dfmt;
    if (mode != 0 && mode != 1 /* IM_YUV_TO_RGB_BT601_LIMIT */)
        violation(F_imcvtcolor_t, "colour mode 0x%x is computed as BT.601 limited by the fake",
                  (unsigned)mode);
    IM_STATUS st = process(F_imcvtcolor_t, src, dst, zero, zero, 1);
    leave();
    return st;
}

EXPORT IM_STATUS imfill_t(rga_buffer_t dst, im_rect rect, int color, int sync) {
    (void)sync;
    enter(F_imfill_t);
    struct img d;
    IM_STATUS st = resolve(F_imfill_t, "dst", &dst, &d);
    if (st == IM_STATUS_SUCCESS) {
        if (!is_rgb(d.fmt)) {
            violation(F_imfill_t, "dst format 0x%x is not supported by the fake", (unsigned)d.fmt);
            st = IM_STATUS_NOT_SUPPORTED;
        } else if (!rect_ok(F_imfill_t, "fill", &d, &rect)) {
            st = IM_STATUS_INVALID_PARAM;
        } else {
            uint32_t c = (uint32_t)color;
            uint8_t rgb[3] = {(uint8_t)(c & 0xff), (uint8_t)((c >> 8) & 0xff),
                              (uint8_t)((c >> 16) & 0xff)};
            for (int y = rect.y; y < rect.y + rect.height; y++)
                for (int x = rect.x; x < rect.x + rect.width; x++) put_rgb(&d, x, y, rgb);
        }
        img_done(&d);
    }
    leave();
    return st;
}

EXPORT const char *imStrError_t(IM_STATUS status) {
    enter(F_imStrError_t);
    leave();
    switch (status) {
    case IM_STATUS_NOERROR: return "No errors during operation";
    case IM_STATUS_SUCCESS: return "Run successfully";
    case IM_STATUS_NOT_SUPPORTED: return "Unsupported function";
    case IM_STATUS_OUT_OF_MEMORY: return "Memory overflow";
    case IM_STATUS_INVALID_PARAM: return "Invalid parameters";
    case IM_STATUS_ILLEGAL_PARAM: return "Illegal parameters";
    case IM_STATUS_ERROR_VERSION: return "Version verification failed";
    case IM_STATUS_NO_SESSION: return "No session";
    case IM_STATUS_FAILED: return "Fatal error";
    default: return "unknown status";
    }
}

/* ---- test-only report ---- */

EXPORT size_t fake_rga_report(char *buf, size_t cap) {
    struct sbuf b = {0};
    pthread_mutex_lock(&g_lock);
    sb_put(&b, "{\"calls\":{", 10);
    sb_call_counts(&b, fn_names, g_calls, F_COUNT, 0);
    sb_printf(&b, "},\"live\":{\"handles\":%ld},\"max_live\":{\"handles\":%ld},\"violations\":[",
              g_live_handles, g_max_live_handles);
    sb_json_strs(&b, g_viol.msg, g_viol.n);
    sb_printf(&b, "],\"violations_dropped\":%zu,\"rgb2_over_4g\":%lu}", g_viol.dropped,
              g_rga2_over_4g);
    pthread_mutex_unlock(&g_lock);
    return sb_finish(&b, buf, cap);
}

EXPORT void fake_rga_reset(void) {
    pthread_mutex_lock(&g_lock);
    memset(g_calls, 0, sizeof g_calls);
    vlog_clear(&g_viol);
    /* Live mappings are left mapped (the caller may still use them);
     * only the records go. */
    while (g_handles) {
        struct handle *h = g_handles;
        g_handles = h->next;
        free(h);
    }
    g_live_handles = 0;
    g_max_live_handles = 0;
    g_rga2_over_4g = 0;
    pthread_mutex_unlock(&g_lock);
}

/* With FAKE_REPORT_DIR set, the report is also written to
 * $FAKE_REPORT_DIR/fake_rga.json whenever the library is unloaded (dlclose
 * or process exit; the last unload wins), so a test can check the pairs of a
 * process it only runs, such as the vigil binary. */
__attribute__((destructor)) static void fake_rga_write_report(void) {
    fake_write_report("fake_rga.json", fake_rga_report);
}
