/* vmwp command-line parsing. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "vsp/io_limit.h"
#include "vswitch/port.h"
#include "vswitch/switch.h"
#include "worker/options.h"
#include "worker/vm.h"

bool parse_memory_size(const char *s, uint64_t *bytes)
{
	if (!s || !isdigit((unsigned char)*s))
		return false;
	errno = 0;
	char *end;
	unsigned long long n = strtoull(s, &end, 10);
	if (errno)
		return false;
	static const struct { const char *suffix; unsigned shift; } units[] = {
		{ "", 20 }, { "M", 20 }, { "MB", 20 }, { "MiB", 20 },
		{ "G", 30 }, { "GB", 30 }, { "GiB", 30 },
		{ "T", 40 }, { "TB", 40 }, { "TiB", 40 },
		{ "K", 10 }, { "KB", 10 }, { "KiB", 10 },
	};
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcasecmp(end, units[i].suffix) == 0) {
			if (n > (UINT64_MAX >> units[i].shift))
				return false;
			*bytes = (uint64_t)n << units[i].shift;
			return true;
		}
	}
	return false;
}

const char *worker_ic_name(unsigned ic)
{
	static const char *const names[WORKER_IC_COUNT] = { "heartbeat", "shutdown", "timesync", "kvp", "vss", "fcopy" };
	return ic < WORKER_IC_COUNT ? names[ic] : NULL;
}

const char *worker_options_usage(void)
{
	return "usage: vmwp [--kernel PATH [--initrd PATH] [--cmdline STR]] [--restore PATH|--incoming ADDR] [--memory SIZE] [--cpus N]\n"
	       "            [--disk PATH[,ro][,iops=N][,bw=N]]... [--dvd ISO|'']... [--serial stdio|file:PATH] [--control PATH.sock]\n"
	       "            [--nic [tap=NAME|switch=PATH][,...]]... [--no-reboot] [--disable-ic NAME]...\n"
	       "Boots a Linux bzImage in a Hyper-V-style partition on KVM.\n"
	       "  --kernel PATH     bzImage to boot (64-bit boot protocol 2.12+); without it the VM\n"
	       "                    boots from its first --disk: the kernel, initrd and command line\n"
	       "                    of the default GRUB or BLS entry of its ext2/3/4 /boot (docs/boot.md)\n"
	       "  --initrd PATH     initial ramdisk\n"
	       "  --cmdline STR     kernel command line (default: console=ttyS0)\n"
	       "  --restore PATH    resume the VM saved to PATH (control request \"save\") instead of\n"
	       "                    booting; the other options must describe the same VM. --kernel\n"
	       "                    is then optional: it is what a guest reset boots\n"
	       "  --incoming ADDR   receive the VM live-migrated from another worker (control request\n"
	       "                    \"migrate-send\") on unix:PATH, tcp:HOST:PORT, tls:HOST:PORT (mutual\n"
	       "                    TLS 1.3) or a connected socket fd:N; the other options must\n"
	       "                    describe the same VM\n"
	       "  --migration-cert PATH, --migration-key PATH, --migration-trust PATH\n"
	       "                    tls: this host's certificate and key, and the certificates (or\n"
	       "                    CAs) of the sources it accepts, PEM\n"
	       "  --memory SIZE     guest RAM: 512M, 2G ... (default 512M, multiple of 2 MiB)\n"
	       "  --cpus N          virtual processors, 1..64 (default 1)\n"
	       "  --disk PATH[,ro][,iops=N][,bw=N]\n"
	       "                    a VHD, VHDX or raw disk image on the synthetic SCSI controller\n"
	       "                    (LUNs in order given; ,ro attaches it read-only; storage QoS:\n"
	       "                    iops= at most N operations per second, normalized to 8 KiB as\n"
	       "                    Hyper-V counts them, bw= at most N bytes per second)\n"
	       "  --dvd ISO         a read-only DVD drive at the next LUN with the ISO file as its disc;\n"
	       "                    --dvd '' is an empty drive (change the disc with dvd-change)\n"
	       "  --serial stdio    guest console on stdout, keyboard from stdin (default;\n"
	       "                    on a terminal Ctrl-A x stops the VM)\n"
	       "  --serial file:PATH  guest console appended to PATH\n"
	       "  --nic [tap=NAME|switch=PATH][,mac=MAC][,vlan=N][,name=LABEL][,spoofing]\n"
	       "                    a synthetic network adapter on host tap NAME, or plugged into the\n"
	       "                    virtual switch listening on PATH (vmswitch --socket; access VLAN N,\n"
	       "                    port LABEL, source MACs other than its own allowed); neither: the\n"
	       "                    adapter is there with no cable (connect it with nic-connect)\n"
	       "                    (created if missing; default MAC 00:15:5D:... from the name)\n"
	       "  --control PATH    JSON control socket: status, shutdown, KVP, VSS (docs/worker.md)\n"
	       "  --no-reboot       exit with status 3 when the guest resets instead of restarting it\n"
	       "  --disable-ic NAME do not offer an integration service to the guest: heartbeat,\n"
	       "                    shutdown, timesync, kvp, vss or fcopy (repeatable)\n"
	       "With VIRIDIAN_SANDBOX=1 the worker enters its sandbox before the guest runs\n"
	       "(docs/security.md): its own uid, namespaces, Landlock and seccomp; =log logs forbidden\n"
	       "calls instead of dying; VIRIDIAN_SANDBOX_USER=NAME runs it as that user.\n"
	       "Exit status: 0 the guest powered off, 1 error, 3 guest reset with --no-reboot.\n";
}

/* --nic [tap=NAME|switch=PATH][,mac=MAC][,vlan=N][,name=LABEL][,spoofing]. The argument is left
 * as it was (a guest reset re-execs the worker with the same argv). */
static bool parse_nic(const char *arg, unsigned index, struct worker_nic *nic, char *err, size_t errlen)
{
	memset(nic, 0, sizeof(*nic));
	bool have_mac = false, have_vlan = false;
	for (const char *tok = arg; *tok;) {
		size_t len = strcspn(tok, ",");
		char val[sizeof(nic->switch_path)];
		const char *eq = memchr(tok, '=', len);
		size_t vlen = eq ? len - (size_t)(eq + 1 - tok) : 0;
		if (eq && vlen < sizeof(val)) {
			memcpy(val, eq + 1, vlen);
			val[vlen] = '\0';
		} else {
			val[0] = '\0';
		}
		bool ok = true;
		if (len > 4 && strncmp(tok, "tap=", 4) == 0 && vlen < sizeof(nic->tap) && !nic->switch_path[0]) {
			memcpy(nic->tap, val, vlen + 1);
		} else if (len > 7 && strncmp(tok, "switch=", 7) == 0 && vlen < sizeof(nic->switch_path) && !nic->tap[0]) {
			memcpy(nic->switch_path, val, vlen + 1);
		} else if (strncmp(tok, "mac=", 4) == 0 && len == 4 + 17) {
			ok = vswitch_parse_mac(val, nic->mac) && !(nic->mac[0] & 1);
			have_mac = true;
		} else if (strncmp(tok, "vlan=", 5) == 0 && vlen > 0 && vlen <= 4) {
			char *end;
			unsigned long v = strtoul(val, &end, 10);
			ok = val[0] >= '0' && val[0] <= '9' && !*end && v <= VSWITCH_VLAN_MAX;
			nic->vlan = (uint16_t)v;
			have_vlan = true;
		} else if (strncmp(tok, "name=", 5) == 0 && vlen > 0 && vlen < sizeof(nic->name)) {
			memcpy(nic->name, val, vlen + 1);
			for (const char *p = nic->name; *p && ok; p++)
				ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
				     strchr("._:/@-", *p);
		} else if (len == 8 && strncmp(tok, "spoofing", 8) == 0) {
			nic->mac_spoofing = true;
		} else {
			ok = false;
		}
		if (!ok) {
			snprintf(err, errlen, "--nic %s: unknown or bad setting \"%.*s\" (want [tap=NAME|switch=PATH][,mac=XX:XX:XX:XX:XX:XX][,vlan=0..4094][,name=LABEL][,spoofing]; NAME at most 15 characters)",
				 arg, (int)len, tok);
			return false;
		}
		tok += len;
		if (*tok == ',')
			tok++;
	}
	if (nic->tap[0] && (have_vlan || nic->mac_spoofing)) {
		snprintf(err, errlen, "--nic %s: vlan= and spoofing are settings of a switch port, not of a tap", arg);
		return false;
	}
	if (!have_mac) { /* Hyper-V's OUI, the rest from the backend's name and the adapter's index */
		uint32_t h = 2166136261u;
		for (const char *p = nic->tap[0] ? nic->tap : nic->switch_path; *p; p++)
			h = (h ^ (uint8_t)*p) * 16777619u;
		h ^= index;
		nic->mac[0] = 0x00, nic->mac[1] = 0x15, nic->mac[2] = 0x5D;
		nic->mac[3] = (uint8_t)(h >> 16), nic->mac[4] = (uint8_t)(h >> 8), nic->mac[5] = (uint8_t)h;
	}
	return true;
}

/* One ",flag" of a --disk value (s, n bytes): 1 parsed into d, 0 not a flag (part of the path),
 * -1 a flag with a bad value. */
static int disk_flag(const char *s, size_t n, struct worker_disk *d)
{
	if (n == 2 && !memcmp(s, "ro", 2)) {
		d->read_only = true;
		return 1;
	}
	uint64_t *field = n > 5 && !memcmp(s, "iops=", 5) ? &d->max_iops : n > 3 && !memcmp(s, "bw=", 3) ? &d->max_bytes_per_s : NULL;
	if (!field)
		return 0;
	const char *v = (const char *)memchr(s, '=', n) + 1;
	uint64_t max = field == &d->max_iops ? IO_LIMIT_MAX_IOPS : IO_LIMIT_MAX_BYTES_PER_S, x = 0;
	for (; v < s + n; v++) {
		if (*v < '0' || *v > '9' || (x = x * 10 + (uint64_t)(*v - '0')) > max)
			return -1;
	}
	*field = x;
	return 1;
}

bool worker_disk_flag_suffix(const char *value)
{
	const char *comma = strrchr(value, ',');
	struct worker_disk d = { 0 };
	return comma && disk_flag(comma + 1, strlen(comma + 1), &d) != 0;
}

bool worker_options_parse(struct worker_options *o, int argc, char **argv, char *err, size_t errlen)
{
	enum { OPT_KERNEL = 256, OPT_INITRD, OPT_CMDLINE, OPT_MEMORY, OPT_CPUS, OPT_SERIAL, OPT_DISK, OPT_CONTROL, OPT_NO_REBOOT, OPT_HELP, OPT_NIC, OPT_DISABLE_IC, OPT_RESTORE, OPT_DVD, OPT_INCOMING, OPT_MIG_CERT, OPT_MIG_KEY, OPT_MIG_TRUST };
	static const struct option longopts[] = {
		{ "kernel", required_argument, NULL, OPT_KERNEL },
		{ "initrd", required_argument, NULL, OPT_INITRD },
		{ "cmdline", required_argument, NULL, OPT_CMDLINE },
		{ "memory", required_argument, NULL, OPT_MEMORY },
		{ "cpus", required_argument, NULL, OPT_CPUS },
		{ "serial", required_argument, NULL, OPT_SERIAL },
		{ "disk", required_argument, NULL, OPT_DISK },
		{ "dvd", required_argument, NULL, OPT_DVD },
		{ "control", required_argument, NULL, OPT_CONTROL },
		{ "no-reboot", no_argument, NULL, OPT_NO_REBOOT },
		{ "help", no_argument, NULL, OPT_HELP },
		{ "nic", required_argument, NULL, OPT_NIC },
		{ "disable-ic", required_argument, NULL, OPT_DISABLE_IC },
		{ "restore", required_argument, NULL, OPT_RESTORE },
		{ "incoming", required_argument, NULL, OPT_INCOMING },
		{ "migration-cert", required_argument, NULL, OPT_MIG_CERT },
		{ "migration-key", required_argument, NULL, OPT_MIG_KEY },
		{ "migration-trust", required_argument, NULL, OPT_MIG_TRUST },
		{ NULL, 0, NULL, 0 },
	};
	*o = (struct worker_options){ .cmdline = "console=ttyS0", .memory = WORKER_DEFAULT_MEMORY, .cpus = 1 };
	optind = 0; /* 0, not 1: also resets glibc's position inside a short-option cluster */
	opterr = 0;
	bool cmdline_given = false;
	int c;
	for (;;) {
		int arg_index = optind ? optind : 1;
		if ((c = getopt_long(argc, argv, ":", longopts, NULL)) == -1)
			break;
		char *end;
		switch (c) {
		case OPT_KERNEL: o->kernel = optarg; break;
		case OPT_RESTORE: o->restore_path = optarg; break;
		case OPT_INCOMING:
			if (strncmp(optarg, "unix:", 5) && strncmp(optarg, "tcp:", 4) && strncmp(optarg, "tls:", 4) &&
			    strncmp(optarg, "fd:", 3)) {
				snprintf(err, errlen, "--incoming %s: want unix:PATH, tcp:HOST:PORT, tls:HOST:PORT or fd:N", optarg);
				return false;
			}
			o->incoming = optarg;
			break;
		case OPT_MIG_CERT: o->migration_cert = optarg; break;
		case OPT_MIG_KEY: o->migration_key = optarg; break;
		case OPT_MIG_TRUST: o->migration_trust = optarg; break;
		case OPT_INITRD: o->initrd = optarg; break;
		case OPT_CMDLINE: o->cmdline = optarg; cmdline_given = true; break;
		case OPT_MEMORY:
			if (!parse_memory_size(optarg, &o->memory) || o->memory < WORKER_MIN_MEMORY ||
			    o->memory > WORKER_MAX_MEMORY || (o->memory & ((2u << 20) - 1))) {
				snprintf(err, errlen, "--memory %s: want a size from 16M to 1T in whole 2 MiB units, like 512M or 2G", optarg);
				return false;
			}
			break;
		case OPT_CPUS: {
			errno = 0;
			long n = strtol(optarg, &end, 10);
			if (errno || *end || end == optarg || n < 1 || n > VM_MAX_VCPUS) {
				snprintf(err, errlen, "--cpus %s: want a number from 1 to %d", optarg, VM_MAX_VCPUS);
				return false;
			}
			o->cpus = (uint32_t)n;
			break;
		}
		case OPT_SERIAL:
			if (strcmp(optarg, "stdio") == 0) {
				o->serial_path = NULL;
			} else if (strncmp(optarg, "file:", 5) == 0 && optarg[5]) {
				o->serial_path = optarg + 5;
			} else {
				snprintf(err, errlen, "--serial %s: want stdio or file:PATH", optarg);
				return false;
			}
			break;
		case OPT_DISK: {
			if (o->ndisks == WORKER_MAX_DISKS) {
				snprintf(err, errlen, "--disk: at most %d disks", WORKER_MAX_DISKS);
				return false;
			}
			struct worker_disk *d = &o->disks[o->ndisks];
			size_t len = strlen(optarg);
			const char *comma;
			while ((comma = memrchr(optarg, ',', len))) {
				int flag = disk_flag(comma + 1, (size_t)(optarg + len - comma - 1), d);
				if (flag < 0) {
					snprintf(err, errlen, "--disk %s: %.*s: want ro, iops=0..%llu or bw=0..%llu (bytes/s)", optarg,
						 (int)(optarg + len - comma - 1), comma + 1, IO_LIMIT_MAX_IOPS, IO_LIMIT_MAX_BYTES_PER_S);
					return false;
				}
				if (!flag)
					break;
				len = (size_t)(comma - optarg);
			}
			if (len == 0 || len >= sizeof(d->path)) {
				snprintf(err, errlen, len ? "--disk: path too long" : "--disk needs a path");
				return false;
			}
			memcpy(d->path, optarg, len);
			d->path[len] = '\0';
			d->arg = optarg;
			o->ndisks++;
			break;
		}
		case OPT_DVD: {
			if (o->ndisks == WORKER_MAX_DISKS) {
				snprintf(err, errlen, "--dvd: at most %d disks and DVD drives", WORKER_MAX_DISKS);
				return false;
			}
			struct worker_disk *d = &o->disks[o->ndisks];
			size_t len = strlen(optarg);
			if (len >= sizeof(d->path)) {
				snprintf(err, errlen, "--dvd: path too long");
				return false;
			}
			memcpy(d->path, optarg, len + 1); /* "": an empty drive */
			d->read_only = d->dvd = true;
			d->arg = optarg;
			o->ndisks++;
			break;
		}
		case OPT_CONTROL: o->control_path = optarg; break;
		case OPT_NIC:
			if (o->nnics == WORKER_MAX_NICS) {
				snprintf(err, errlen, "--nic: at most %d adapters", WORKER_MAX_NICS);
				return false;
			}
			if (!parse_nic(optarg, o->nnics, &o->nics[o->nnics], err, errlen))
				return false;
			o->nnics++;
			break;
		case OPT_NO_REBOOT: o->no_reboot = true; break;
		case OPT_DISABLE_IC: {
			unsigned i = 0;
			while (i < WORKER_IC_COUNT && strcasecmp(optarg, worker_ic_name(i)))
				i++;
			if (i == WORKER_IC_COUNT) {
				snprintf(err, errlen, "--disable-ic %s: want heartbeat, shutdown, timesync, kvp, vss or fcopy", optarg);
				return false;
			}
			o->disabled_ics |= 1u << i;
			break;
		}
		case OPT_HELP: o->help = true; return true;
		case ':':
			snprintf(err, errlen, "%s needs a value", argv[arg_index]);
			return false;
		default:
			if (optopt >= OPT_KERNEL) /* a long option given a value it does not take */
				snprintf(err, errlen, "%s takes no value", argv[arg_index]);
			else if (optopt)
				snprintf(err, errlen, "unknown option -%c", optopt);
			else
				snprintf(err, errlen, "unknown option %s", argv[arg_index]);
			return false;
		}
	}
	if (optind < argc) {
		snprintf(err, errlen, "unexpected argument %s", argv[optind]);
		return false;
	}
	if (o->restore_path && o->incoming) {
		snprintf(err, errlen, "--restore and --incoming exclude each other");
		return false;
	}
	if (o->incoming && !strncmp(o->incoming, "tls:", 4) && (!o->migration_cert || !o->migration_key || !o->migration_trust)) {
		snprintf(err, errlen, "--incoming tls: needs --migration-cert, --migration-key and --migration-trust");
		return false;
	}
	if (!o->kernel && !o->restore_path && !o->incoming && !o->ndisks) {
		snprintf(err, errlen, "nothing to boot: give --kernel, a --disk to boot from, --restore or --incoming");
		return false;
	}
	if (!o->kernel && !o->restore_path && !o->incoming && (o->initrd || cmdline_given)) {
		snprintf(err, errlen, "--initrd and --cmdline go with --kernel (booting from disk takes them from its boot configuration)");
		return false;
	}
	return true;
}
