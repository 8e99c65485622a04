/* pv_host: the virtual board. The same portable core as the firmware (frame decoder, protocol, θ store,
 * kernel), served over a TCP socket or a pty on Linux, with the θ store in a file.
 *
 *   pv_host --socket PORT [--store FILE] [--bulk FILE]   listen on 127.0.0.1:PORT (0: pick one, print it)
 *   pv_host --fd N ...                                   serve on an already listening socket fd N
 *   pv_host --pty ...                                    open a pty, print "PTY /dev/pts/N"
 *
 * A READY frame goes out on every new connection (and on the pty at start). Stdout gets one line per
 * listening address so a parent can read it ("LISTEN 127.0.0.1 PORT"). Ends on SIGTERM/SIGINT or
 * on RESET mode 1 (exit code from the request).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "pv_protocol.h"
#include "pv_store.h"

#define STORE_ERASE 4096u
#define STORE_SLOT (PV_BLOB_MAX_BYTES + STORE_ERASE) /* 64 KiB blob + slot header, erase-aligned */
#define STORE_BYTES (2u * STORE_SLOT)

static uint8_t s_store_mem[STORE_BYTES];
static int8_t s_keep_image[PV_IMAGE_BYTES]; /* the last INFER image, for BENCH */
static int s_store_fd = -1;
static int s_link_fd = -1;
static volatile sig_atomic_t s_stop = 0;
static int s_reset_mode = -1;
static int s_reset_code = 0;

static int flash_erase(void *ctx, uint32_t off, uint32_t len) {
    (void)ctx;
    if (off > STORE_BYTES || len > STORE_BYTES - off) return -1;
    memset(s_store_mem + off, 0xFF, len);
    if (pwrite(s_store_fd, s_store_mem + off, len, (off_t)off) != (ssize_t)len) return -1;
    return 0;
}

static int flash_write(void *ctx, uint32_t off, const uint8_t *p, uint32_t len) {
    (void)ctx;
    if (off > STORE_BYTES || len > STORE_BYTES - off) return -1;
    for (uint32_t i = 0; i < len; i++) s_store_mem[off + i] &= p[i]; /* NOR flash: bits only clear */
    if (pwrite(s_store_fd, s_store_mem + off, len, (off_t)off) != (ssize_t)len) return -1;
    return 0;
}

static int open_store(const char *path) {
    struct stat st;
    s_store_fd = open(path, O_RDWR | O_CREAT, 0644);
    if (s_store_fd < 0) {
        fprintf(stderr, "pv_host: cannot open store %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (fstat(s_store_fd, &st) == 0 && st.st_size == (off_t)STORE_BYTES &&
        pread(s_store_fd, s_store_mem, STORE_BYTES, 0) == (ssize_t)STORE_BYTES) {
        return 0;
    }
    /* new or wrong size: a blank (erased) flash */
    memset(s_store_mem, 0xFF, STORE_BYTES);
    if (ftruncate(s_store_fd, 0) != 0 || pwrite(s_store_fd, s_store_mem, STORE_BYTES, 0) != (ssize_t)STORE_BYTES) {
        fprintf(stderr, "pv_host: cannot initialise store %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

static void link_send(void *ctx, const uint8_t *p, uint32_t n) {
    (void)ctx;
    while (n > 0 && s_link_fd >= 0) {
        ssize_t w = write(s_link_fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return; /* peer gone: the read loop notices */
        }
        p += w;
        n -= (uint32_t)w;
    }
}

static uint32_t host_ticks(void *ctx) {
    struct timespec ts;
    (void)ctx;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec);
}

static void host_reset(void *ctx, uint8_t mode, uint8_t code) {
    (void)ctx;
    s_reset_mode = mode;
    s_reset_code = code;
}

static void on_signal(int sig) {
    (void)sig;
    s_stop = 1;
}

static pv_store_t s_store;
static pv_proto_t s_proto;

static int boot(const pv_board_t *board, const pv_flash_t *flash) {
    if (pv_store_init(&s_store, flash) != PV_STORE_OK) {
        fprintf(stderr, "pv_host: store init failed\n");
        return -1;
    }
    if (pv_proto_init(&s_proto, board, &s_store) != 0) {
        fprintf(stderr, "pv_host: protocol init failed\n");
        return -1;
    }
    return 0;
}

/* Serves one connection until EOF. Returns 0, or 1 when the board must exit. */
static int serve(int fd, const pv_board_t *board, const pv_flash_t *flash) {
    uint8_t buf[4096];
    s_link_fd = fd;
    pv_frame_decoder_reset(&s_proto.dec);
    pv_proto_send_ready(&s_proto);
    while (!s_stop) {
        ssize_t r = read(fd, buf, sizeof(buf));
        if (r < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (r == 0) break;
        pv_proto_rx(&s_proto, buf, (uint32_t)r);
        if (s_reset_mode == (int)PV_RESET_EXIT) return 1;
        if (s_reset_mode == (int)PV_RESET_REBOOT) {
            s_reset_mode = -1;
            if (boot(board, flash) != 0) return 1;
            pv_proto_send_ready(&s_proto);
        }
    }
    s_link_fd = -1;
    return 0;
}

static void usage(void) {
    fprintf(stderr,
            "usage: pv_host (--socket PORT | --fd N | --pty) [--store FILE] [--bulk FILE]\n"
            "  --socket PORT  listen on 127.0.0.1:PORT (0 picks a free port); prints LISTEN 127.0.0.1 PORT\n"
            "  --fd N         serve on the listening socket fd N (inherited from the parent)\n"
            "  --pty          serve on a new pty; prints PTY /dev/pts/N\n"
            "  --store FILE   θ store file (A/B slots, created blank), default pv_store.bin\n"
            "  --bulk FILE    images (112*112*3 int8 each, back to back) for INFER_BULK\n");
}

int main(int argc, char **argv) {
    const char *store_path = "pv_store.bin";
    const char *bulk_path = NULL;
    int port = -1, lfd = -1, use_pty = 0;
    pv_board_t board;
    pv_flash_t flash;
    struct sigaction sa;
    int rc = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc) {
            port = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--fd") == 0 && i + 1 < argc) {
            lfd = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--pty") == 0) {
            use_pty = 1;
        } else if (strcmp(argv[i], "--store") == 0 && i + 1 < argc) {
            store_path = argv[++i];
        } else if (strcmp(argv[i], "--bulk") == 0 && i + 1 < argc) {
            bulk_path = argv[++i];
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage();
            return 0;
        } else {
            fprintf(stderr, "pv_host: unknown argument %s\n", argv[i]);
            usage();
            return 2;
        }
    }
    if ((port >= 0) + (lfd >= 0) + use_pty != 1) {
        fprintf(stderr, "pv_host: give exactly one of --socket, --fd, --pty\n");
        usage();
        return 2;
    }

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);

    if (open_store(store_path) != 0) return 1;
    memset(&flash, 0, sizeof(flash));
    flash.base = s_store_mem;
    flash.size = STORE_BYTES;
    flash.erase_size = STORE_ERASE;
    flash.erase = flash_erase;
    flash.write = flash_write;

    memset(&board, 0, sizeof(board));
    board.send = link_send;
    board.ticks = host_ticks;
    board.tick_hz = 1000000000u;
    board.reset = host_reset;
    board.free_ram = 0;
    board.keep_image = s_keep_image;
    memcpy(board.name, "host", 4);
    if (bulk_path != NULL) {
        int bfd = open(bulk_path, O_RDONLY);
        struct stat st;
        void *m;
        if (bfd < 0 || fstat(bfd, &st) != 0 || st.st_size < (off_t)PV_IMAGE_BYTES) {
            fprintf(stderr, "pv_host: bulk file %s missing or shorter than one image\n", bulk_path);
            return 1;
        }
        m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, bfd, 0);
        if (m == MAP_FAILED) {
            fprintf(stderr, "pv_host: cannot map %s: %s\n", bulk_path, strerror(errno));
            return 1;
        }
        board.bulk = (const int8_t *)m;
        board.bulk_bytes = st.st_size > 0x7FFFFFFF ? 0x7FFFFFFFu : (uint32_t)st.st_size;
    }
    if (boot(&board, &flash) != 0) return 1;

    if (use_pty) {
        int mfd = posix_openpt(O_RDWR | O_NOCTTY);
        struct termios t;
        if (mfd < 0 || grantpt(mfd) != 0 || unlockpt(mfd) != 0) {
            fprintf(stderr, "pv_host: cannot open a pty: %s\n", strerror(errno));
            return 1;
        }
        if (tcgetattr(mfd, &t) == 0) {
            cfmakeraw(&t);
            tcsetattr(mfd, TCSANOW, &t);
        }
        printf("PTY %s\n", ptsname(mfd));
        while (!s_stop) {
            if (serve(mfd, &board, &flash) != 0) break;
            usleep(10000); /* EIO until a slave opens: poll */
        }
        return s_reset_mode == (int)PV_RESET_EXIT ? s_reset_code : 0;
    }

    if (lfd < 0) {
        struct sockaddr_in a;
        socklen_t al = sizeof(a);
        int one = 1;
        lfd = socket(AF_INET, SOCK_STREAM, 0);
        memset(&a, 0, sizeof(a));
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons((uint16_t)port);
        setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(lfd, 1) != 0 ||
            getsockname(lfd, (struct sockaddr *)&a, &al) != 0) {
            fprintf(stderr, "pv_host: cannot listen on 127.0.0.1:%d: %s\n", port, strerror(errno));
            return 1;
        }
        printf("LISTEN 127.0.0.1 %u\n", (unsigned)ntohs(a.sin_port));
    }
    while (!s_stop) {
        int one = 1;
        int cfd = accept(lfd, NULL, NULL);
        if (cfd < 0) {
            if (errno == EINTR) continue;
            fprintf(stderr, "pv_host: accept: %s\n", strerror(errno));
            rc = 1;
            break;
        }
        setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (serve(cfd, &board, &flash) != 0) {
            close(cfd);
            rc = s_reset_mode == (int)PV_RESET_EXIT ? s_reset_code : 1;
            break;
        }
        close(cfd);
    }
    close(lfd);
    return rc;
}
