/* vmms: the Virtual Machine Management Service.
 *   vmms --foreground --root DIR [--socket PATH]
 * One JSON request per line on a Unix socket, one reply per line (docs/vmms.md). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "vmms/service.h"

#define MAX_CLIENTS 64
#define DEFAULT_SOCKET "/run/viridian/vmms.sock"

struct client {
	int fd;
	struct vmms_caller who;
	size_t len;
	char buf[65536];
};

static struct vmms service;
static struct client *clients[MAX_CLIENTS];
static gid_t viridian_gid = (gid_t)-1;

static void usage(FILE *f)
{
	fprintf(f, "usage: vmms --foreground --root DIR [--socket PATH]\n"
		   "  --root DIR     inventory (vmms.db) and VM folders\n"
		   "  --socket PATH  API socket (default $VIRIDIAN_SOCKET or " DEFAULT_SOCKET ")\n"
		   "Environment: VIRIDIAN_VMWP, VIRIDIAN_VMSWITCH (the worker and switch programs),\n"
		   "VIRIDIAN_CGROUP (the cgroup folder for the workers' processor limits; default: the\n"
		   "cgroup v2 hierarchy with the cpu controller, else cgroup v1's cpu hierarchy).\n");
}

static int listen_on(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "vmms: --socket %s: path too long\n", path);
		return -1;
	}
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		mkdir(dir, 0755);
	}
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	/* A live vmms answers; a stale socket file does not. */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		fprintf(stderr, "vmms: another vmms is listening on %s\n", path);
		close(fd);
		return -1;
	}
	unlink(path);
	mode_t old = umask(0117);
	int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc < 0 || listen(fd, 64) < 0) {
		fprintf(stderr, "vmms: --socket %s: %s\n", path, strerror(errno));
		close(fd);
		return -1;
	}
	struct group *g = getgrnam("viridian");
	if (g) {
		viridian_gid = g->gr_gid;
		if (chown(path, 0, g->gr_gid) < 0 && geteuid() == 0)
			fprintf(stderr, "vmms: chown %s: %s\n", path, strerror(errno));
	}
	chmod(path, 0660);
	return fd;
}

static void drop(int i)
{
	close(clients[i]->fd);
	free(clients[i]);
	clients[i] = NULL;
}

static void send_line(int fd, const char *s)
{
	size_t n = strlen(s), off = 0;
	while (off < n) {
		ssize_t k = send(fd, s + off, n - off, MSG_NOSIGNAL);
		if (k < 0 && errno == EAGAIN) {
			struct pollfd p = { fd, POLLOUT, 0 };
			if (poll(&p, 1, 5000) <= 0)
				return;
			continue;
		}
		if (k <= 0)
			return;
		off += (size_t)k;
	}
}

static void answer(int fd, const struct vmms_caller *who, const char *line)
{
	json_error_t jerr;
	json_t *req = json_loads(line, 0, &jerr);
	service.caller = *who; /* paths in the request resolve with the peer's rights */
	json_t *reply = json_is_object(req) ? vmms_request(&service, req)
					    : json_pack("{s:b, s:s}", "ok", 0, "error", "not a JSON object");
	service.caller = (struct vmms_caller){ 0 }; /* vmms's own work: root */
	json_decref(req);
	char *out = json_dumps(reply, JSON_COMPACT);
	json_decref(reply);
	if (out) {
		send_line(fd, out);
		send_line(fd, "\n");
	}
	free(out);
}

static void serve(int i)
{
	struct client *c = clients[i];
	ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, 0);
	if (n <= 0) {
		if (n < 0 && errno == EAGAIN)
			return;
		drop(i);
		return;
	}
	c->len += (size_t)n;
	c->buf[c->len] = '\0';
	char *start = c->buf, *nl;
	while ((nl = memchr(start, '\n', c->len - (size_t)(start - c->buf)))) {
		*nl = '\0';
		if (nl > start)
			answer(c->fd, &c->who, start);
		start = nl + 1;
	}
	c->len -= (size_t)(start - c->buf);
	memmove(c->buf, start, c->len);
	if (c->len == sizeof(c->buf) - 1) {
		send_line(c->fd, "{\"ok\":false,\"error\":\"request too long\"}\n");
		drop(i);
	}
}

int main(int argc, char **argv)
{
	const char *root = NULL, *sock = getenv("VIRIDIAN_SOCKET");
	bool foreground = false;
	static const struct option opts[] = {
		{ "foreground", no_argument, NULL, 'f' },
		{ "root", required_argument, NULL, 'r' },
		{ "socket", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c;
	opterr = 0; /* one line of our own instead of getopt's and the usage text */
	while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		switch (c) {
		case 'f': foreground = true; break;
		case 'r': root = optarg; break;
		case 's': sock = optarg; break;
		case 'h': usage(stdout); return 0;
		default:
			fprintf(stderr, "vmms: %s %s (see vmms --help)\n", c == ':' ? "a value is needed after" : "unknown option",
				argv[optind - 1]);
			return 1;
		}
	}
	if (optind < argc || !root) {
		if (optind < argc)
			fprintf(stderr, "vmms: unexpected argument %s (see vmms --help)\n", argv[optind]);
		else
			fprintf(stderr, "vmms: --root is required (see vmms --help)\n");
		return 1;
	}
	if (!foreground) {
		fprintf(stderr, "vmms: only --foreground is supported (run it under systemd: vmms/viridian-vmms.service)\n");
		return 1;
	}
	if (!sock || !*sock)
		sock = DEFAULT_SOCKET;

	/* The worker binary lives beside this one. */
	char self[PATH_MAX], vmwp[PATH_MAX + 8];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0) {
		fprintf(stderr, "vmms: /proc/self/exe: %s\n", strerror(errno));
		return 1;
	}
	self[n] = '\0';
	*strrchr(self, '/') = '\0';
	snprintf(vmwp, sizeof(vmwp), "%s/vmwp", self);
	if (getenv("VIRIDIAN_VMWP"))
		snprintf(vmwp, sizeof(vmwp), "%s", getenv("VIRIDIAN_VMWP"));

	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);

	char err[1024];
	if (vmms_init(&service, root, vmwp, err, sizeof(err)) < 0) {
		fprintf(stderr, "vmms: %s\n", err);
		return 1;
	}
	int lfd = listen_on(sock);
	if (lfd < 0) {
		vmms_fini(&service);
		return 1;
	}
	fprintf(stderr, "vmms: listening on %s, root %s, %d running VM(s) re-attached\n", sock, service.root, service.nworkers);

	bool quit = false;
	while (!quit) {
		struct pollfd fds[2 + MAX_CLIENTS + 2 * VMMS_MAX_WORKERS + VMMS_MAX_SWITCHES];
		int nf = 0, cidx[MAX_CLIENTS];
		fds[nf++] = (struct pollfd){ lfd, POLLIN, 0 };
		fds[nf++] = (struct pollfd){ sfd, POLLIN, 0 };
		int first_client = nf, nc = 0;
		for (int i = 0; i < MAX_CLIENTS; i++)
			if (clients[i]) {
				cidx[nc++] = i;
				fds[nf++] = (struct pollfd){ clients[i]->fd, POLLIN, 0 };
			}
		int first_worker = nf;
		for (int i = 0; i < service.nworkers; i++)
			if (service.workers[i].pidfd >= 0)
				fds[nf++] = (struct pollfd){ service.workers[i].pidfd, POLLIN, 0 };
		for (int i = 0; i < service.nworkers; i++) /* Save-VM: the worker's answer */
			if (service.workers[i].save_fd >= 0)
				fds[nf++] = (struct pollfd){ service.workers[i].save_fd, POLLIN, 0 };
		for (int i = 0; i < service.nswitches; i++) /* virtual switch processes */
			if (service.switches[i].pidfd >= 0)
				fds[nf++] = (struct pollfd){ service.switches[i].pidfd, POLLIN, 0 };
		int r = poll(fds, (nfds_t)nf, vmms_starting(&service) ? 20 : 500);
		if (r < 0 && errno != EINTR)
			break;
		if (fds[1].revents) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
				if (si.ssi_signo != SIGCHLD)
					quit = true;
		}
		bool worker_event = false;
		for (int i = first_worker; i < nf; i++)
			worker_event |= fds[i].revents != 0;
		if (worker_event || fds[1].revents)
			vmms_reap(&service);
		for (int k = 0; k < nc; k++)
			if (fds[first_client + k].revents && clients[cidx[k]])
				serve(cidx[k]);
		if (fds[0].revents & POLLIN) {
			int cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
			struct vmms_caller who;
			if (cfd >= 0 && (!vmms_caller_from_socket(cfd, &who) || !vmms_caller_may_manage(&who, viridian_gid))) {
				send_line(cfd, "{\"ok\":false,\"error\":\"access denied: you do not have the required permission to "
					       "manage virtual machines (root and members of group viridian do)\"}\n");
				close(cfd);
			} else if (cfd >= 0) {
				int slot = -1;
				for (int i = 0; i < MAX_CLIENTS && slot < 0; i++)
					if (!clients[i])
						slot = i;
				struct client *cl = slot >= 0 ? malloc(sizeof(*cl)) : NULL;
				if (!cl) {
					send_line(cfd, "{\"ok\":false,\"error\":\"too many clients\"}\n");
					close(cfd);
				} else {
					cl->fd = cfd;
					cl->who = who;
					cl->len = 0;
					clients[slot] = cl;
				}
			}
		}
		vmms_tick(&service);
	}
	fprintf(stderr, "vmms: exiting; running VMs keep running\n");
	for (int i = 0; i < MAX_CLIENTS; i++)
		if (clients[i])
			drop(i);
	close(lfd);
	unlink(sock);
	vmms_fini(&service);
	return 0;
}
