/* vivid-probe: the self-test of vm-runner.sh, run inside the emulated board.
 *
 *   vivid-probe            captures from vivid's /dev/video0, then simulates an
 *                          unplug while streaming and a replug (see vm-runner.sh's
 *                          header for what it found); exits with the number of
 *                          expectations that failed (0: all as expected)
 *   vivid-probe exit N ARG...
 *                          prints each ARG as [ARG] on its own line, exits N
 *                          (checks the runner's argument quoting and exit status)
 *   vivid-probe hang       never exits (checks the runner's timeout)
 *
 * Built static for aarch64: aarch64-linux-gnu-gcc -static -O2 -o vivid-probe vivid-probe.c
 * The modprobe arguments for vivid come from $VIGIL_VM_VIVID (set by the runner's /init).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <linux/videodev2.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEV "/dev/video0"
#define NBUF 4

static int failures;

static double uptime(void) {
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void expect(int ok, const char *what) {
    printf("probe: %s %s\n", ok ? "ok  " : "FAIL", what);
    if (!ok) failures++;
    fflush(stdout);
}

static int xioctl(int fd, unsigned long req, void *arg) {
    int r;
    do r = ioctl(fd, req, arg); while (r < 0 && errno == EINTR);
    return r;
}

static const char *err(int r) { return r < 0 ? strerrorname_np(errno) : "ok"; }

static int sh(const char *cmd) {
    int st = system(cmd);
    int rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
    printf("probe: $ %s -> %d\n", cmd, rc);
    fflush(stdout);
    return rc;
}

static int exists(const char *p) { struct stat st; return stat(p, &st) == 0; }

static int wait_for(const char *p, int present) {
    for (int i = 0; i < 100; i++) {
        if (exists(p) == present) return 1;
        usleep(50000);
    }
    return 0;
}

struct cam { int fd; void *mem[NBUF]; size_t len[NBUF]; };

/* Opens DEV, sets YUYV 640x480 and starts streaming with NBUF mmap buffers. */
static int cam_start_at(struct cam *c, const char *dev) {
    c->fd = open(dev, O_RDWR | O_NONBLOCK);
    if (c->fd < 0) { printf("probe: open %s: %s\n", dev, strerrorname_np(errno)); return -1; }
    struct v4l2_capability cap = {0};
    if (xioctl(c->fd, VIDIOC_QUERYCAP, &cap) < 0) { printf("probe: QUERYCAP %s\n", err(-1)); return -1; }
    printf("probe: QUERYCAP driver=%s card=%s bus=%s caps=0x%08x device_caps=0x%08x\n",
           cap.driver, cap.card, cap.bus_info, cap.capabilities, cap.device_caps);
    struct v4l2_format f = {.type = V4L2_BUF_TYPE_VIDEO_CAPTURE};
    f.fmt.pix.width = 640; f.fmt.pix.height = 480;
    f.fmt.pix.pixelformat = V4L2_PIX_FMT_YUYV; f.fmt.pix.field = V4L2_FIELD_NONE;
    if (xioctl(c->fd, VIDIOC_S_FMT, &f) < 0) { printf("probe: S_FMT %s\n", err(-1)); return -1; }
    printf("probe: S_FMT %.4s %ux%u stride %u sizeimage %u\n", (char *)&f.fmt.pix.pixelformat,
           f.fmt.pix.width, f.fmt.pix.height, f.fmt.pix.bytesperline, f.fmt.pix.sizeimage);
    struct v4l2_streamparm parm = {.type = V4L2_BUF_TYPE_VIDEO_CAPTURE};
    if (xioctl(c->fd, VIDIOC_G_PARM, &parm) == 0)
        printf("probe: G_PARM timeperframe %u/%u\n", parm.parm.capture.timeperframe.numerator,
               parm.parm.capture.timeperframe.denominator);
    struct v4l2_requestbuffers rb = {.count = NBUF, .type = V4L2_BUF_TYPE_VIDEO_CAPTURE, .memory = V4L2_MEMORY_MMAP};
    if (xioctl(c->fd, VIDIOC_REQBUFS, &rb) < 0 || rb.count != NBUF) { printf("probe: REQBUFS %s count %u\n", err(-1), rb.count); return -1; }
    for (unsigned i = 0; i < NBUF; i++) {
        struct v4l2_buffer b = {.type = V4L2_BUF_TYPE_VIDEO_CAPTURE, .memory = V4L2_MEMORY_MMAP, .index = i};
        if (xioctl(c->fd, VIDIOC_QUERYBUF, &b) < 0) { printf("probe: QUERYBUF %s\n", err(-1)); return -1; }
        c->len[i] = b.length;
        c->mem[i] = mmap(NULL, b.length, PROT_READ | PROT_WRITE, MAP_SHARED, c->fd, b.m.offset);
        if (c->mem[i] == MAP_FAILED) { printf("probe: mmap %s\n", strerrorname_np(errno)); return -1; }
        if (xioctl(c->fd, VIDIOC_QBUF, &b) < 0) { printf("probe: QBUF %s\n", err(-1)); return -1; }
    }
    int type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
    if (xioctl(c->fd, VIDIOC_STREAMON, &type) < 0) { printf("probe: STREAMON %s\n", err(-1)); return -1; }
    return 0;
}

static int cam_start(struct cam *c) { return cam_start_at(c, DEV); }

/* The first /dev/video* node, waiting up to 5 s for one; "" if none. */
static const char *any_video(char *out, size_t n) {
    out[0] = 0;
    for (int i = 0; i < 100 && !out[0]; i++) {
        glob_t g;
        if (glob("/dev/video*", 0, NULL, &g) == 0) {
            for (size_t j = 0; j < g.gl_pathc; j++) printf("probe: node %s\n", g.gl_pathv[j]);
            snprintf(out, n, "%s", g.gl_pathv[0]);
        }
        globfree(&g);
        if (!out[0]) usleep(50000);
    }
    return out;
}

/* Dequeues n frames (poll, DQBUF, QBUF); returns how many it got. */
static int cam_frames(struct cam *c, int n) {
    int got = 0;
    for (int i = 0; i < n; i++) {
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        int pr = poll(&p, 1, 5000);
        if (pr <= 0) { printf("probe: poll -> %d %s\n", pr, pr < 0 ? strerrorname_np(errno) : "timeout"); break; }
        struct v4l2_buffer b = {.type = V4L2_BUF_TYPE_VIDEO_CAPTURE, .memory = V4L2_MEMORY_MMAP};
        if (xioctl(c->fd, VIDIOC_DQBUF, &b) < 0) { printf("probe: DQBUF %s\n", err(-1)); break; }
        printf("probe: frame seq %u bytesused %u at uptime %.2f s\n", b.sequence, b.bytesused, uptime());
        fflush(stdout);
        if (xioctl(c->fd, VIDIOC_QBUF, &b) < 0) { printf("probe: QBUF %s\n", err(-1)); break; }
        got++;
    }
    return got;
}

static void cam_close(struct cam *c) {
    for (unsigned i = 0; i < NBUF; i++)
        if (c->mem[i] && c->mem[i] != MAP_FAILED) munmap(c->mem[i], c->len[i]);
    if (c->fd >= 0) close(c->fd);
    memset(c, 0, sizeof *c);
    c->fd = -1;
}

static int probe(void) {
    const char *vivid = getenv("VIGIL_VM_VIVID");
    char cmd[256];
    struct cam a = {.fd = -1}, b = {.fd = -1};

    printf("probe: start at uptime %.2f s\n", uptime());
    expect(exists(DEV), DEV " present after modprobe");
    expect(cam_start(&a) == 0, "open, S_FMT, REQBUFS, STREAMON");
    expect(cam_frames(&a, 5) == 5, "5 frames dequeued");

    /* Unplug, the way a module unload would: refused while the fd is open. */
    expect(sh("rmmod vivid 2>&1") != 0, "rmmod vivid refused while " DEV " is open");

    /* Unplug, the way a USB disconnect looks: the driver unbinds under the open fd. */
    expect(sh("echo vivid.0 > /sys/bus/platform/drivers/vivid/unbind") == 0, "unbind vivid.0 while streaming");
    expect(!exists(DEV), DEV " gone after unbind");
    struct pollfd p = {.fd = a.fd, .events = POLLIN | POLLPRI};
    int pr = poll(&p, 1, 2000);
    printf("probe: after unbind: poll -> %d revents 0x%x (POLLIN %d POLLPRI %d POLLERR %d POLLHUP %d)\n", pr, p.revents,
           !!(p.revents & POLLIN), !!(p.revents & POLLPRI), !!(p.revents & POLLERR), !!(p.revents & POLLHUP));
    expect(pr == 1 && (p.revents & POLLERR), "poll reports POLLERR after unbind");
    struct v4l2_buffer buf = {.type = V4L2_BUF_TYPE_VIDEO_CAPTURE, .memory = V4L2_MEMORY_MMAP};
    int r = xioctl(a.fd, VIDIOC_DQBUF, &buf);
    printf("probe: after unbind: DQBUF -> %s\n", err(r));
    expect(r < 0, "DQBUF fails after unbind");
    buf.index = 0;
    printf("probe: after unbind: QBUF -> %s\n", err(xioctl(a.fd, VIDIOC_QBUF, &buf)));
    struct v4l2_capability cap;
    printf("probe: after unbind: QUERYCAP -> %s\n", err(xioctl(a.fd, VIDIOC_QUERYCAP, &cap)));
    char byte;
    ssize_t rd = read(a.fd, &byte, 1);
    printf("probe: after unbind: read -> %zd %s\n", rd, rd < 0 ? strerrorname_np(errno) : "");
    int type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
    printf("probe: after unbind: STREAMOFF -> %s\n", err(xioctl(a.fd, VIDIOC_STREAMOFF, &type)));
    int fd2 = open(DEV, O_RDWR);
    printf("probe: after unbind: open " DEV " -> %s\n", fd2 < 0 ? strerrorname_np(errno) : "ok");
    if (fd2 >= 0) close(fd2);
    expect(sh("rmmod vivid 2>&1") != 0, "rmmod vivid still refused while the dead fd is open");

    /* Replug while the dead fd is still open: bind the platform device again. */
    expect(sh("echo vivid.0 > /sys/bus/platform/drivers/vivid/bind") == 0, "bind vivid.0 while the dead fd is open");
    /* The old node's number is freed only when its last fd closes: the rebound
       device comes back under the next free number (/dev/video1), like a USB camera
       replugged while an application still holds the old node. */
    char node[64];
    any_video(node, sizeof node);
    printf("probe: after bind: first video node '%s'\n", node);
    expect(node[0] && strcmp(node, DEV) != 0, "a new video node (not " DEV ") after bind while the dead fd is open");
    expect(node[0] && cam_start_at(&b, node) == 0 && cam_frames(&b, 2) == 2, "capture from the rebound device");
    cam_close(&b);
    printf("probe: dead fd: QUERYCAP -> %s\n", err(xioctl(a.fd, VIDIOC_QUERYCAP, &cap)));
    cam_close(&a);

    /* Everything closed: the module unloads, and loads again. */
    expect(sh("rmmod vivid 2>&1") == 0, "rmmod vivid once every fd is closed");
    expect(!exists(DEV), DEV " gone after rmmod");
    snprintf(cmd, sizeof cmd, "modprobe vivid %s", vivid ? vivid : "");
    expect(sh(cmd) == 0, "modprobe vivid again");
    expect(wait_for(DEV, 1), DEV " back after modprobe");
    expect(cam_start(&b) == 0 && cam_frames(&b, 2) == 2, "capture after modprobe");
    cam_close(&b);

    /* vivid's own "Disconnect" control (error injection): the same as an unbind. */
    int fd = open(DEV, O_RDWR | O_NONBLOCK);
    struct v4l2_queryctrl q = {.id = V4L2_CTRL_FLAG_NEXT_CTRL};
    unsigned disc = 0;
    while (fd >= 0 && xioctl(fd, VIDIOC_QUERYCTRL, &q) == 0) {
        if (strcmp((char *)q.name, "Disconnect") == 0) disc = q.id;
        q.id |= V4L2_CTRL_FLAG_NEXT_CTRL;
    }
    printf("probe: Disconnect control id 0x%x\n", disc);
    if (disc) {
        struct v4l2_control ctl = {.id = disc, .value = 1};
        printf("probe: S_CTRL Disconnect -> %s\n", err(xioctl(fd, VIDIOC_S_CTRL, &ctl)));
        printf("probe: after Disconnect: " DEV " %s, QUERYCAP -> %s\n", exists(DEV) ? "present" : "gone",
               err(xioctl(fd, VIDIOC_QUERYCAP, &cap)));
        int fd3 = open(DEV, O_RDWR);
        printf("probe: after Disconnect: open " DEV " -> %s\n", fd3 < 0 ? strerrorname_np(errno) : "ok");
        if (fd3 >= 0) close(fd3);
        close(fd);
        expect(sh("modprobe -r vivid 2>&1") == 0, "modprobe -r vivid after Disconnect");
        sh("lsmod");
        snprintf(cmd, sizeof cmd, "modprobe vivid %s", vivid ? vivid : "");
        expect(sh(cmd) == 0 && wait_for(DEV, 1), "modprobe vivid after Disconnect");
    } else if (fd >= 0) {
        close(fd);
    }

    printf("probe: done at uptime %.2f s, %d failed\n", uptime(), failures);
    return failures;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 2 && strcmp(argv[1], "hang") == 0) {
        printf("probe: hanging\n");
        for (;;) pause();
    }
    if (argc >= 3 && strcmp(argv[1], "exit") == 0) {
        for (int i = 3; i < argc; i++) printf("[%s]\n", argv[i]);
        return atoi(argv[2]);
    }
    return probe() ? 1 : 0;
}
