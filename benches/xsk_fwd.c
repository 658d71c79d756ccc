// The reference forwarder of benches/netns_forwarding.sh (issue 15): the least an AF_XDP
// forwarder can do, written on libxdp's xsk API as its users write one. One core, one queue
// per interface, copy mode (veth); every frame received on IN leaves through OUT with its MAC
// addresses rewritten and nothing else looked at. Both sockets share one UMEM
// (XDP_SHARED_UMEM, each with its own fill and completion ring), so a frame is transmitted
// from where it was received, without a copy in userspace; completed frames go back to IN's
// fill ring in bulk.
//
// Build: cc -O2 -o xsk_fwd benches/xsk_fwd.c -lxdp -lbpf   (libxdp-dev, libbpf-dev)
// Usage: xsk_fwd IN OUT DST_MAC SRC_MAC
// Runs until SIGINT or SIGTERM, then prints the frames forwarded.

#include <errno.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <xdp/xsk.h>

#define FRAMES 4096
#define FRAME_SIZE XSK_UMEM__DEFAULT_FRAME_SIZE
#define RING 2048
#define BATCH 64

struct sock {
	struct xsk_socket *xsk;
	struct xsk_ring_cons rx, comp;
	struct xsk_ring_prod tx, fill;
};

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static int parse_mac(const char *s, unsigned char *m)
{
	return sscanf(s, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &m[0], &m[1], &m[2], &m[3], &m[4],
		      &m[5]) == 6
		       ? 0
		       : -1;
}

static void die(const char *what, int err)
{
	fprintf(stderr, "xsk_fwd: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

int main(int argc, char **argv)
{
	unsigned char dst[6], src[6];
	if (argc != 5 || parse_mac(argv[3], dst) || parse_mac(argv[4], src)) {
		fprintf(stderr, "usage: xsk_fwd IN OUT DST_MAC SRC_MAC\n");
		return 2;
	}
	size_t size = (size_t)FRAMES * FRAME_SIZE;
	void *area = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED)
		die("mmap", errno);

	struct sock in = { 0 }, out = { 0 };
	struct xsk_umem *umem;
	struct xsk_umem_config ucfg = {
		.fill_size = FRAMES,
		.comp_size = FRAMES,
		.frame_size = FRAME_SIZE,
		.frame_headroom = 0,
		.flags = 0,
	};
	int err = xsk_umem__create(&umem, area, size, &in.fill, &in.comp, &ucfg);
	if (err)
		die("umem", err);
	struct xsk_socket_config cfg = {
		.rx_size = RING,
		.tx_size = RING,
		.libxdp_flags = 0,
		.xdp_flags = XDP_FLAGS_DRV_MODE,
		.bind_flags = XDP_COPY | XDP_USE_NEED_WAKEUP,
	};
	// IN gets libxdp's redirect program; OUT only transmits.
	err = xsk_socket__create_shared(&in.xsk, argv[1], 0, umem, &in.rx, &in.tx, &in.fill,
					&in.comp, &cfg);
	if (err)
		die(argv[1], err);
	cfg.libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD;
	err = xsk_socket__create_shared(&out.xsk, argv[2], 0, umem, &out.rx, &out.tx, &out.fill,
					&out.comp, &cfg);
	if (err)
		die(argv[2], err);

	// Every frame starts in IN's fill ring.
	__u32 idx;
	if (xsk_ring_prod__reserve(&in.fill, FRAMES, &idx) != FRAMES)
		die("fill", ENOSPC);
	for (__u32 i = 0; i < FRAMES; i++)
		*xsk_ring_prod__fill_addr(&in.fill, idx + i) = (__u64)i * FRAME_SIZE;
	xsk_ring_prod__submit(&in.fill, FRAMES);

	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	int in_fd = xsk_socket__fd(in.xsk), out_fd = xsk_socket__fd(out.xsk);
	unsigned long long forwarded = 0, dropped = 0;
	__u32 pending = 0;
	while (!stop) {
		// Completed transmissions: their frames go back to IN's fill ring, in one batch.
		__u32 ic, ifl;
		__u32 done = xsk_ring_cons__peek(&out.comp, FRAMES, &ic);
		if (done) {
			while (xsk_ring_prod__reserve(&in.fill, done, &ifl) != done)
				;
			for (__u32 i = 0; i < done; i++)
				*xsk_ring_prod__fill_addr(&in.fill, ifl + i) =
					*xsk_ring_cons__comp_addr(&out.comp, ic + i);
			xsk_ring_prod__submit(&in.fill, done);
			xsk_ring_cons__release(&out.comp, done);
			pending -= done;
		}
		__u32 ir, it;
		__u32 n = xsk_ring_cons__peek(&in.rx, BATCH, &ir);
		if (!n) {
			if (xsk_ring_prod__needs_wakeup(&in.fill))
				recvfrom(in_fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
			if (pending)
				sendto(out_fd, NULL, 0, MSG_DONTWAIT, NULL, 0);
			continue;
		}
		__u32 room = xsk_ring_prod__reserve(&out.tx, n, &it);
		for (__u32 i = 0; i < n; i++) {
			const struct xdp_desc *d = xsk_ring_cons__rx_desc(&in.rx, ir + i);
			if (i >= room) {
				// TX full: the frame goes straight back to the fill ring.
				while (xsk_ring_prod__reserve(&in.fill, 1, &ifl) != 1)
					;
				*xsk_ring_prod__fill_addr(&in.fill, ifl) = d->addr;
				xsk_ring_prod__submit(&in.fill, 1);
				dropped++;
				continue;
			}
			unsigned char *p = xsk_umem__get_data(area, d->addr);
			memcpy(p, dst, 6);
			memcpy(p + 6, src, 6);
			struct xdp_desc *t = xsk_ring_prod__tx_desc(&out.tx, it + i);
			t->addr = d->addr;
			t->len = d->len;
		}
		xsk_ring_prod__submit(&out.tx, room);
		xsk_ring_cons__release(&in.rx, n);
		pending += room;
		forwarded += room;
		// Copy mode transmits only when kicked.
		sendto(out_fd, NULL, 0, MSG_DONTWAIT, NULL, 0);
	}
	printf("%llu forwarded, %llu dropped (tx full)\n", forwarded, dropped);
	xsk_socket__delete(out.xsk);
	xsk_socket__delete(in.xsk);
	xsk_umem__delete(umem);
	return 0;
}
