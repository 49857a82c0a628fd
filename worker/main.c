/* vmwp: the worker process of one VM (the seed's VMWP). Boots a Linux kernel directly, given
 * or found on its first disk (docs/boot.md), into a Hyper-V-style partition and runs it until
 * the guest powers off.
 * Exit status: 0 guest powered off, 1 error, 3 guest reset with --no-reboot. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "vsp/ic.h"
#include "worker/clock.h"
#include "worker/control.h"
#include "worker/copy_file.h"
#include "worker/diskboot.h"
#include "worker/linux_boot.h"
#include "worker/log.h"
#include "worker/migrate.h"
#include "worker/net.h"
#include "worker/options.h"
#include "worker/sandbox.h"
#include "worker/saved_state.h"
#include "worker/storage.h"
#include "worker/vm.h"

#define EXIT_GUEST_RESET 3
#define CTRL_A 0x01
#define TICK_MS 500 /* integration services want a tick at least every second */

/* Whole file into memory; NULL with errno on failure. */
static uint8_t *read_file(const char *path, size_t *size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct stat st;
	uint8_t *buf = NULL;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (buf = malloc(st.st_size ? (size_t)st.st_size : 1))) {
		size_t done = 0;
		while (done < (size_t)st.st_size) {
			ssize_t n = read(fd, buf + done, (size_t)st.st_size - done);
			if (n <= 0) {
				free(buf);
				buf = NULL;
				if (n == 0)
					errno = EIO;
				break;
			}
			done += (size_t)n;
		}
		*size = done;
	} else if (!buf && S_ISREG(st.st_mode) == 0) {
		errno = EINVAL;
	}
	int saved = errno;
	close(fd);
	errno = saved;
	return buf;
}

/* Opens a saved state and checks its header against this VM's configuration; NULL after saying
 * why. */
static void saved_state_warning(void *ctx, const char *message)
{
	vlog("saved state %s: %s", (const char *)ctx, message);
}

static struct state_reader *open_saved_state(const char *path, const uint8_t digest[STATE_DIGEST_SIZE], int *fd_out)
{
	int fd = *fd_out = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		vfail("cannot restore %s: %s", path, strerror(errno));
		return NULL;
	}
	struct state_reader_options ro = { .expected_digest = digest, .warn = saved_state_warning, .warn_ctx = (void *)path };
	struct state_reader *r;
	if (state_reader_open(&r, fd, &ro) < 0) {
		vfail("cannot restore %s: %s", path, state_last_error());
		return NULL;
	}
	return r;
}

/* Removes --restore and --incoming (PATH as the next argument or after '=') from argv, in
 * place, keeping its NULL end. */
static void drop_restore(char **argv)
{
	int out = 0;
	for (int i = 0; argv[i]; i++) {
		if ((!strcmp(argv[i], "--restore") || !strcmp(argv[i], "--incoming")) && argv[i + 1]) {
			i++;
			continue;
		}
		if (!strncmp(argv[i], "--restore=", 10) || !strncmp(argv[i], "--incoming=", 11))
			continue;
		argv[out++] = argv[i];
	}
	argv[out] = NULL;
}

/* --incoming: the disks and adapters are opened once the source has let go of them. */
static int attach_incoming(void *ctx)
{
	struct vm *vm = ((void **)ctx)[0];
	const struct worker_options *o = ((void **)ctx)[1];
	char err[512];
	if (!worker_open_disks(o, err, sizeof(err)) || !worker_open_nics(o, err, sizeof(err)) ||
	    !worker_attach_disks(&vm->vmbus, err, sizeof(err)) || !worker_attach_nics(&vm->vmbus, err, sizeof(err)))
		return state_fail(-EBUSY, "%s", err);
	return 0;
}

static struct termios saved_tty;
static bool tty_raw;

static void restore_tty(void)
{
	if (tty_raw)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved_tty);
}

/* A terminal on stdin goes raw so the guest gets every key; Ctrl-A x leaves. */
static void console_raw(void)
{
	if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved_tty) < 0)
		return;
	struct termios raw = saved_tty;
	cfmakeraw(&raw);
	raw.c_oflag |= OPOST | ONLCR;
	if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0) {
		tty_raw = true;
		atexit(restore_tty);
	}
}

/* The worker's own loop: console input to the UART, control requests and periodic
 * integration-service work, until the VM stops. */
static void run_loop(struct vm *vm, bool console_input, struct control *ctl)
{
	struct pollfd fds[2 + 1 + CONTROL_MAX_CLIENTS];
	uint8_t pending[256];
	size_t npending = 0;
	bool ctrl_a = false, input_open = console_input;
	while (__atomic_load_n(&vm->exit, __ATOMIC_ACQUIRE) == VM_RUNNING) {
		fds[0] = (struct pollfd){ .fd = vm->event_fd, .events = POLLIN };
		/* While the UART's FIFO is full, wait for the guest to drain it. */
		fds[1] = (struct pollfd){ .fd = input_open && !npending ? STDIN_FILENO : -1, .events = POLLIN };
		int nctl = control_pollfds(ctl, fds + 2, 1 + CONTROL_MAX_CLIENTS);
		if (poll(fds, (nfds_t)(2 + nctl), npending ? 10 : TICK_MS) < 0 && errno != EINTR)
			break;
		uint64_t now = monotonic_ns();
		vmbus_host_tick(&vm->vmbus, now);
		worker_copy_file_tick(&vm->vmbus, now / 1000000);
		worker_disks_tick(vm);
		control_handle(ctl, fds + 2, nctl);
		if (npending) {
			size_t n = uart_receive(&vm->com1, pending, npending);
			memmove(pending, pending + n, npending - n);
			npending -= n;
		}
		if (fds[1].fd >= 0 && (fds[1].revents & (POLLIN | POLLHUP))) {
			uint8_t buf[256];
			ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
			if (n <= 0) {
				input_open = false; /* end of input: the guest keeps running */
				continue;
			}
			for (ssize_t i = 0; i < n; i++) {
				if (tty_raw && ctrl_a && buf[i] == 'x') {
					vm_request_exit(vm, VM_STOPPED, NULL);
					return;
				}
				ctrl_a = tty_raw && buf[i] == CTRL_A && !ctrl_a;
				if (!ctrl_a && npending < sizeof(pending))
					pending[npending++] = buf[i];
			}
			size_t sent = uart_receive(&vm->com1, pending, npending);
			memmove(pending, pending + sent, npending - sent);
			npending -= sent;
		}
	}
}

/* The folders a sandboxed worker keeps (its disks', console log's, control socket's and saved
 * states'), the files it may still read (a reset boots the kernel again) and its identity. */
static void sandbox_config_for(const struct worker_options *o, struct sandbox_config *c, char dirs[][PATH_MAX])
{
	memset(c, 0, sizeof(*c));
	c->id = o->control_path ? o->control_path : o->serial_path ? o->serial_path : "vmwp";
	const char *rw[WORKER_MAX_DISKS + 3];
	unsigned n = 0;
	for (unsigned i = 0; i < o->ndisks; i++)
		rw[n++] = o->disks[i].path;
	rw[n++] = o->control_path;
	rw[n++] = o->serial_path;
	rw[n++] = o->restore_path;
	const char *recorder = getenv("VIRIDIAN_FLIGHT_RECORDER"); /* reopened by a reset's re-exec */
	if (recorder && *recorder && c->nrw < SANDBOX_MAX_PATHS)
		c->rw_paths[c->nrw++] = recorder;
	/* The folder each path names (not where a symlink there points). */
	for (unsigned i = 0; i < n && c->nrw < SANDBOX_MAX_PATHS; i++) {
		if (!rw[i])
			continue;
		char dir[PATH_MAX];
		snprintf(dir, sizeof(dir), "%s", rw[i]);
		char *slash = strrchr(dir, '/');
		if (!slash)
			snprintf(dir, sizeof(dir), ".");
		else
			slash[slash == dir] = 0; /* "/x": "/" */
		if (realpath(dir, dirs[c->nrw])) {
			c->rw_paths[c->nrw] = dirs[c->nrw];
			c->nrw++;
		}
	}
	if (o->kernel)
		c->ro_paths[c->nro++] = o->kernel;
	if (o->initrd)
		c->ro_paths[c->nro++] = o->initrd;
	for (unsigned i = 0; i < o->nnics; i++)
		c->has_tap |= o->nics[i].tap[0] != 0;
}

int main(int argc, char **argv)
{
	struct worker_options opt;
	char err[512];
	signal(SIGPIPE, SIG_IGN); /* a peer's socket that goes away is an error return, not death */
	if (!sandbox_hold_self()) {
		fprintf(stderr, "vmwp: error: cannot hold its own program file: %s\n", strerror(errno));
		return 1;
	}
	if (!worker_options_parse(&opt, argc, argv, err, sizeof(err))) {
		fprintf(stderr, "vmwp: error: %s (see vmwp --help)\n", err);
		return 1;
	}
	if (opt.help) {
		fputs(worker_options_usage(), stdout);
		return 0;
	}

	/* Booting from disk: the sandboxed loader is forked before anything of the VM exists, so
	 * it inherits nothing but what it needs. */
	struct diskboot_result fromdisk = { .kernel = NULL };
	bool boot_from_disk = !opt.kernel && !opt.restore_path && !opt.incoming;
	if (boot_from_disk) {
		if (!diskboot_load(opt.disks[0].path, opt.memory, &fromdisk, err, sizeof(err)))
			return vfail("%s", err);
	}

	/* Everything that needs no KVM first: on a host without it, bad input still gets its own
	 * error, and a good one the single line saying what to do about KVM. */
	int console_fd = STDOUT_FILENO;
	if (opt.serial_path) {
		console_fd = open(opt.serial_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (console_fd < 0)
			return vfail("cannot open serial log %s: %s", opt.serial_path, strerror(errno));
	}
	size_t kernel_size = 0, initrd_size = 0;
	uint8_t *kernel = NULL, *initrd = NULL;
	struct bzimage bz;
	const char *why;
	const char *cmdline = opt.cmdline;
	if (boot_from_disk) {
		kernel = fromdisk.kernel, kernel_size = fromdisk.kernel_size;
		initrd = fromdisk.initrd, initrd_size = fromdisk.initrd_size;
		cmdline = fromdisk.cmdline;
		if ((why = bzimage_parse(&bz, kernel, kernel_size))) {
			vfail("cannot boot from disk %s: the kernel of %s: %s", opt.disks[0].path, fromdisk.what, why);
			diskboot_free(&fromdisk);
			return 1;
		}
		vlog("booting %s from %s", fromdisk.what, opt.disks[0].path);
	} else if (opt.kernel) { /* with --restore: checked now, booted when the guest resets */
		if (!(kernel = read_file(opt.kernel, &kernel_size)))
			return vfail("cannot read kernel %s: %s", opt.kernel, strerror(errno));
		if ((why = bzimage_parse(&bz, kernel, kernel_size)))
			return vfail("kernel %s: %s", opt.kernel, why);
	}
	if (opt.initrd && !(initrd = read_file(opt.initrd, &initrd_size)))
		return vfail("cannot read initrd %s: %s", opt.initrd, strerror(errno));
	struct vm_config cfg = { .memory = opt.memory, .cpus = opt.cpus, .console_fd = console_fd,
				 .disabled_ics = opt.disabled_ics };
	if (!vm_config_check(&cfg, err, sizeof(err)))
		return vfail("%s", err);
	if (kernel && (why = linux_boot_check(cfg.memory, &bz, initrd_size, cmdline)))
		return vfail("%s", why);
	uint8_t digest[STATE_DIGEST_SIZE];
	if (worker_state_digest(&opt, digest) < 0)
		return vfail("%s", state_last_error());
	struct state_reader *saved = NULL;
	int saved_fd = -1;
	if (opt.restore_path && !(saved = open_saved_state(opt.restore_path, digest, &saved_fd)))
		return 1;
	/* A migration's source still holds the disks and adapters: opened when it lets go. */
	if (!opt.incoming && (!worker_open_disks(&opt, err, sizeof(err)) || !worker_open_nics(&opt, err, sizeof(err))))
		return vfail("%s", err);
	struct migrate_conn incoming = { .fd = -1 };
	struct migrate_tls_config tls = { opt.migration_cert, opt.migration_key, opt.migration_trust };
	if (opt.incoming && migrate_accept(opt.incoming, &tls, &incoming, err, sizeof(err)) < 0)
		return vfail("%s", err);

	struct vm *vm = vm_create(&cfg, err, sizeof(err));
	if (!vm)
		return vfail("%s", err);
	memcpy(vm->config_digest, digest, sizeof(digest));
	/* Everything the VM needs from the host is open: the worker enters its sandbox before any
	 * device thread starts, so each narrows itself to its kind. */
	struct control ctl;
	if (!control_open(&ctl, vm, opt.control_path, err, sizeof(err)))
		return vfail("%s", err);
	struct sandbox_config sbc;
	static char sandbox_dirs[SANDBOX_MAX_PATHS][PATH_MAX];
	sandbox_config_for(&opt, &sbc, sandbox_dirs);
	if (!sandbox_enter(sandbox_mode(), &sbc, err, sizeof(err)))
		return vfail("%s", err);
	if (opt.incoming) {
		uint64_t start = monotonic_ns();
		void *ctx[2] = { vm, &opt };
		int rc = migrate_receive(vm, incoming.fd, attach_incoming, ctx);
		migrate_close(&incoming); /* an ERROR goes out before the worker exits */
		if (rc < 0)
			return vfail("live migration from %s failed: %s", opt.incoming, state_last_error());
		vmbus_host_restored(&vm->vmbus, hv_reference_time(&vm->hv, 0));
		pthread_mutex_lock(&vm->vmbus.lock);
		if (vm->vmbus.timesync)
			ic_timesync_send(vm->vmbus.timesync, ICTIMESYNCFLAG_SYNC);
		pthread_mutex_unlock(&vm->vmbus.lock);
		vlog("live migration received in %llu ms", (unsigned long long)((monotonic_ns() - start) / 1000000));
	} else if (saved) {
		/* The devices are registered in the saved VM's order before their sections are read. */
		if (!worker_attach_disks(&vm->vmbus, err, sizeof(err)) || !worker_attach_nics(&vm->vmbus, err, sizeof(err)))
			return vfail("%s", err);
		uint64_t restore_start = monotonic_ns();
		if (vm_restore(vm, saved, NULL, NULL) < 0)
			return vfail("cannot restore %s: %s", opt.restore_path, state_last_error());
		state_reader_close(saved);
		close(saved_fd);
		vmbus_host_restored(&vm->vmbus, hv_reference_time(&vm->hv, 0));
		/* The guest's clock stood still since the save: step it to now, as Hyper-V does. */
		pthread_mutex_lock(&vm->vmbus.lock);
		if (vm->vmbus.timesync)
			ic_timesync_send(vm->vmbus.timesync, ICTIMESYNCFLAG_SYNC);
		pthread_mutex_unlock(&vm->vmbus.lock);
		vlog("restored from %s in %llu ms", opt.restore_path,
		     (unsigned long long)((monotonic_ns() - restore_start) / 1000000));
	} else {
		struct boot_info boot;
		if ((why = linux_boot_load(&vm->mem, &bz, initrd, initrd_size, cmdline, vm->rsdp, &boot)))
			return vfail("%s", why);
		if (!vm_setup_linux_entry(vm, &boot, err, sizeof(err)) ||
		    !worker_attach_disks(&vm->vmbus, err, sizeof(err)) || !worker_attach_nics(&vm->vmbus, err, sizeof(err)))
			return vfail("%s", err);
	}
	free(kernel);
	free(initrd);

	bool console_input = !opt.serial_path;
	if (console_input)
		console_raw();
	if (!vm_start(vm, err, sizeof(err)))
		return vfail("%s", err);
	run_loop(vm, console_input, &ctl);
	enum vm_exit exit = vm_stop(vm);
	control_close(&ctl);
	restore_tty();
	tty_raw = false;

	switch (exit) {
	case VM_POWER_OFF:
		vlog("guest powered off");
		return 0;
	case VM_RESET:
		if (opt.no_reboot) {
			vlog("guest reset (%s; --no-reboot)", vm->error[0] ? vm->error : "reset");
			return EXIT_GUEST_RESET;
		}
		if (!opt.kernel && !opt.ndisks) {
			vlog("guest reset (%s): no --kernel or disk to boot it again", vm->error[0] ? vm->error : "reset");
			return EXIT_GUEST_RESET;
		}
		vlog("guest reset (%s): restarting", vm->error[0] ? vm->error : "reset");
		/* exec runs no atexit handlers. The adapters' threads call into the VMBus on their
		 * own: stop them before it goes. Closing storvsp's channels (in vm_destroy) waits for
		 * its disk work, so its idle threads and the disks go after. */
		worker_detach_nics();
		vm_destroy(vm);
		worker_disks_exec_argv(argv); /* the images a disk-switch or merge left on each LUN */
		worker_detach_disks();
		drop_restore(argv); /* the guest boots afresh: from disk, what its configuration says now */
		sandbox_reexec(argv);
		return vfail("cannot restart the worker: %s", strerror(errno));
	case VM_STOPPED:
		vlog("stopped by the host");
		return 0;
	case VM_MIGRATED:
		/* The destination has the disks now: no close, no flush (quiesced before the hand-over). */
		vlog("live-migrated: the VM runs on the destination");
		fflush(NULL);
		_exit(0);
	case VM_FAILED:
	default:
		return vfail("%s", vm->error[0] ? vm->error : "the VM stopped unexpectedly");
	}
}
