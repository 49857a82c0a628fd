/* Copy-VMFile: a host file into the guest over the Guest Service Interface. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vsp/fcopy.h"
#include "worker/copy_file.h"
#include "worker/log.h"

/* The current or last copy (a worker runs one VM, and its guest one copy at a time). */
static struct {
	int fd;                 /* the source while the copy runs; -1 after */
	bool started;
	bool logged;            /* its end was logged */
	char source[4096], destination[4096];
	uint64_t started_ms;
} copy = { .fd = -1 };

static int read_source(void *ctx, uint64_t offset, void *buf, uint32_t len)
{
	(void)ctx;
	uint32_t got = 0;
	while (got < len) {
		ssize_t n = pread(copy.fd, (char *)buf + got, len - got, (off_t)(offset + got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ENODATA; /* the file got shorter than it was when the copy started */
		got += (uint32_t)n;
	}
	return (int)got;
}

static void describe_error(struct ic_dev *dev, char *out, size_t len)
{
	enum ic_fcopy_error e = ic_fcopy_error(dev);
	uint32_t hr = ic_fcopy_hresult(dev);
	const char *text = ic_fcopy_hresult_text(hr);
	switch (e) {
	case IC_FCOPY_OK:
		snprintf(out, len, "%s", "");
		break;
	case IC_FCOPY_E_GUEST:
		snprintf(out, len, "the guest refused: %s (0x%08x)", text ? text : "it could not create or write the file", hr);
		break;
	case IC_FCOPY_E_SOURCE: {
		int se = ic_fcopy_source_errno(dev);
		snprintf(out, len, "reading %s: %s", copy.source,
			 se == ENODATA ? "the file got shorter during the copy" : strerror(se));
		break;
	}
	default:
		snprintf(out, len, "%s", ic_fcopy_error_name(e));
		break;
	}
}

int worker_copy_file_start(struct vmbus_host *h, const char *source, const char *dest, bool overwrite,
			   bool create_path, uint64_t now_ms, char *err, size_t errlen)
{
	if (!h->fcopy) {
		snprintf(err, errlen, "the Guest Service Interface is disabled (Enable-VMIntegrationService)");
		return -1;
	}
	const char *slash = dest ? strrchr(dest, '/') : NULL;
	if (!dest || dest[0] != '/' || !slash[1] || !strcmp(slash + 1, ".") || !strcmp(slash + 1, "..")) {
		snprintf(err, errlen, "the destination must be an absolute guest path that names the file");
		return -1;
	}
	if (strlen(source) >= sizeof(copy.source) || strlen(dest) >= sizeof(copy.destination)) {
		snprintf(err, errlen, "path too long");
		return -1;
	}
	/* The folder with a slash at its end: hv_fcopy_daemon creates (CREATE_PATH) only the
	 * components a '/' follows, so the last one too. */
	char dir[4096];
	snprintf(dir, sizeof(dir), "%.*s/", (int)(slash - dest), dest);
	if (slash == dest)
		snprintf(dir, sizeof(dir), "/");
	int fd = open(source, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: %s", source, fd < 0 ? strerror(errno) : "not a regular file");
		if (fd >= 0)
			close(fd);
		return -1;
	}
	pthread_mutex_lock(&h->lock);
	int old = copy.fd;
	copy.fd = fd;
	int rc = ic_fcopy_busy(h->fcopy) ? -EBUSY
		 : ic_fcopy_start(h->fcopy, dir, slash + 1, (uint64_t)st.st_size,
				  (overwrite ? HV_FCOPY_OVERWRITE : 0) | (create_path ? HV_FCOPY_CREATE_PATH : 0), read_source,
				  NULL, now_ms);
	if (rc < 0) {
		copy.fd = old;
	} else {
		if (old >= 0)
			close(old); /* the last copy's, if its end was not ticked yet */
		copy.started = true;
		copy.logged = false;
		copy.started_ms = now_ms;
		snprintf(copy.source, sizeof(copy.source), "%s", source);
		snprintf(copy.destination, sizeof(copy.destination), "%s", dest);
	}
	pthread_mutex_unlock(&h->lock);
	if (rc < 0) {
		close(fd);
		snprintf(err, errlen, "%s", rc == -EBUSY ? "a file copy into the guest is in progress"
					    : rc == -ENOTCONN ? "the guest's Guest Service Interface is not running (hv_utils)"
					    : "the destination is not a valid guest path (UTF-8, at most 259 bytes "
					      "for the folder and for the name)");
		return -1;
	}
	vlog("copy-file: %s -> guest %s (%lld bytes)", source, dest, (long long)st.st_size);
	return 0;
}

int worker_copy_file_cancel(struct vmbus_host *h, uint64_t now_ms)
{
	pthread_mutex_lock(&h->lock);
	int rc = h->fcopy ? ic_fcopy_cancel(h->fcopy, now_ms) : -1;
	pthread_mutex_unlock(&h->lock);
	return rc;
}

bool worker_copy_file_busy(struct vmbus_host *h)
{
	pthread_mutex_lock(&h->lock);
	bool busy = h->fcopy && ic_fcopy_busy(h->fcopy);
	pthread_mutex_unlock(&h->lock);
	return busy;
}

json_t *worker_copy_file_status(struct vmbus_host *h)
{
	pthread_mutex_lock(&h->lock);
	json_t *r = NULL;
	if (h->fcopy && copy.started) {
		char error[4608];
		describe_error(h->fcopy, error, sizeof(error));
		r = json_pack("{s:s, s:s, s:s, s:I, s:I, s:s}", "state", ic_fcopy_state_name(ic_fcopy_state(h->fcopy)),
			      "source", copy.source, "destination", copy.destination,
			      "bytes", (json_int_t)ic_fcopy_bytes_done(h->fcopy), "total", (json_int_t)ic_fcopy_size(h->fcopy),
			      "error", error);
	}
	pthread_mutex_unlock(&h->lock);
	return r;
}

void worker_copy_file_tick(struct vmbus_host *h, uint64_t now_ms)
{
	pthread_mutex_lock(&h->lock);
	if (h->fcopy && copy.started && !copy.logged && !ic_fcopy_busy(h->fcopy)) {
		copy.logged = true;
		if (copy.fd >= 0)
			close(copy.fd);
		copy.fd = -1;
		char error[4608];
		describe_error(h->fcopy, error, sizeof(error));
		uint64_t ms = now_ms - copy.started_ms, bytes = ic_fcopy_bytes_done(h->fcopy);
		if (ic_fcopy_state(h->fcopy) == IC_FCOPY_DONE)
			vlog("copy-file: %s: %llu bytes in %llu ms (%.1f MB/s)", copy.destination, (unsigned long long)bytes,
			     (unsigned long long)ms, ms ? (double)bytes / 1000.0 / (double)ms : 0.0);
		else
			vlog("copy-file: %s failed after %llu bytes: %s", copy.destination, (unsigned long long)bytes, error);
	}
	pthread_mutex_unlock(&h->lock);
}
