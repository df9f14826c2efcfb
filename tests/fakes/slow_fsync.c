/*
 * slow_fsync: an LD_PRELOAD shim that makes fsync(2) and fdatasync(2) slow,
 * for the system test that a store whose commits are delayed does not
 * stall frame intake (tests/tests/disk_stall.rs).
 *
 * Each call runs the real function (dlsym RTLD_NEXT) and then sleeps the
 * delay written, in milliseconds as text, in the file named by the
 * environment variable SLOW_FSYNC_FILE. The file is read at every call, so
 * the test switches the fault on and off while the process runs; a missing
 * file, an unset variable or 0 means no delay. The first delayed call prints
 * one line to stderr ("slow_fsync: delaying fsync by N ms"), and every
 * delayed call rewrites SLOW_FSYNC_FILE.count with the number of delayed
 * calls so far, so the test can prove the fault hit and say how often.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static unsigned long delayed;

/* The delay in milliseconds from the control file (0 when none). */
static long delay_ms(void) {
    const char *path = getenv("SLOW_FSYNC_FILE");
    if (path == NULL || *path == '\0') {
        return 0;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return 0;
    }
    char buf[32];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) {
        return 0;
    }
    buf[n] = '\0';
    long ms = strtol(buf, NULL, 10);
    return ms > 0 ? ms : 0;
}

/* Records one more delayed call in SLOW_FSYNC_FILE.count. */
static void count_call(const char *what, long ms) {
    unsigned long n = __atomic_add_fetch(&delayed, 1, __ATOMIC_RELAXED);
    if (n == 1) {
        char line[96];
        int len = snprintf(line, sizeof line, "slow_fsync: delaying %s by %ld ms\n", what, ms);
        if (len > 0) {
            ssize_t w = write(2, line, (size_t)len);
            (void)w;
        }
    }
    const char *path = getenv("SLOW_FSYNC_FILE");
    char count_path[4096];
    if (snprintf(count_path, sizeof count_path, "%s.count", path) >= (int)sizeof count_path) {
        return;
    }
    int fd = open(count_path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        return;
    }
    char text[32];
    int len = snprintf(text, sizeof text, "%020lu\n", n);
    if (len > 0) {
        ssize_t w = pwrite(fd, text, (size_t)len, 0);
        (void)w;
    }
    close(fd);
}

static void slow_down(const char *what) {
    long ms = delay_ms();
    if (ms == 0) {
        return;
    }
    count_call(what, ms);
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int fsync(int fd) {
    static int (*real)(int);
    if (real == NULL) {
        real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    }
    int r = real(fd);
    int saved = errno;
    slow_down("fsync");
    errno = saved;
    return r;
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (real == NULL) {
        real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    }
    int r = real(fd);
    int saved = errno;
    slow_down("fdatasync");
    errno = saved;
    return r;
}
