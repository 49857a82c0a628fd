/* VIRIDIAN_CHECK_GUEST_WRITES: guest RAM the host may write only where the guest granted it. */
#include <errno.h>
#include <execinfo.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "worker/guest_guard.h"
#include "worker/linux_boot.h"
#include "worker/log.h"

#define PAGE 4096ull

static struct {
	uint8_t *view;               /* the devices' view; NULL: no guarded RAM */
	uint64_t size;
	struct guest_layout layout;  /* to name the GPA of a faulting address */
	pthread_mutex_t lock;        /* guards refs and the view's protections */
	uint32_t *refs;              /* per page: grants outstanding */
	struct sigaction old_segv;
} guard = { .lock = PTHREAD_MUTEX_INITIALIZER };

bool guest_guard_requested(void)
{
	const char *v = getenv("VIRIDIAN_CHECK_GUEST_WRITES");
	return v && strcmp(v, "1") == 0;
}

bool guest_guard_active(void)
{
	return guard.view != NULL;
}

/* ---- the fault report (async-signal-safe: no stdio, no malloc) ---- */

static size_t put_str(char *out, size_t pos, const char *s)
{
	while (*s)
		out[pos++] = *s++;
	return pos;
}

static size_t put_hex(char *out, size_t pos, uint64_t v)
{
	char digits[16];
	int n = 0;
	do {
		digits[n++] = "0123456789abcdef"[v & 15];
		v >>= 4;
	} while (v);
	pos = put_str(out, pos, "0x");
	while (n)
		out[pos++] = digits[--n];
	return pos;
}

static void on_segv(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	uint8_t *a = si->si_addr;
	if (si->si_code != SEGV_ACCERR || (uintptr_t)a - (uintptr_t)guard.view >= guard.size) {
		/* Not ours: the previous handler (or the default action) takes the fault when the
		 * instruction runs again; a sent signal is raised again for it. */
		sigaction(SIGSEGV, &guard.old_segv, NULL);
		if (si->si_code <= 0)
			raise(sig);
		return;
	}
	char line[200];
	size_t n = put_str(line, 0, "vmwp: host write into guest RAM the guest did not grant: gpa ");
	n = put_hex(line, n, guest_layout_gpa(&guard.layout, a));
	n = put_str(line, n, " (host address ");
	n = put_hex(line, n, (uint64_t)(uintptr_t)a);
	n = put_str(line, n, "); backtrace:\n");
	if (write(STDERR_FILENO, line, n) < 0)
		abort();
	void *frames[64];
	backtrace_symbols_fd(frames, backtrace(frames, 64), STDERR_FILENO);
	abort();
}

/* ---- mapping and grants ---- */

/* A bookkeeping bug: name it and who made it. */
static void fatal(const char *what)
{
	vlog("guest-write check: %s; backtrace:", what);
	void *frames[64];
	backtrace_symbols_fd(frames, backtrace(frames, 64), STDERR_FILENO);
	abort();
}

/* Pages [first, end) get prot; under guard.lock. */
static void protect(uint64_t first, uint64_t end, int prot)
{
	if (mprotect(guard.view + first * PAGE, (end - first) * PAGE, prot) != 0)
		fatal(errno == ENOMEM ? "mprotect: out of mappings (raise vm.max_map_count)" : strerror(errno));
}

void *guest_guard_map(uint64_t bytes, char *err, size_t errlen)
{
	if (guard.view) {
		snprintf(err, errlen, "guest-write check: guest RAM is mapped already");
		return NULL;
	}
	int fd = memfd_create("guest-ram", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, (off_t)bytes) < 0) {
		snprintf(err, errlen, "cannot allocate %lu MiB of guest memory: %s", bytes >> 20, strerror(errno));
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	void *ram = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	void *view = mmap(NULL, bytes, PROT_READ, MAP_SHARED, fd, 0);
	close(fd); /* the mappings keep the memory */
	uint32_t *refs = calloc((bytes + PAGE - 1) / PAGE, sizeof(*refs));
	if (ram == MAP_FAILED || view == MAP_FAILED || !refs) {
		snprintf(err, errlen, "cannot map %lu MiB of guest memory twice: %s", bytes >> 20, strerror(errno));
		if (ram != MAP_FAILED)
			munmap(ram, bytes);
		if (view != MAP_FAILED)
			munmap(view, bytes);
		free(refs);
		return NULL;
	}
	madvise(ram, bytes, MADV_HUGEPAGE);
	void *frame;
	backtrace(&frame, 1); /* loads libgcc's unwinder now: the fault handler must not */
	guard.refs = refs;
	guard.size = bytes;
	guest_layout_init(&guard.layout, view, bytes);
	guard.view = view;
	struct sigaction sa = { .sa_sigaction = on_segv, .sa_flags = SA_SIGINFO };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, &guard.old_segv);
	vlog("guest-write check on (VIRIDIAN_CHECK_GUEST_WRITES): host writes outside guest grants abort");
	return ram;
}

void *guest_guard_hva(uint64_t gpa, uint64_t len)
{
	return guest_layout_hva(&guard.layout, gpa, len);
}

void guest_guard_grant(void *hva, uint64_t len, bool on)
{
	uint64_t off = (uint64_t)((uintptr_t)hva - (uintptr_t)guard.view);
	if (!len)
		return;
	if (!guard.view || off >= guard.size || len > guard.size - off)
		fatal("grant outside guest RAM");
	uint64_t first = off / PAGE, last = (off + len - 1) / PAGE;
	pthread_mutex_lock(&guard.lock);
	/* Runs of pages whose count crosses zero change protection. */
	uint64_t run = 0;
	bool in_run = false;
	for (uint64_t p = first; p <= last; p++) {
		bool flips;
		if (on) {
			flips = guard.refs[p]++ == 0;
		} else {
			if (!guard.refs[p])
				fatal("write grant ended that was never given");
			flips = --guard.refs[p] == 0;
		}
		if (flips && !in_run) {
			run = p;
			in_run = true;
		} else if (!flips && in_run) {
			protect(run, p, on ? PROT_READ | PROT_WRITE : PROT_READ);
			in_run = false;
		}
	}
	if (in_run)
		protect(run, last + 1, on ? PROT_READ | PROT_WRITE : PROT_READ);
	pthread_mutex_unlock(&guard.lock);
}
