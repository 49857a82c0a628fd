/* JSON-lines control-socket client (see include/vmms/control_client.h). */
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "vmms/control_client.h"

#define REPLY_MAX (64u << 20) /* Get-VM of thousands of VMs fits; a runaway peer does not */

static bool send_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
		if (k <= 0)
			return false;
		p += k, n -= (size_t)k;
	}
	return true;
}

int control_send(const char *path, const char *line, int timeout_ms, enum control_call_error *why)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	*why = CONTROL_CALL_UNREACHABLE;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	/* A failed send is not the end: the peer may have answered and closed (access denied). */
	if (send_all(fd, line, strlen(line)))
		send_all(fd, "\n", 1);
	*why = CONTROL_CALL_OK;
	return fd;
}

json_t *control_recv(int fd, int timeout_ms, enum control_call_error *why)
{
	struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	json_t *r = NULL;
	size_t len = 0, cap = 16384;
	char *buf = malloc(cap);
	*why = CONTROL_CALL_LOST;
	while (buf) {
		if (len + 1 == cap) {
			char *more = cap < REPLY_MAX ? realloc(buf, cap * 2) : NULL;
			if (!more) {
				*why = CONTROL_CALL_MALFORMED;
				break;
			}
			buf = more, cap *= 2;
		}
		ssize_t k = recv(fd, buf + len, cap - 1 - len, 0);
		if (k <= 0) {
			if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				*why = CONTROL_CALL_TIMEOUT;
			break;
		}
		bool done = memchr(buf + len, '\n', (size_t)k) != NULL;
		len += (size_t)k;
		if (done) {
			buf[len] = '\0';
			r = json_loads(buf, JSON_DISABLE_EOF_CHECK, NULL);
			if (json_is_object(r)) {
				*why = CONTROL_CALL_OK;
			} else {
				json_decref(r);
				r = NULL;
				*why = CONTROL_CALL_MALFORMED;
			}
			break;
		}
	}
	free(buf);
	return r;
}

json_t *control_call(const char *path, const char *line, int timeout_ms, enum control_call_error *why)
{
	int fd = control_send(path, line, timeout_ms, why);
	if (fd < 0)
		return NULL;
	json_t *r = control_recv(fd, timeout_ms, why);
	close(fd);
	return r;
}
