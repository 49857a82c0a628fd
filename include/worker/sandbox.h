/* The worker's sandbox: what a vmwp may still do once its VM is set up (docs/security.md).
 *
 * sandbox_enter runs once, after everything the VM needs at start is open and before the first
 * vCPU runs. In order, it:
 *   1. (sandbox_hold_self, at start) has closed every inherited descriptor but stdin/out/err,
 *      so what is open is what the worker opened for its VM; glibc's lazy loads that would open
 *      files on a device thread later (the time zone, for gmtime_r) are done now;
 *   2. unshares the mount, IPC and UTS namespaces, and the network one when no tap is in use
 *      (a switch port is a path Unix socket, which reaches across network namespaces); mounts
 *      propagate nowhere;
 *   3. sets NO_NEW_PRIVS and, where the kernel has Landlock, limits the file system to: reading
 *      and executing the system's libraries and this program; reading the files in ro_paths;
 *      full use of the folders in rw_paths (the VM's own: its disks, console log, control socket,
 *      saved states; a file there: reading and writing it); /dev/kvm, /dev/net/tun and /dev/null;
 *   4. drops to the VM's own identity (uid == gid, from SANDBOX_UID_BASE + a hash of id, or a
 *      configured user), keeping CAP_DAC_OVERRIDE (root's files in the VM's folders) and, with a
 *      tap, CAP_NET_ADMIN, as ambient capabilities so that a reset's re-exec keeps them; every
 *      other capability leaves the bounding set;
 *   5. loads the process-wide seccomp allow-list (SANDBOX_CONTROL), all threads at once.
 * Steps 2 and 4 need root; a worker run by a user of the KVM device's group skips them (it has
 * no privilege to drop) and says so.
 * Threads narrow themselves further with sandbox_thread (the filters stack: a call must pass
 * both). A re-exec'd worker (a guest reset) finds the sandbox in place and keeps it: all of the
 * above survives execve (a new process's filters stack on; none is added twice).
 *
 * The thread kinds and what each may call are data in worker/sandbox.c; the mode comes from
 * VIRIDIAN_SANDBOX: "1" (or any other value) kills the process on a call outside the lists,
 * "log" lets it through and logs it (kernel audit log); unset or "0": no sandbox (the default
 * until live migration and DVD media changes are in the lists).
 * VIRIDIAN_SANDBOX_USER=NAME runs the worker as that user instead of a per-VM identity. */
#ifndef VIRIDIAN_WORKER_SANDBOX_H
#define VIRIDIAN_WORKER_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* The per-VM identities: SANDBOX_UID_BASE .. SANDBOX_UID_BASE + SANDBOX_UID_COUNT - 1 (Hyper-V's
 * virtual accounts); nothing else on the host should use them. */
#define SANDBOX_UID_BASE 0x7ffe0000u
#define SANDBOX_UID_COUNT 0x10000u

/* The program's own file, held open at this number for the reset's re-exec: the only execveat
 * the control filter allows is of this descriptor. */
#define SANDBOX_SELF_FD 1000

enum sandbox_mode { SANDBOX_OFF, SANDBOX_KILL, SANDBOX_LOG };

enum sandbox_kind {
	SANDBOX_CONTROL, /* the main thread and everything the process may do at all */
	SANDBOX_VCPU,    /* KVM_RUN and the device emulation it runs into */
	SANDBOX_IO,      /* disk and network data movers: read/write files and sockets */
};

#define SANDBOX_MAX_PATHS 48

struct sandbox_config {
	const char *id;                        /* names the per-VM identity (e.g. the control socket path) */
	const char *rw_paths[SANDBOX_MAX_PATHS]; /* folders the worker keeps full use of (or files: read, write) */
	unsigned nrw;
	const char *ro_paths[SANDBOX_MAX_PATHS]; /* files or folders it may still read */
	unsigned nro;
	bool has_tap; /* keeps the host network namespace and CAP_NET_ADMIN */
};

/* From VIRIDIAN_SANDBOX (unset or "0": SANDBOX_OFF; an unknown value is SANDBOX_KILL). */
enum sandbox_mode sandbox_mode(void);

/* Holds the program's own file at SANDBOX_SELF_FD (call first, before anything is opened; a
 * no-op with the sandbox off). false with errno on failure. */
bool sandbox_hold_self(void);

/* Re-executes the program from SANDBOX_SELF_FD (or /proc/self/exe with the sandbox off). Returns
 * only on failure, with errno. */
void sandbox_reexec(char **argv);

/* The per-VM uid for id. */
uid_t sandbox_uid_for(const char *id);

/* Steps 1-5 above; with mode SANDBOX_OFF, nothing. false with a message in err. */
bool sandbox_enter(enum sandbox_mode mode, const struct sandbox_config *c, char *err, size_t errlen);

/* Narrows the calling thread to kind's list (once sandbox_enter has run; a no-op otherwise, so
 * thread code calls it unconditionally). Kills the process if the filter cannot be loaded. */
void sandbox_thread(enum sandbox_kind kind);

/* Loads kind's filter on the calling thread alone with mode's action for anything outside it,
 * without the rest of sandbox_enter (the unit tests). 0 or -errno. */
int sandbox_load_filter(enum sandbox_kind kind, enum sandbox_mode mode, bool all_threads);

#endif
