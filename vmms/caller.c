/* Who asks (include/vmms/service.h, struct vmms_caller): the management socket's access rule,
 * and file paths resolved with the caller's own rights (docs/security.md). vmms runs as root;
 * a path a non-root admin names is opened by a child that has become the caller, so vmms never
 * reaches a file for someone who could not reach it themselves. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

bool vmms_caller_from_socket(int fd, struct vmms_caller *c)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);
	memset(c, 0, sizeof(*c));
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
		return false;
	c->uid = cr.uid;
	c->gid = cr.gid;
	/* The peer's supplementary groups as its process has them; where the kernel cannot say,
	 * those the group database gives its user. */
	len = sizeof(c->groups);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, c->groups, &len) == 0) {
		c->ngroups = (int)(len / sizeof(gid_t));
	} else {
		struct passwd *pw = getpwuid(cr.uid);
		int n = VMMS_CALLER_MAX_GROUPS;
		if (pw && getgrouplist(pw->pw_name, cr.gid, c->groups, &n) >= 0)
			c->ngroups = n;
	}
	return true;
}

bool vmms_caller_may_manage(const struct vmms_caller *c, gid_t admins)
{
	if (c->uid == 0 || c->uid == geteuid())
		return true;
	if (admins == (gid_t)-1)
		return false;
	if (c->gid == admins)
		return true;
	for (int i = 0; i < c->ngroups; i++)
		if (c->groups[i] == admins)
			return true;
	/* A member in the group database whose session predates it still counts. */
	struct passwd *pw = getpwuid(c->uid);
	gid_t groups[VMMS_CALLER_MAX_GROUPS];
	int n = VMMS_CALLER_MAX_GROUPS;
	if (pw && getgrouplist(pw->pw_name, c->gid, groups, &n) >= 0)
		for (int i = 0; i < n; i++)
			if (groups[i] == admins)
				return true;
	return false;
}

/* What the child reports: 0 and the file's identity and canonical path, or an errno. */
struct probe {
	int err;
	dev_t dev;
	ino_t ino;
	char canon[PATH_MAX];
};

/* In a child as the caller: opens path (no symlink as its last component; a regular file, or a
 * folder the caller may create in with dir) and reports it on fd out. Async-signal-safe only. */
static void probe_as_caller(const struct vmms_caller *c, const char *path, int mode, int out)
{
	struct probe p = { 0 };
	int fd = -1;
	if (setgroups((size_t)c->ngroups, c->groups) < 0 || setresgid(c->gid, c->gid, c->gid) < 0 ||
	    setresuid(c->uid, c->uid, c->uid) < 0) {
		p.err = errno;
	} else if (mode == VMMS_CALLER_DIR) {
		fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0 || faccessat(fd, ".", W_OK | X_OK, 0) < 0)
			p.err = errno;
	} else {
		fd = open(path, (mode == VMMS_CALLER_WRITE ? O_RDWR : O_RDONLY) | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
		if (fd < 0)
			p.err = errno;
	}
	struct stat st;
	if (!p.err && fstat(fd, &st) < 0)
		p.err = errno;
	if (!p.err && (mode == VMMS_CALLER_DIR ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode)))
		p.err = mode == VMMS_CALLER_DIR ? ENOTDIR : EINVAL;
	if (!p.err) {
		char link[32] = "/proc/self/fd/";
		int n = 14, v = fd, digits = 1;
		for (int t = v; t >= 10; t /= 10)
			digits++;
		for (int i = digits - 1; i >= 0; i--, v /= 10)
			link[n + i] = (char)('0' + v % 10);
		link[n + digits] = 0;
		ssize_t len = readlink(link, p.canon, sizeof(p.canon) - 1);
		if (len <= 0)
			p.err = errno ? errno : EIO;
		else
			p.canon[len] = 0;
		p.dev = st.st_dev;
		p.ino = st.st_ino;
	}
	ssize_t w = write(out, &p, sizeof(p));
	_exit(w == (ssize_t)sizeof(p) ? 0 : 1);
}

int vmms_caller_resolve(const struct vmms_caller *c, const char *path, int mode, char *canon, size_t canonlen, int *err)
{
	*err = 0;
	if (!path || path[0] != '/') {
		*err = EINVAL;
		return -1;
	}
	if (c->uid == 0 || c->uid == geteuid()) { /* it reaches what vmms reaches: the path as given */
		if ((size_t)snprintf(canon, canonlen, "%s", path) >= canonlen) {
			*err = ENAMETOOLONG;
			return -1;
		}
		return 0;
	}
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		*err = errno;
		return -1;
	}
	pid_t pid = fork();
	if (pid == 0) {
		close(pfd[0]);
		probe_as_caller(c, path, mode, pfd[1]);
	}
	close(pfd[1]);
	struct probe p;
	ssize_t n = pid > 0 ? read(pfd[0], &p, sizeof(p)) : -1;
	int saved = errno;
	close(pfd[0]);
	if (pid > 0)
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
	if (n != (ssize_t)sizeof(p)) {
		*err = pid < 0 ? saved : EIO;
		return -1;
	}
	if (p.err) {
		*err = p.err;
		return -1;
	}
	/* The same file for vmms: a component swapped for a symlink since the check shows here. */
	int fd = open(p.canon, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	bool same = fd >= 0 && fstat(fd, &st) == 0 && st.st_dev == p.dev && st.st_ino == p.ino;
	if (fd >= 0)
		close(fd);
	if (!same) {
		*err = ESTALE;
		return -1;
	}
	if ((size_t)snprintf(canon, canonlen, "%s", p.canon) >= canonlen) {
		*err = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

const char *vmms_caller_why(int err)
{
	switch (err) {
	case EACCES:
	case EPERM:
		return "General access denied error (0x80070005): not with your rights";
	case ELOOP:
		return "it is a symbolic link (name the file itself)";
	case ESTALE:
		return "it changed while it was being checked";
	case EINVAL:
		return "not a regular file (absolute path needed)";
	default:
		return strerror(err);
	}
}
