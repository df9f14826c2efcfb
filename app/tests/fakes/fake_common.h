/*
 * fake_common.h: what the three C doubles (fake_mpp.c, fake_rga.c,
 * fake_rknn.c) share, so each keeps only its vendor API and its checks.
 *
 *   - EXPORT, for the vendor functions and the test-only exports.
 *   - struct sbuf: a growing string the JSON reports are built in
 *     (sb_put, sb_printf, sb_json_str, sb_json_strs, sb_call_counts), and
 *     sb_finish, which hands a report out the way every fake_*_report does:
 *     NUL-terminated, truncated to cap, returning the full length.
 *   - struct vlog: the violations a double records ("function: message"),
 *     up to its capacity; later ones are only counted as dropped.
 *   - fake_write_report: the report written to $FAKE_REPORT_DIR at unload,
 *     so a test can check the pairs of a process it only runs (vigil).
 *
 * Everything is static inline: each double is its own shared library, and
 * a helper one of them does not use costs nothing and warns about nothing
 * under -Wall -Wextra -Werror. Include it after defining _GNU_SOURCE (strdup
 * under -std=c11). It is found beside the including file, so compiling
 * tests/fakes/fake_*.c by its path (the hw tests, tests/tests/hardware.rs,
 * the cross build's aarch64 compiler) needs no -I.
 */
#ifndef VIGIL_FAKE_COMMON_H
#define VIGIL_FAKE_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))

/* ---- string builder for the JSON reports ---- */

struct sbuf {
    char *p;
    size_t len, cap;
};

/* Appends n bytes; on out-of-memory the report is cut short, not crashed. */
static inline void sb_put(struct sbuf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

/* Appends formatted text (at most 255 bytes: numbers and short keys). */
static inline void sb_printf(struct sbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline void sb_printf(struct sbuf *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) sb_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* Appends s as a JSON string. */
static inline void sb_json_str(struct sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            sb_put(b, e, 2);
        } else if (c < 0x20) {
            sb_printf(b, "\\u%04x", c);
        } else {
            sb_put(b, (const char *)&c, 1);
        }
    }
    sb_put(b, "\"", 1);
}

/* Appends the n strings as the elements of a JSON array, comma-separated
 * (the brackets are the caller's). */
static inline void sb_json_strs(struct sbuf *b, char *const *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (i) sb_put(b, ",", 1);
        sb_json_str(b, s[i]);
    }
}

/* Appends `"name":count` for each of the n functions, comma-separated (the
 * braces are the caller's); with only_called, functions never called are
 * left out. */
static inline void sb_call_counts(struct sbuf *b, const char *const *names,
                                  const unsigned long *calls, int n, int only_called) {
    int first = 1;
    for (int i = 0; i < n; i++) {
        if (only_called && !calls[i]) continue;
        if (!first) sb_put(b, ",", 1);
        first = 0;
        sb_json_str(b, names[i]);
        sb_printf(b, ":%lu", calls[i]);
    }
}

/* Copies the report into buf (NUL-terminated, truncated to cap; buf may be
 * NULL to ask for the length), frees it, and returns its full length. */
static inline size_t sb_finish(struct sbuf *b, char *buf, size_t cap) {
    size_t len = b->p ? b->len : 0;
    if (buf && cap > 0) {
        size_t n = len < cap - 1 ? len : cap - 1;
        if (n) memcpy(buf, b->p, n);
        buf[n] = 0;
    }
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
    return len;
}

/* ---- violations ---- */

/* Recorded misuse: msg points at the double's own array of cap slots. */
struct vlog {
    char **msg;
    size_t cap, n, dropped;
};

/* Formats "fn: message" into dst (cap bytes). */
static inline void vlog_vformat(char *dst, size_t cap, const char *fn, const char *fmt,
                                va_list ap) {
    int n = snprintf(dst, cap, "%s: ", fn);
    if (n < 0) n = 0;
    if ((size_t)n >= cap) return;
    vsnprintf(dst + n, cap - (size_t)n, fmt, ap);
}

/* Keeps a copy of msg, or counts it as dropped when the log is full or the
 * copy cannot be made. */
static inline void vlog_add(struct vlog *v, const char *msg) {
    if (v->n < v->cap) {
        char *copy = strdup(msg);
        if (copy) {
            v->msg[v->n++] = copy;
            return;
        }
    }
    v->dropped++;
}

/* Forgets every violation and the dropped count. */
static inline void vlog_clear(struct vlog *v) {
    for (size_t i = 0; i < v->n; i++) free(v->msg[i]);
    v->n = 0;
    v->dropped = 0;
}

/* ---- the report file ---- */

/* With FAKE_REPORT_DIR set, writes report() to $FAKE_REPORT_DIR/file.
 * Called from each double's destructor, so the report is written whenever
 * the library is unloaded (dlclose or process exit; the last unload wins). */
static inline void fake_write_report(const char *file, size_t (*report)(char *, size_t)) {
    const char *dir = getenv("FAKE_REPORT_DIR");
    if (!dir || !*dir) return;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    size_t len = report(NULL, 0);
    char *buf = malloc(len + 1);
    if (!buf) return;
    report(buf, len + 1);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(buf, f);
        fclose(f);
    }
    free(buf);
}

#endif /* VIGIL_FAKE_COMMON_H */
