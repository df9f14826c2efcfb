/*
 * fake_mpp.c: a test double of Rockchip's librockchip_mpp.so (the decoder
 * part of the MPI C API, per rockchip-api.md) for vigil.
 *
 * Build: cc -std=c11 -O1 -g -shared -fPIC -Wall -Wextra -Werror \
 *          -o librockchip_mpp.so fake_mpp.c -lpthread
 * (C11 + libc/POSIX/Linux only; also builds with aarch64-linux-gnu-gcc.)
 *
 * Synthetic stream. Each packet is one access unit. If its bytes (pos,
 * length) start with "VGLFAKE1" followed by u32 LE width, height and frame
 * number (20 bytes), those give the picture; otherwise the picture has the
 * last known size (default 640x360) and the previous number + 1. The packet
 * is parsed (i.e. copied) inside decode_put_packet, so the caller may reuse
 * its buffer at once. An empty packet without EOS is accepted and ignored.
 *
 * Decoder (per context): input queue of 4 packets (decode_put_packet returns
 * MPP_ERR_BUFFER_FULL -1012 when 4 are pending). decode_get_frame never
 * blocks; for the first pending packet:
 *   - size differs from the configured one (or none yet): ONE info-change
 *     frame (info_change 1, width, height, hor_stride = ALIGN(w,16),
 *     ver_stride = ALIGN(h,16), fmt 0, buf_size = hs*vs*3/2, no buffer);
 *     then nothing until control(MPP_DEC_SET_INFO_CHANGE_READY). READY needs
 *     a group attached with MPP_DEC_SET_EXT_BUF_GROUP (else a violation and
 *     READY fails); an internal group without limit_config, or with a limit
 *     size below buf_size, is a violation at READY too.
 *   - else a free buffer of the attached group is taken (internal group:
 *     lazily allocated memfds, mmap'ed, each max(limit size, buf_size), at
 *     most limit count of them; external group: an imported buffer with
 *     refcount 0 and size >= buf_size). None free: returns 0 with NULL and
 *     counts a stall. The buffer is filled: every Y byte (hs*vs) = number %
 *     251, every UV byte (hs*vs/2) = 128; the frame (pts = packet pts) holds
 *     one reference on it until mpp_frame_deinit.
 *   - an EOS packet gives, after its picture if it had data, a frame with
 *     eos 1 and no buffer.
 *   Nothing pending: 0 with NULL (or MPP_ERR_TIMEOUT -8 at once when the
 *   output timeout was set > 0; the fake never waits).
 * reset(ctx) before mpp_init is a violation (MPP answers MPP_ERR_INIT);
 * reset(ctx) drops pending packets and an undelivered/unacknowledged info
 * change; the configured size stays, so the same size needs no new info
 * change. Frames already returned stay valid until deinit'ed.
 *
 * Handles are pointers into slabs owned by the fake; each starts with a
 * magic per kind (ctx, packet, frame, buffer, group, cfg). Released handles
 * are marked dead and kept in a quarantine of the last 1024 releases before
 * their memory is reused, so a stale handle (use after free, double free) or
 * a foreign pointer is recorded as a violation ("function: message") and the
 * call fails (-1 / 0 / NULL) instead of crashing. Memory of freed buffers is
 * replaced by anonymous zero pages (kept for the last 16 frees) so a stale
 * CPU pointer reads zeros instead of faulting.
 *
 * Test-only exports:
 *   size_t fake_mpp_report(char *buf, size_t cap): one line of JSON,
 *     {"calls":{fn:N,...only functions called...},
 *      "live":{"ctx":N,"packet":N,"frame":N,"group":N,"cfg":N,
 *              "buffer_refs":N,"fds":N},
 *      "max_live":{...same keys...},
 *      "frames_out":N,"info_changes":N,"stalls":N,"refused":N,
 *      "violations":["fn: message",...],"violations_dropped":N}
 *     NUL-terminated, truncated to cap; returns the full length.
 *     "calls" also counts the vtable entries as "decode_put_packet",
 *     "decode_get_frame", "reset", "control" (and the unmodelled ones).
 *     "refused" counts calls MPP itself refuses without it being a bug of
 *     the caller's pairing (EXT_BUF_GROUP before mpp_init).
 *   int fake_mpp_inject(const char *fault): arms one failure of the next
 *     call it names: "mpp_create:null_api" (returns MPP_OK and a live
 *     context but a NULL MppApi*; the context must still be destroyed) or
 *     "mpp_init:fail" (returns MPP_NOK; the context stays uninitialised, so
 *     a reset on it is a violation). 0, or -1 for an unknown fault.
 *   void fake_mpp_reset(void): forgets counters and violations; anything
 *     still live is marked dead (its memfds closed) so stale handles stay
 *     detectable.
 */
#define _GNU_SOURCE
#include <errno.h>
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

typedef int32_t MPP_RET;
typedef void *MppCtx;
typedef void *MppPacket;
typedef void *MppFrame;
typedef void *MppBuffer;
typedef void *MppBufferGroup;
typedef void *MppDecCfg;
typedef void *MppTask;

#define MPP_OK 0
#define MPP_NOK (-1)
#define MPP_ERR_NULL_PTR (-3)
#define MPP_ERR_TIMEOUT (-8)
#define MPP_ERR_BUFFER_FULL (-1012)

enum {
    CMD_SET_INPUT_TIMEOUT = 0x200006,
    CMD_SET_OUTPUT_TIMEOUT = 0x200007,
    CMD_DEC_SET_EXT_BUF_GROUP = 0x310002,
    CMD_DEC_SET_INFO_CHANGE_READY = 0x310003,
    CMD_DEC_SET_PARSER_SPLIT_MODE = 0x310005,
    CMD_DEC_SET_OUTPUT_FORMAT = 0x31000A,
    CMD_DEC_SET_DISABLE_ERROR = 0x31000B,
    CMD_DEC_SET_IMMEDIATE_OUT = 0x31000C,
    CMD_DEC_SET_CFG = 0x310201,
    CMD_DEC_GET_CFG = 0x310202,
};

#define BUFFER_TYPE_MASK 0xFFFFu
#define BUFFER_INTERNAL 0
#define BUFFER_EXTERNAL 1

typedef struct {
    uint32_t type;
    size_t size;
    void *ptr;
    void *hnd;
    int32_t fd;
    int32_t index;
} MppBufferInfo;

_Static_assert(sizeof(void *) != 8 || sizeof(MppBufferInfo) == 40, "MppBufferInfo is 40 bytes");
_Static_assert(sizeof(void *) != 8 || offsetof(MppBufferInfo, fd) == 32, "MppBufferInfo.fd @32");

typedef struct {
    uint32_t size;
    uint32_t version;
    MPP_RET (*decode)(MppCtx, MppPacket, MppFrame *);
    MPP_RET (*decode_put_packet)(MppCtx, MppPacket);
    MPP_RET (*decode_get_frame)(MppCtx, MppFrame *);
    MPP_RET (*encode)(MppCtx, MppFrame, MppPacket *);
    MPP_RET (*encode_put_frame)(MppCtx, MppFrame);
    MPP_RET (*encode_get_packet)(MppCtx, MppPacket *);
    MPP_RET (*isp)(MppCtx, MppFrame, MppFrame);
    MPP_RET (*isp_put_frame)(MppCtx, MppFrame);
    MPP_RET (*isp_get_frame)(MppCtx, MppFrame *);
    MPP_RET (*poll)(MppCtx, int, int);
    MPP_RET (*dequeue)(MppCtx, int, MppTask *);
    MPP_RET (*enqueue)(MppCtx, int, MppTask);
    MPP_RET (*reset)(MppCtx);
    MPP_RET (*control)(MppCtx, int, void *);
    uint32_t reserv[16];
} MppApi;

_Static_assert(sizeof(void *) != 8 || sizeof(MppApi) == 184, "MppApi is 184 bytes");
_Static_assert(sizeof(void *) != 8 || offsetof(MppApi, decode_put_packet) == 16, "@16");
_Static_assert(sizeof(void *) != 8 || offsetof(MppApi, decode_get_frame) == 24, "@24");
_Static_assert(sizeof(void *) != 8 || offsetof(MppApi, reset) == 104, "@104");
_Static_assert(sizeof(void *) != 8 || offsetof(MppApi, control) == 112, "@112");
_Static_assert(sizeof(void *) != 8 || offsetof(MppApi, reserv) == 120, "@120");

/* ---- call counting ---- */

#define FN_LIST(X)                                                                                 \
    X(mpp_create) X(mpp_init) X(mpp_destroy) X(mpp_packet_init) X(mpp_packet_deinit)               \
    X(mpp_packet_set_data) X(mpp_packet_set_pos) X(mpp_packet_set_size) X(mpp_packet_set_length)   \
    X(mpp_packet_set_pts) X(mpp_packet_set_eos) X(mpp_frame_deinit) X(mpp_frame_get_info_change)   \
    X(mpp_frame_get_eos) X(mpp_frame_get_errinfo) X(mpp_frame_get_discard) X(mpp_frame_get_width)  \
    X(mpp_frame_get_height) X(mpp_frame_get_hor_stride) X(mpp_frame_get_ver_stride)                \
    X(mpp_frame_get_buf_size) X(mpp_frame_get_fmt) X(mpp_frame_get_pts) X(mpp_frame_get_buffer)    \
    X(mpp_buffer_group_get) X(mpp_buffer_group_put) X(mpp_buffer_group_clear)                      \
    X(mpp_buffer_group_limit_config) X(mpp_buffer_group_usage) X(mpp_buffer_group_unused)          \
    X(mpp_buffer_get_fd_with_caller) X(mpp_buffer_get_ptr_with_caller)                             \
    X(mpp_buffer_get_size_with_caller) X(mpp_buffer_put_with_caller)                               \
    X(mpp_buffer_inc_ref_with_caller) X(mpp_buffer_import_with_tag) X(mpp_dec_cfg_init)            \
    X(mpp_dec_cfg_deinit) X(mpp_dec_cfg_set_u32) X(decode) X(decode_put_packet)                    \
    X(decode_get_frame) X(encode) X(encode_put_frame) X(encode_get_packet) X(isp)                  \
    X(isp_put_frame) X(isp_get_frame) X(poll) X(dequeue) X(enqueue) X(reset) X(control)

#define X_ENUM(n) F_##n,
enum { FN_LIST(X_ENUM) F_COUNT };
#define X_NAME(n) #n,
static const char *const fn_names[F_COUNT] = {FN_LIST(X_NAME)};

/* ---- objects ---- */

enum kind { K_CTX, K_PACKET, K_FRAME, K_BUFFER, K_GROUP, K_CFG, K_COUNT };
static const char *const kind_names[K_COUNT] = {"ctx", "packet", "frame", "buffer", "group", "cfg"};
static const uint32_t kind_magic[K_COUNT] = {0x4d435458u, 0x4d504b54u, 0x4d46524du,
                                             0x4d425546u, 0x4d475250u, 0x4d434647u};
#define MAGIC_DEAD 0xdeadbeefu

struct obj;

struct pend {
    uint32_t w, h, num;
    int64_t pts;
    int has_data, eos;
};

struct ctx_s {
    int inited;
    struct obj *group;
    int waiting_ready;      /* info change delivered, READY not yet seen */
    uint32_t cfg_w, cfg_h;  /* configured size (0: none) */
    uint32_t info_w, info_h;
    struct pend q[4];
    int qhead, qn;
    uint32_t last_w, last_h, next_num;
    int32_t out_timeout;
    uint32_t split, disable_error, immediate_out;
};

struct pkt_s {
    void *data, *pos;
    size_t size, length;
    int64_t pts;
    int eos;
};

struct frame_s {
    uint32_t info_change, eos, errinfo, discard, w, h, hs, vs, fmt;
    size_t buf_size;
    int64_t pts;
    struct obj *buf;
};

struct group_s {
    uint32_t type;
    int mode;
    size_t limit_size;
    int32_t limit_count;
    struct obj *head; /* buffers of this group (discarded ones included) */
};

struct buf_s {
    struct obj *group; /* NULL once orphaned by group_put */
    struct obj *next;
    int fd;
    int owned_fd; /* memfd made by the fake (else imported, the app's) */
    int fd_lost;
    dev_t dev;
    ino_t ino;
    void *ptr;
    size_t size;
    int32_t refs;     /* frames + app */
    int32_t app_refs; /* inc_ref/import minus put */
    int discard;
};

struct cfg_s {
    uint32_t split, fast_out, disable_error;
};

struct obj {
    uint32_t magic;
    uint32_t kind;
    struct obj *qnext; /* quarantine FIFO link */
    union {
        struct ctx_s c;
        struct pkt_s p;
        struct frame_s f;
        struct group_s g;
        struct buf_s b;
        struct cfg_s cfg;
    } u;
};

#define SLAB_OBJS 256
#define QUARANTINE 1024

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static struct obj **g_slabs;
static size_t g_nslabs, g_slab_cap, g_slab_used; /* used objs in the last slab */
static struct obj *g_qhead, *g_qtail;
static size_t g_qlen;

static unsigned long g_calls[F_COUNT];
enum { L_CTX, L_PACKET, L_FRAME, L_GROUP, L_CFG, L_BUFREFS, L_FDS, L_COUNT };
static const char *const live_names[L_COUNT] = {"ctx",         "packet", "frame", "group", "cfg",
                                                "buffer_refs", "fds"};
static long g_live[L_COUNT], g_max_live[L_COUNT];
static unsigned long g_frames_out, g_info_changes, g_stalls, g_refused;

#define MAX_VIOL 64
static char *g_viol_msg[MAX_VIOL];
static struct vlog g_viol = {g_viol_msg, MAX_VIOL, 0, 0};

static void violation(int fn, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void violation(int fn, const char *fmt, ...) {
    char msg[320];
    va_list ap;
    va_start(ap, fmt);
    vlog_vformat(msg, sizeof msg, fn_names[fn], fmt, ap);
    va_end(ap);
    vlog_add(&g_viol, msg);
}

static void live_add(int which, long d) {
    g_live[which] += d;
    if (g_live[which] > g_max_live[which]) g_max_live[which] = g_live[which];
}

static struct obj *obj_new(enum kind k) {
    struct obj *o = NULL;
    if (g_qlen > QUARANTINE) {
        o = g_qhead;
        g_qhead = o->qnext;
        if (!g_qhead) g_qtail = NULL;
        g_qlen--;
    } else {
        if (g_nslabs == 0 || g_slab_used == SLAB_OBJS) {
            if (g_nslabs == g_slab_cap) {
                size_t cap = g_slab_cap ? g_slab_cap * 2 : 16;
                struct obj **s = realloc(g_slabs, cap * sizeof *s);
                if (!s) return NULL;
                g_slabs = s;
                g_slab_cap = cap;
            }
            struct obj *slab = calloc(SLAB_OBJS, sizeof(struct obj));
            if (!slab) return NULL;
            g_slabs[g_nslabs++] = slab;
            g_slab_used = 0;
        }
        o = &g_slabs[g_nslabs - 1][g_slab_used++];
    }
    memset(o, 0, sizeof *o);
    o->magic = kind_magic[k];
    o->kind = (uint32_t)k;
    return o;
}

static void obj_kill(struct obj *o) {
    o->magic = MAGIC_DEAD;
    o->qnext = NULL;
    if (g_qtail)
        g_qtail->qnext = o;
    else
        g_qhead = o;
    g_qtail = o;
    g_qlen++;
}

/* Is p one of our objects (live or dead)? Never dereferences foreign memory. */
static int obj_known(const void *p) {
    uintptr_t a = (uintptr_t)p;
    for (size_t i = 0; i < g_nslabs; i++) {
        uintptr_t base = (uintptr_t)g_slabs[i];
        size_t n = (i == g_nslabs - 1) ? g_slab_used : SLAB_OBJS;
        if (a >= base && a < base + n * sizeof(struct obj))
            return (a - base) % sizeof(struct obj) == 0;
    }
    return 0;
}

static struct obj *check(const void *h, enum kind k, int fn) {
    if (!h) {
        violation(fn, "NULL %s", kind_names[k]);
        return NULL;
    }
    if (!obj_known(h)) {
        violation(fn, "foreign pointer %p is not a %s handle", h, kind_names[k]);
        return NULL;
    }
    struct obj *o = (struct obj *)h;
    if (o->magic == kind_magic[k]) return o;
    if (o->magic == MAGIC_DEAD && o->kind == (uint32_t)k) {
        violation(fn, "%s used after it was released", kind_names[k]);
        return NULL;
    }
    if (o->magic == MAGIC_DEAD) {
        violation(fn, "a released %s passed where a %s belongs", kind_names[o->kind],
                  kind_names[k]);
        return NULL;
    }
    violation(fn, "a %s passed where a %s belongs", kind_names[o->kind], kind_names[k]);
    return NULL;
}

#define ENTER(fn)                                                                                  \
    pthread_mutex_lock(&g_lock);                                                                   \
    g_calls[fn]++
#define LEAVE() pthread_mutex_unlock(&g_lock)

/* ---- buffers ---- */

#define GRAVE 16
static struct {
    void *p;
    size_t n;
} g_grave[GRAVE];
static size_t g_grave_next;

/* Replaces a mapping by anonymous zero pages, unmapped GRAVE frees later. */
static void unmap_later(void *p, size_t n) {
    if (!p || !n) return;
    void *r = mmap(p, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (r == MAP_FAILED) {
        munmap(p, n);
        return;
    }
    size_t i = g_grave_next++ % GRAVE;
    if (g_grave[i].p) munmap(g_grave[i].p, g_grave[i].n);
    g_grave[i].p = p;
    g_grave[i].n = n;
}

/* The buffer's memfd is still the one the fake made. */
static int fd_ok(struct obj *b, int fn) {
    if (!b->u.b.owned_fd) return 1;
    if (b->u.b.fd_lost) return 0;
    struct stat st;
    if (fcntl(b->u.b.fd, F_GETFD) == -1 || fstat(b->u.b.fd, &st) != 0 ||
        st.st_dev != b->u.b.dev || st.st_ino != b->u.b.ino) {
        violation(fn, "fd %d closed by the app (MPP owns frame buffer fds)", b->u.b.fd);
        b->u.b.fd_lost = 1;
        live_add(L_FDS, -1);
        return 0;
    }
    return 1;
}

static void group_unlink(struct obj *b) {
    struct obj *g = b->u.b.group;
    if (!g) return;
    for (struct obj **pp = &g->u.g.head; *pp; pp = &(*pp)->u.b.next) {
        if (*pp == b) {
            *pp = b->u.b.next;
            break;
        }
    }
    b->u.b.group = NULL;
    b->u.b.next = NULL;
}

static void buf_free(struct obj *b, int fn) {
    group_unlink(b);
    if (b->u.b.owned_fd && fd_ok(b, fn)) {
        close(b->u.b.fd);
        live_add(L_FDS, -1);
    }
    unmap_later(b->u.b.ptr, b->u.b.size);
    obj_kill(b);
}

static void buf_unref(struct obj *b, int fn) {
    if (--b->u.b.refs <= 0) {
        b->u.b.refs = 0;
        if (b->u.b.discard || !b->u.b.group) buf_free(b, fn);
    }
}

static struct obj *buf_alloc(struct obj *g, size_t size, int fn) {
    int fd = memfd_create("fake-mpp-frame", MFD_CLOEXEC);
    if (fd < 0) {
        violation(fn, "memfd_create failed (errno %d)", errno);
        return NULL;
    }
    struct stat st;
    void *p = MAP_FAILED;
    if (ftruncate(fd, (off_t)size) == 0 && fstat(fd, &st) == 0)
        p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    struct obj *b = p == MAP_FAILED ? NULL : obj_new(K_BUFFER);
    if (!b) {
        violation(fn, "cannot allocate a %zu byte frame buffer (errno %d)", size, errno);
        if (p != MAP_FAILED) munmap(p, size);
        close(fd);
        return NULL;
    }
    b->u.b.fd = fd;
    b->u.b.owned_fd = 1;
    b->u.b.dev = st.st_dev;
    b->u.b.ino = st.st_ino;
    b->u.b.ptr = p;
    b->u.b.size = size;
    b->u.b.group = g;
    b->u.b.next = g->u.g.head;
    g->u.g.head = b;
    live_add(L_FDS, 1);
    return b;
}

/* A free buffer of at least `need` bytes, or NULL (stall). */
static struct obj *take_buffer(struct obj *g, size_t need, int fn) {
    int alive = 0;
    struct obj *b = g->u.g.head;
    while (b) {
        struct obj *next = b->u.b.next;
        if (!b->u.b.discard) {
            if (b->u.b.refs == 0 && b->u.b.size >= need && fd_ok(b, fn)) return b;
            if (g->u.g.mode == BUFFER_INTERNAL && b->u.b.refs == 0) {
                buf_free(b, fn); /* too small (or its fd lost): reallocate */
            } else {
                alive++;
            }
        }
        b = next;
    }
    if (g->u.g.mode != BUFFER_INTERNAL) return NULL;
    if (g->u.g.limit_count > 0 && alive >= g->u.g.limit_count) return NULL;
    size_t size = g->u.g.limit_size > need ? g->u.g.limit_size : need;
    return buf_alloc(g, size, fn);
}

/* ---- vtable ---- */

static uint32_t align16(uint32_t v) { return (v + 15u) & ~15u; }

static void pend_pop(struct ctx_s *c) {
    c->qhead = (c->qhead + 1) % 4;
    c->qn--;
}

static MPP_RET api_decode_put_packet(MppCtx ctx, MppPacket pkt) {
    ENTER(F_decode_put_packet);
    MPP_RET ret = MPP_NOK;
    struct obj *o = check(ctx, K_CTX, F_decode_put_packet);
    struct obj *p = o ? check(pkt, K_PACKET, F_decode_put_packet) : NULL;
    if (!o || !p) goto out;
    struct ctx_s *c = &o->u.c;
    if (!c->inited) {
        violation(F_decode_put_packet, "out of order: called before mpp_init");
        goto out;
    }
    const struct pkt_s *k = &p->u.p;
    if (k->length > 0 && !k->pos) {
        violation(F_decode_put_packet, "packet has length %zu but no pos/data", k->length);
        goto out;
    }
    if (k->data && k->length > 0 &&
        ((const char *)k->pos < (const char *)k->data ||
         (const char *)k->pos + k->length > (const char *)k->data + k->size)) {
        violation(F_decode_put_packet, "pos+length (%zu) outside data+size (%zu)", k->length,
                  k->size);
        goto out;
    }
    if (k->length == 0 && !k->eos) {
        ret = MPP_OK; /* nothing to decode */
        goto out;
    }
    if (c->qn >= 4) {
        ret = MPP_ERR_BUFFER_FULL;
        goto out;
    }
    struct pend e = {c->last_w, c->last_h, c->next_num, k->pts, k->length > 0, k->eos};
    if (k->length >= 20 && memcmp(k->pos, "VGLFAKE1", 8) == 0) {
        const unsigned char *d = (const unsigned char *)k->pos + 8;
        uint32_t v[3];
        for (int i = 0; i < 3; i++)
            v[i] = (uint32_t)d[4 * i] | (uint32_t)d[4 * i + 1] << 8 |
                   (uint32_t)d[4 * i + 2] << 16 | (uint32_t)d[4 * i + 3] << 24;
        if (v[0] >= 16 && v[1] >= 16 && v[0] <= 8192 && v[1] <= 8192) {
            e.w = v[0];
            e.h = v[1];
            e.num = v[2];
        }
    }
    if (e.has_data) {
        c->last_w = e.w;
        c->last_h = e.h;
        c->next_num = e.num + 1;
    }
    c->q[(c->qhead + c->qn) % 4] = e;
    c->qn++;
    ret = MPP_OK;
out:
    LEAVE();
    return ret;
}

static struct obj *frame_new(void) {
    struct obj *f = obj_new(K_FRAME);
    if (f) live_add(L_FRAME, 1);
    return f;
}

static MPP_RET api_decode_get_frame(MppCtx ctx, MppFrame *out) {
    ENTER(F_decode_get_frame);
    MPP_RET ret = MPP_NOK;
    struct obj *o = check(ctx, K_CTX, F_decode_get_frame);
    if (!out) {
        if (o) violation(F_decode_get_frame, "NULL MppFrame* out-pointer");
        goto out;
    }
    *out = NULL;
    if (!o) goto out;
    struct ctx_s *c = &o->u.c;
    if (!c->inited) {
        violation(F_decode_get_frame, "out of order: called before mpp_init");
        goto out;
    }
    ret = MPP_OK;
    if (c->waiting_ready) goto none;
    while (c->qn > 0) {
        struct pend *e = &c->q[c->qhead];
        if (!e->has_data) {
            pend_pop(c);
            if (!e->eos) continue;
            struct obj *f = frame_new();
            if (!f) {
                ret = MPP_NOK;
                goto out;
            }
            f->u.f.eos = 1;
            f->u.f.w = c->cfg_w;
            f->u.f.h = c->cfg_h;
            f->u.f.hs = align16(c->cfg_w);
            f->u.f.vs = align16(c->cfg_h);
            f->u.f.pts = e->pts;
            *out = f;
            goto out;
        }
        uint32_t hs = align16(e->w), vs = align16(e->h);
        size_t buf_size = (size_t)hs * vs * 3 / 2;
        struct obj *f;
        if (e->w != c->cfg_w || e->h != c->cfg_h) {
            if (!(f = frame_new())) {
                ret = MPP_NOK;
                goto out;
            }
            f->u.f.info_change = 1;
            f->u.f.w = e->w;
            f->u.f.h = e->h;
            f->u.f.hs = hs;
            f->u.f.vs = vs;
            f->u.f.buf_size = buf_size;
            f->u.f.pts = e->pts;
            c->waiting_ready = 1;
            c->info_w = e->w;
            c->info_h = e->h;
            g_info_changes++;
            *out = f;
            goto out;
        }
        if (!c->group) {
            violation(F_decode_get_frame, "no buffer group attached (it was put?)");
            ret = MPP_NOK;
            goto out;
        }
        struct obj *b = take_buffer(c->group, buf_size, F_decode_get_frame);
        if (!b) {
            g_stalls++;
            goto out;
        }
        if (!(f = frame_new())) {
            ret = MPP_NOK;
            goto out;
        }
        size_t luma = (size_t)hs * vs;
        memset(b->u.b.ptr, (int)(e->num % 251), luma);
        memset((char *)b->u.b.ptr + luma, 128, buf_size - luma);
        b->u.b.refs++;
        f->u.f.w = e->w;
        f->u.f.h = e->h;
        f->u.f.hs = hs;
        f->u.f.vs = vs;
        f->u.f.buf_size = buf_size;
        f->u.f.pts = e->pts;
        f->u.f.buf = b;
        g_frames_out++;
        if (e->eos)
            e->has_data = 0; /* its EOS frame comes next */
        else
            pend_pop(c);
        *out = f;
        goto out;
    }
none:
    if (c->out_timeout > 0) ret = MPP_ERR_TIMEOUT;
out:
    LEAVE();
    return ret;
}

static void ctx_detach_group(struct ctx_s *c) {
    c->group = NULL;
}

static MPP_RET api_reset(MppCtx ctx) {
    ENTER(F_reset);
    MPP_RET ret = MPP_NOK;
    struct obj *o = check(ctx, K_CTX, F_reset);
    if (o && !o->u.c.inited) {
        /* MPP answers MPP_ERR_INIT: there is nothing to reset yet. */
        violation(F_reset, "out of order: called before mpp_init");
    } else if (o) {
        struct ctx_s *c = &o->u.c;
        c->qn = 0;
        c->qhead = 0;
        c->waiting_ready = 0;
        ret = MPP_OK;
    }
    LEAVE();
    return ret;
}

static int need_param(void *param, int fn, const char *cmd) {
    if (param) return 1;
    violation(fn, "%s needs a parameter", cmd);
    return 0;
}

static MPP_RET api_control(MppCtx ctx, int cmd, void *param) {
    ENTER(F_control);
    MPP_RET ret = MPP_NOK;
    struct obj *o = check(ctx, K_CTX, F_control);
    if (!o) goto out;
    struct ctx_s *c = &o->u.c;
    switch (cmd) {
    case CMD_SET_INPUT_TIMEOUT:
        ret = MPP_OK;
        break;
    case CMD_SET_OUTPUT_TIMEOUT:
        /* MPP reads an MppPollType (32 bits): the low half of an i64 on LE. */
        if (need_param(param, F_control, "MPP_SET_OUTPUT_TIMEOUT")) {
            c->out_timeout = *(const int32_t *)param;
            ret = MPP_OK;
        }
        break;
    case CMD_DEC_SET_PARSER_SPLIT_MODE:
        if (need_param(param, F_control, "MPP_DEC_SET_PARSER_SPLIT_MODE")) {
            c->split = *(const uint32_t *)param;
            ret = MPP_OK;
        }
        break;
    case CMD_DEC_SET_DISABLE_ERROR:
        if (need_param(param, F_control, "MPP_DEC_SET_DISABLE_ERROR")) {
            c->disable_error = *(const uint32_t *)param;
            ret = MPP_OK;
        }
        break;
    case CMD_DEC_SET_IMMEDIATE_OUT:
        if (need_param(param, F_control, "MPP_DEC_SET_IMMEDIATE_OUT")) {
            c->immediate_out = *(const uint32_t *)param;
            ret = MPP_OK;
        }
        break;
    case CMD_DEC_SET_OUTPUT_FORMAT:
        if (need_param(param, F_control, "MPP_DEC_SET_OUTPUT_FORMAT")) {
            if (*(const uint32_t *)param == 0)
                ret = MPP_OK;
            else
                violation(F_control, "MPP_DEC_SET_OUTPUT_FORMAT %u: the fake only outputs NV12",
                          *(const uint32_t *)param);
        }
        break;
    case CMD_DEC_SET_CFG:
    case CMD_DEC_GET_CFG: {
        struct obj *k = check(param, K_CFG, F_control);
        if (!k) break;
        if (cmd == CMD_DEC_SET_CFG) {
            c->split = k->u.cfg.split;
            c->immediate_out = k->u.cfg.fast_out;
            c->disable_error = k->u.cfg.disable_error;
        } else {
            k->u.cfg.split = c->split;
            k->u.cfg.fast_out = c->immediate_out;
            k->u.cfg.disable_error = c->disable_error;
        }
        ret = MPP_OK;
        break;
    }
    case CMD_DEC_SET_EXT_BUF_GROUP: {
        if (!c->inited) {
            g_refused++; /* MPP refuses it before mpp_init: not a violation */
            break;
        }
        if (!param) {
            violation(F_control,
                      "MPP_DEC_SET_EXT_BUF_GROUP NULL: MPP would create an unlimited internal group");
            break;
        }
        struct obj *g = check(param, K_GROUP, F_control);
        if (!g) break;
        ctx_detach_group(c);
        c->group = g;
        ret = MPP_OK;
        break;
    }
    case CMD_DEC_SET_INFO_CHANGE_READY: {
        if (!c->group) {
            violation(F_control, "INFO_CHANGE_READY with no buffer group: MPP would create an "
                                 "unlimited internal group");
            break;
        }
        const struct group_s *g = &c->group->u.g;
        if (c->waiting_ready && g->mode == BUFFER_INTERNAL) {
            size_t need = (size_t)align16(c->info_w) * align16(c->info_h) * 3 / 2;
            if (g->limit_count <= 0)
                violation(F_control, "INFO_CHANGE_READY with an internal group without "
                                     "limit_config: its memory is unbounded");
            else if (g->limit_size && g->limit_size < need)
                violation(F_control, "group limit size %zu < frame buf_size %zu", g->limit_size,
                          need);
        }
        if (c->waiting_ready) {
            c->cfg_w = c->info_w;
            c->cfg_h = c->info_h;
            c->waiting_ready = 0;
        }
        ret = MPP_OK;
        break;
    }
    default:
        violation(F_control, "command 0x%x is not modelled by the fake", (unsigned)cmd);
        break;
    }
out:
    LEAVE();
    return ret;
}

#define UNMODELLED(fn)                                                                             \
    do {                                                                                           \
        ENTER(fn);                                                                                 \
        violation(fn, "not modelled by the fake");                                                 \
        LEAVE();                                                                                   \
        return MPP_NOK;                                                                            \
    } while (0)

static MPP_RET api_decode(MppCtx a, MppPacket b, MppFrame *c) {
    (void)a, (void)b, (void)c;
    UNMODELLED(F_decode);
}
static MPP_RET api_encode(MppCtx a, MppFrame b, MppPacket *c) {
    (void)a, (void)b, (void)c;
    UNMODELLED(F_encode);
}
static MPP_RET api_encode_put_frame(MppCtx a, MppFrame b) {
    (void)a, (void)b;
    UNMODELLED(F_encode_put_frame);
}
static MPP_RET api_encode_get_packet(MppCtx a, MppPacket *b) {
    (void)a, (void)b;
    UNMODELLED(F_encode_get_packet);
}
static MPP_RET api_isp(MppCtx a, MppFrame b, MppFrame c) {
    (void)a, (void)b, (void)c;
    UNMODELLED(F_isp);
}
static MPP_RET api_isp_put_frame(MppCtx a, MppFrame b) {
    (void)a, (void)b;
    UNMODELLED(F_isp_put_frame);
}
static MPP_RET api_isp_get_frame(MppCtx a, MppFrame *b) {
    (void)a, (void)b;
    UNMODELLED(F_isp_get_frame);
}
static MPP_RET api_poll(MppCtx a, int b, int c) {
    (void)a, (void)b, (void)c;
    UNMODELLED(F_poll);
}
static MPP_RET api_dequeue(MppCtx a, int b, MppTask *c) {
    (void)a, (void)b, (void)c;
    UNMODELLED(F_dequeue);
}
static MPP_RET api_enqueue(MppCtx a, int b, MppTask c) {
    (void)a, (void)b, (void)c;
    UNMODELLED(F_enqueue);
}

static MppApi g_api = {
    .size = sizeof(MppApi),
    .version = 0,
    .decode = api_decode,
    .decode_put_packet = api_decode_put_packet,
    .decode_get_frame = api_decode_get_frame,
    .encode = api_encode,
    .encode_put_frame = api_encode_put_frame,
    .encode_get_packet = api_encode_get_packet,
    .isp = api_isp,
    .isp_put_frame = api_isp_put_frame,
    .isp_get_frame = api_isp_get_frame,
    .poll = api_poll,
    .dequeue = api_dequeue,
    .enqueue = api_enqueue,
    .reset = api_reset,
    .control = api_control,
};

/* ---- context ---- */

/* Faults armed by fake_mpp_inject, each for the next call only. */
static int g_fault_null_api, g_fault_init;

EXPORT MPP_RET mpp_create(MppCtx *ctx, MppApi **mpi) {
    ENTER(F_mpp_create);
    MPP_RET ret = MPP_ERR_NULL_PTR;
    if (!ctx || !mpi) {
        violation(F_mpp_create, "NULL out-pointer");
    } else {
        *ctx = NULL;
        *mpi = NULL;
        struct obj *o = obj_new(K_CTX);
        if (o) {
            o->u.c.last_w = 640;
            o->u.c.last_h = 360;
            *ctx = o;
            *mpi = g_fault_null_api ? NULL : &g_api;
            g_fault_null_api = 0;
            live_add(L_CTX, 1);
            ret = MPP_OK;
        } else {
            ret = MPP_NOK;
        }
    }
    LEAVE();
    return ret;
}

EXPORT MPP_RET mpp_init(MppCtx ctx, int type, int coding) {
    ENTER(F_mpp_init);
    MPP_RET ret = MPP_NOK;
    struct obj *o = check(ctx, K_CTX, F_mpp_init);
    if (!o) goto out;
    if (o->u.c.inited) {
        violation(F_mpp_init, "called twice on one context");
    } else if (g_fault_init) {
        g_fault_init = 0; /* an injected failure: the context stays uninitialised */
    } else if (type != 0) {
        violation(F_mpp_init, "type %d: the fake only decodes (MPP_CTX_DEC 0)", type);
    } else {
        (void)coding; /* any coding "decodes" the synthetic stream */
        o->u.c.inited = 1;
        ret = MPP_OK;
    }
out:
    LEAVE();
    return ret;
}

/* Arms a fault for the next call it names: "mpp_create:null_api" (success
 * with a live context but a NULL MppApi) or "mpp_init:fail" (MPP_NOK, the
 * context left uninitialised). Returns 0, or -1 for an unknown fault. */
EXPORT int fake_mpp_inject(const char *fault) {
    int ret = 0;
    pthread_mutex_lock(&g_lock);
    if (fault && strcmp(fault, "mpp_create:null_api") == 0)
        g_fault_null_api = 1;
    else if (fault && strcmp(fault, "mpp_init:fail") == 0)
        g_fault_init = 1;
    else
        ret = -1;
    pthread_mutex_unlock(&g_lock);
    return ret;
}

EXPORT MPP_RET mpp_destroy(MppCtx ctx) {
    ENTER(F_mpp_destroy);
    MPP_RET ret = MPP_NOK;
    struct obj *o = check(ctx, K_CTX, F_mpp_destroy);
    if (o) {
        ctx_detach_group(&o->u.c); /* pending packets die with it */
        obj_kill(o);
        live_add(L_CTX, -1);
        ret = MPP_OK;
    }
    LEAVE();
    return ret;
}

/* ---- packets ---- */

EXPORT MPP_RET mpp_packet_init(MppPacket *pkt, void *data, size_t size) {
    ENTER(F_mpp_packet_init);
    MPP_RET ret = MPP_ERR_NULL_PTR;
    if (!pkt) {
        violation(F_mpp_packet_init, "NULL out-pointer");
    } else {
        struct obj *o = obj_new(K_PACKET);
        *pkt = o;
        if (o) {
            o->u.p.data = o->u.p.pos = data;
            o->u.p.size = o->u.p.length = size;
            live_add(L_PACKET, 1);
            ret = MPP_OK;
        } else {
            ret = MPP_NOK;
        }
    }
    LEAVE();
    return ret;
}

EXPORT MPP_RET mpp_packet_deinit(MppPacket *pkt) {
    ENTER(F_mpp_packet_deinit);
    MPP_RET ret = MPP_ERR_NULL_PTR;
    if (!pkt) {
        violation(F_mpp_packet_deinit, "NULL MppPacket*");
    } else {
        struct obj *o = check(*pkt, K_PACKET, F_mpp_packet_deinit);
        if (o) {
            obj_kill(o);
            live_add(L_PACKET, -1);
            *pkt = NULL;
            ret = MPP_OK;
        } else {
            ret = MPP_NOK;
        }
    }
    LEAVE();
    return ret;
}

#define PACKET_SETTER(name, type, stmt)                                                            \
    EXPORT void name(MppPacket pkt, type v) {                                                      \
        ENTER(F_##name);                                                                           \
        struct obj *o = check(pkt, K_PACKET, F_##name);                                            \
        if (o) { stmt; }                                                                           \
        LEAVE();                                                                                   \
    }
PACKET_SETTER(mpp_packet_set_data, void *, o->u.p.data = v)
PACKET_SETTER(mpp_packet_set_pos, void *, o->u.p.pos = v)
PACKET_SETTER(mpp_packet_set_size, size_t, o->u.p.size = v)
PACKET_SETTER(mpp_packet_set_length, size_t, o->u.p.length = v)
PACKET_SETTER(mpp_packet_set_pts, int64_t, o->u.p.pts = v)

EXPORT MPP_RET mpp_packet_set_eos(MppPacket pkt) {
    ENTER(F_mpp_packet_set_eos);
    MPP_RET ret = MPP_NOK;
    struct obj *o = check(pkt, K_PACKET, F_mpp_packet_set_eos);
    if (o) {
        o->u.p.eos = 1;
        ret = MPP_OK;
    }
    LEAVE();
    return ret;
}

/* ---- frames ---- */

EXPORT MPP_RET mpp_frame_deinit(MppFrame *frame) {
    ENTER(F_mpp_frame_deinit);
    MPP_RET ret = MPP_ERR_NULL_PTR;
    if (!frame) {
        violation(F_mpp_frame_deinit, "NULL MppFrame*");
    } else {
        struct obj *o = check(*frame, K_FRAME, F_mpp_frame_deinit);
        if (o) {
            if (o->u.f.buf) buf_unref(o->u.f.buf, F_mpp_frame_deinit);
            obj_kill(o);
            live_add(L_FRAME, -1);
            *frame = NULL;
            ret = MPP_OK;
        } else {
            ret = MPP_NOK;
        }
    }
    LEAVE();
    return ret;
}

#define FRAME_GETTER(name, type, expr)                                                             \
    EXPORT type name(MppFrame frame) {                                                             \
        ENTER(F_##name);                                                                           \
        type v = 0;                                                                                \
        struct obj *o = check(frame, K_FRAME, F_##name);                                           \
        if (o) v = (type)(expr);                                                                   \
        LEAVE();                                                                                   \
        return v;                                                                                  \
    }
FRAME_GETTER(mpp_frame_get_info_change, uint32_t, o->u.f.info_change)
FRAME_GETTER(mpp_frame_get_eos, uint32_t, o->u.f.eos)
FRAME_GETTER(mpp_frame_get_errinfo, uint32_t, o->u.f.errinfo)
FRAME_GETTER(mpp_frame_get_discard, uint32_t, o->u.f.discard)
FRAME_GETTER(mpp_frame_get_width, uint32_t, o->u.f.w)
FRAME_GETTER(mpp_frame_get_height, uint32_t, o->u.f.h)
FRAME_GETTER(mpp_frame_get_hor_stride, uint32_t, o->u.f.hs)
FRAME_GETTER(mpp_frame_get_ver_stride, uint32_t, o->u.f.vs)
FRAME_GETTER(mpp_frame_get_buf_size, size_t, o->u.f.buf_size)
FRAME_GETTER(mpp_frame_get_fmt, uint32_t, o->u.f.fmt)
FRAME_GETTER(mpp_frame_get_pts, int64_t, o->u.f.pts)

EXPORT MppBuffer mpp_frame_get_buffer(MppFrame frame) {
    ENTER(F_mpp_frame_get_buffer);
    MppBuffer v = NULL;
    struct obj *o = check(frame, K_FRAME, F_mpp_frame_get_buffer);
    if (o) v = o->u.f.buf;
    LEAVE();
    return v;
}

/* ---- buffer groups ---- */

EXPORT MPP_RET mpp_buffer_group_get(MppBufferGroup *group, int type, int mode, const char *tag,
                                    const char *caller) {
    (void)tag, (void)caller;
    ENTER(F_mpp_buffer_group_get);
    MPP_RET ret = MPP_NOK;
    if (!group) {
        violation(F_mpp_buffer_group_get, "NULL out-pointer");
        ret = MPP_ERR_NULL_PTR;
    } else if (mode != BUFFER_INTERNAL && mode != BUFFER_EXTERNAL) {
        violation(F_mpp_buffer_group_get, "mode %d is neither internal (0) nor external (1)", mode);
        *group = NULL;
    } else if (((uint32_t)type & BUFFER_TYPE_MASK) > 4) {
        violation(F_mpp_buffer_group_get, "unknown buffer type 0x%x", (unsigned)type);
        *group = NULL;
    } else {
        struct obj *g = obj_new(K_GROUP);
        *group = g;
        if (g) {
            g->u.g.type = (uint32_t)type;
            g->u.g.mode = mode;
            live_add(L_GROUP, 1);
            ret = MPP_OK;
        }
    }
    LEAVE();
    return ret;
}

EXPORT MPP_RET mpp_buffer_group_put(MppBufferGroup group) {
    ENTER(F_mpp_buffer_group_put);
    MPP_RET ret = MPP_NOK;
    struct obj *g = check(group, K_GROUP, F_mpp_buffer_group_put);
    if (!g) goto out;
    /* Contexts still using it (MPP would decode into freed memory). */
    for (size_t i = 0; i < g_nslabs; i++) {
        size_t n = (i == g_nslabs - 1) ? g_slab_used : SLAB_OBJS;
        for (size_t j = 0; j < n; j++) {
            struct obj *o = &g_slabs[i][j];
            if (o->magic == kind_magic[K_CTX] && o->u.c.group == g) {
                violation(F_mpp_buffer_group_put,
                          "group still attached to a live decoder (mpp_destroy it first)");
                ctx_detach_group(&o->u.c);
            }
        }
    }
    int held = 0;
    struct obj *b = g->u.g.head;
    while (b) {
        struct obj *next = b->u.b.next;
        if (b->u.b.refs == 0) {
            buf_free(b, F_mpp_buffer_group_put);
        } else {
            held++;
            b->u.b.discard = 1;
            b->u.b.group = NULL; /* orphan: freed at its last put/deinit */
            b->u.b.next = NULL;
        }
        b = next;
    }
    g->u.g.head = NULL;
    if (held)
        violation(F_mpp_buffer_group_put,
                  "%d buffers not put before group (MPP #428: unreleased memory)", held);
    obj_kill(g);
    live_add(L_GROUP, -1);
    ret = MPP_OK;
out:
    LEAVE();
    return ret;
}

EXPORT MPP_RET mpp_buffer_group_clear(MppBufferGroup group) {
    ENTER(F_mpp_buffer_group_clear);
    MPP_RET ret = MPP_NOK;
    struct obj *g = check(group, K_GROUP, F_mpp_buffer_group_clear);
    if (g) {
        struct obj *b = g->u.g.head;
        while (b) {
            struct obj *next = b->u.b.next;
            if (b->u.b.refs == 0)
                buf_free(b, F_mpp_buffer_group_clear);
            else
                b->u.b.discard = 1; /* freed when its holder lets go */
            b = next;
        }
        ret = MPP_OK;
    }
    LEAVE();
    return ret;
}

EXPORT MPP_RET mpp_buffer_group_limit_config(MppBufferGroup group, size_t size, int32_t count) {
    ENTER(F_mpp_buffer_group_limit_config);
    MPP_RET ret = MPP_NOK;
    struct obj *g = check(group, K_GROUP, F_mpp_buffer_group_limit_config);
    if (g) {
        if (count < 0) {
            violation(F_mpp_buffer_group_limit_config, "negative count %d", count);
        } else {
            g->u.g.limit_size = size;
            g->u.g.limit_count = count;
            ret = MPP_OK;
        }
    }
    LEAVE();
    return ret;
}

EXPORT size_t mpp_buffer_group_usage(MppBufferGroup group) {
    ENTER(F_mpp_buffer_group_usage);
    size_t total = 0;
    struct obj *g = check(group, K_GROUP, F_mpp_buffer_group_usage);
    if (g)
        for (struct obj *b = g->u.g.head; b; b = b->u.b.next) total += b->u.b.size;
    LEAVE();
    return total;
}

EXPORT int32_t mpp_buffer_group_unused(MppBufferGroup group) {
    ENTER(F_mpp_buffer_group_unused);
    int32_t unused = 0;
    struct obj *g = check(group, K_GROUP, F_mpp_buffer_group_unused);
    if (g) {
        int32_t used = 0, idle = 0;
        for (struct obj *b = g->u.g.head; b; b = b->u.b.next) {
            if (b->u.b.discard) continue;
            if (b->u.b.refs)
                used++;
            else
                idle++;
        }
        if (g->u.g.mode == BUFFER_EXTERNAL)
            unused = idle;
        else if (g->u.g.limit_count > 0)
            unused = g->u.g.limit_count - used;
        else
            unused = 3; /* what MPP answers for an unlimited group */
    }
    LEAVE();
    return unused;
}

/* ---- buffers ---- */

EXPORT int mpp_buffer_get_fd_with_caller(MppBuffer buffer, const char *caller) {
    (void)caller;
    ENTER(F_mpp_buffer_get_fd_with_caller);
    int fd = -1;
    struct obj *b = check(buffer, K_BUFFER, F_mpp_buffer_get_fd_with_caller);
    if (b && fd_ok(b, F_mpp_buffer_get_fd_with_caller)) fd = b->u.b.fd;
    LEAVE();
    return fd;
}

EXPORT void *mpp_buffer_get_ptr_with_caller(MppBuffer buffer, const char *caller) {
    (void)caller;
    ENTER(F_mpp_buffer_get_ptr_with_caller);
    void *p = NULL;
    struct obj *b = check(buffer, K_BUFFER, F_mpp_buffer_get_ptr_with_caller);
    if (b) p = b->u.b.ptr;
    LEAVE();
    return p;
}

EXPORT size_t mpp_buffer_get_size_with_caller(MppBuffer buffer, const char *caller) {
    (void)caller;
    ENTER(F_mpp_buffer_get_size_with_caller);
    size_t n = 0;
    struct obj *b = check(buffer, K_BUFFER, F_mpp_buffer_get_size_with_caller);
    if (b) n = b->u.b.size;
    LEAVE();
    return n;
}

EXPORT MPP_RET mpp_buffer_put_with_caller(MppBuffer buffer, const char *caller) {
    (void)caller;
    ENTER(F_mpp_buffer_put_with_caller);
    MPP_RET ret = MPP_NOK;
    struct obj *b = check(buffer, K_BUFFER, F_mpp_buffer_put_with_caller);
    if (b) {
        if (b->u.b.app_refs <= 0) {
            violation(F_mpp_buffer_put_with_caller,
                      "put without a reference of the app's (inc_ref first; a frame's "
                      "reference is returned by mpp_frame_deinit)");
        } else {
            b->u.b.app_refs--;
            live_add(L_BUFREFS, -1);
            buf_unref(b, F_mpp_buffer_put_with_caller);
            ret = MPP_OK;
        }
    }
    LEAVE();
    return ret;
}

EXPORT MPP_RET mpp_buffer_inc_ref_with_caller(MppBuffer buffer, const char *caller) {
    (void)caller;
    ENTER(F_mpp_buffer_inc_ref_with_caller);
    MPP_RET ret = MPP_NOK;
    struct obj *b = check(buffer, K_BUFFER, F_mpp_buffer_inc_ref_with_caller);
    if (b) {
        if (b->u.b.refs == 0 && b->u.b.group) {
            /* Real MPP asserts here: an unused buffer belongs to its group. */
            violation(F_mpp_buffer_inc_ref_with_caller, "buffer is not in use");
        } else {
            b->u.b.refs++;
            b->u.b.app_refs++;
            live_add(L_BUFREFS, 1);
            ret = MPP_OK;
        }
    }
    LEAVE();
    return ret;
}

EXPORT MPP_RET mpp_buffer_import_with_tag(MppBufferGroup group, MppBufferInfo *info,
                                          MppBuffer *buffer, const char *tag, const char *caller) {
    (void)tag, (void)caller;
    ENTER(F_mpp_buffer_import_with_tag);
    MPP_RET ret = MPP_NOK;
    if (buffer) *buffer = NULL;
    struct obj *g = check(group, K_GROUP, F_mpp_buffer_import_with_tag);
    if (!g) goto out;
    if (!info) {
        violation(F_mpp_buffer_import_with_tag, "NULL info");
        ret = MPP_ERR_NULL_PTR;
        goto out;
    }
    if (g->u.g.mode != BUFFER_EXTERNAL || (g->u.g.type & BUFFER_TYPE_MASK) != info->type) {
        violation(F_mpp_buffer_import_with_tag,
                  "info.type %u does not match the group (type 0x%x, mode %d; must be external "
                  "and the bare type)",
                  info->type, g->u.g.type, g->u.g.mode);
        goto out;
    }
    if (info->fd < 0 || info->size == 0) {
        violation(F_mpp_buffer_import_with_tag, "bad fd %d / size %zu", info->fd, info->size);
        goto out;
    }
    void *p = mmap(NULL, info->size, PROT_READ | PROT_WRITE, MAP_SHARED, info->fd, 0);
    if (p == MAP_FAILED) {
        violation(F_mpp_buffer_import_with_tag, "cannot map fd %d (%zu bytes, errno %d)", info->fd,
                  info->size, errno);
        goto out;
    }
    struct obj *b = obj_new(K_BUFFER);
    if (!b) {
        munmap(p, info->size);
        goto out;
    }
    b->u.b.fd = info->fd;
    b->u.b.ptr = p;
    b->u.b.size = info->size;
    b->u.b.group = g;
    b->u.b.next = g->u.g.head;
    g->u.g.head = b;
    if (buffer) { /* the app gets a reference of its own */
        b->u.b.refs = 1;
        b->u.b.app_refs = 1;
        live_add(L_BUFREFS, 1);
        *buffer = b;
    }
    ret = MPP_OK;
out:
    LEAVE();
    return ret;
}

/* ---- decoder config ---- */

EXPORT MPP_RET mpp_dec_cfg_init(MppDecCfg *cfg) {
    ENTER(F_mpp_dec_cfg_init);
    MPP_RET ret = MPP_ERR_NULL_PTR;
    if (!cfg) {
        violation(F_mpp_dec_cfg_init, "NULL out-pointer");
    } else {
        struct obj *o = obj_new(K_CFG);
        *cfg = o;
        if (o) {
            live_add(L_CFG, 1);
            ret = MPP_OK;
        } else {
            ret = MPP_NOK;
        }
    }
    LEAVE();
    return ret;
}

EXPORT MPP_RET mpp_dec_cfg_deinit(MppDecCfg cfg) {
    ENTER(F_mpp_dec_cfg_deinit);
    MPP_RET ret = MPP_NOK;
    struct obj *o = check(cfg, K_CFG, F_mpp_dec_cfg_deinit);
    if (o) {
        obj_kill(o);
        live_add(L_CFG, -1);
        ret = MPP_OK;
    }
    LEAVE();
    return ret;
}

EXPORT MPP_RET mpp_dec_cfg_set_u32(MppDecCfg cfg, const char *name, uint32_t val) {
    ENTER(F_mpp_dec_cfg_set_u32);
    MPP_RET ret = MPP_NOK;
    struct obj *o = check(cfg, K_CFG, F_mpp_dec_cfg_set_u32);
    if (!o) goto out;
    if (!name) {
        violation(F_mpp_dec_cfg_set_u32, "NULL name");
        goto out;
    }
    ret = MPP_OK;
    if (strcmp(name, "base:split_parse") == 0)
        o->u.cfg.split = val;
    else if (strcmp(name, "base:fast_out") == 0)
        o->u.cfg.fast_out = val;
    else if (strcmp(name, "base:disable_error") == 0)
        o->u.cfg.disable_error = val;
    else if (strncmp(name, "base:", 5) != 0 && strncmp(name, "cb:", 3) != 0)
        ret = MPP_NOK; /* MPP fails unknown trie keys */
out:
    LEAVE();
    return ret;
}

/* ---- test-only ---- */

static void sb_counts(struct sbuf *b, const char *key, const long *v) {
    sb_printf(b, ",\"%s\":{", key);
    for (int i = 0; i < L_COUNT; i++) sb_printf(b, "%s\"%s\":%ld", i ? "," : "", live_names[i], v[i]);
    sb_put(b, "}", 1);
}

EXPORT size_t fake_mpp_report(char *buf, size_t cap) {
    struct sbuf b = {0};
    pthread_mutex_lock(&g_lock);
    sb_put(&b, "{\"calls\":{", 10);
    sb_call_counts(&b, fn_names, g_calls, F_COUNT, 1);
    sb_put(&b, "}", 1);
    sb_counts(&b, "live", g_live);
    sb_counts(&b, "max_live", g_max_live);
    sb_printf(&b, ",\"frames_out\":%lu,\"info_changes\":%lu,\"stalls\":%lu,\"refused\":%lu",
              g_frames_out, g_info_changes, g_stalls, g_refused);
    sb_put(&b, ",\"violations\":[", 15);
    sb_json_strs(&b, g_viol.msg, g_viol.n);
    sb_printf(&b, "],\"violations_dropped\":%zu}", g_viol.dropped);
    pthread_mutex_unlock(&g_lock);
    return sb_finish(&b, buf, cap);
}

EXPORT void fake_mpp_reset(void) {
    pthread_mutex_lock(&g_lock);
    /* Anything still live is forgotten: marked dead so stale handles stay
     * detectable; memfds the fake made are closed (mappings stay). */
    for (size_t i = 0; i < g_nslabs; i++) {
        size_t n = (i == g_nslabs - 1) ? g_slab_used : SLAB_OBJS;
        for (size_t j = 0; j < n; j++) {
            struct obj *o = &g_slabs[i][j];
            if (o->magic == MAGIC_DEAD || o->kind >= K_COUNT || o->magic != kind_magic[o->kind])
                continue;
            if (o->kind == K_BUFFER && o->u.b.owned_fd && !o->u.b.fd_lost) {
                struct stat st;
                if (fstat(o->u.b.fd, &st) == 0 && st.st_dev == o->u.b.dev &&
                    st.st_ino == o->u.b.ino)
                    close(o->u.b.fd);
            }
            obj_kill(o);
        }
    }
    memset(g_calls, 0, sizeof g_calls);
    memset(g_live, 0, sizeof g_live);
    memset(g_max_live, 0, sizeof g_max_live);
    g_frames_out = g_info_changes = g_stalls = g_refused = 0;
    g_fault_null_api = g_fault_init = 0;
    vlog_clear(&g_viol);
    pthread_mutex_unlock(&g_lock);
}

/* With FAKE_REPORT_DIR set, the report is also written to
 * $FAKE_REPORT_DIR/fake_mpp.json whenever the library is unloaded (dlclose
 * or process exit; the last unload wins), so a test can check the pairs of a
 * process it only runs, such as the vigil binary. */
__attribute__((destructor)) static void fake_mpp_write_report(void) {
    fake_write_report("fake_mpp.json", fake_mpp_report);
}
