/* vmwp's command line (the contract in SPEC.md: --kernel --initrd --cmdline --memory
 * --cpus --serial ...). Pure parsing so it can be unit-tested. */
#ifndef VIRIDIAN_WORKER_OPTIONS_H
#define VIRIDIAN_WORKER_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WORKER_DEFAULT_MEMORY (512ull << 20)
#define WORKER_MIN_MEMORY     (16ull << 20)
#define WORKER_MAX_MEMORY     (1ull << 40)

#define WORKER_MAX_DISKS      64
#define WORKER_MAX_NICS       8

/* --nic [tap=NAME|switch=PATH][,mac=..][,vlan=N][,name=LABEL][,spoofing]: a synthetic network
 * adapter (netvsp) on a host tap, on a virtual switch's port (vmswitch), or not connected. */
struct worker_nic {
	char tap[16];            /* interface name (IFNAMSIZ); "" unless a tap */
	char switch_path[108];   /* the switch's port socket; "" unless on a switch */
	uint8_t mac[6];          /* given, or 00:15:5D + 3 bytes from the backend and adapter index */
	uint16_t vlan;           /* switch port: access VLAN, 0 = untagged */
	bool mac_spoofing;       /* switch port: other source MACs allowed */
	char name[64];           /* switch port: label in the switch's status */
};

struct worker_disk {
	char path[4096];         /* a copy: argv stays intact for the re-exec on guest reset; a DVD
				  * drive's ISO ("" for an empty drive) */
	bool read_only;
	bool dvd;                /* --dvd: a CD/DVD drive (read-only) */
	uint64_t max_iops;       /* ,iops=N: storage QoS, normalized 8 KiB operations per second; 0: none */
	uint64_t max_bytes_per_s; /* ,bw=N: bytes per second; 0: none */
	const char *arg;         /* the option's value in argv: a disk-switch rewrites it for the re-exec */
};

/* Whether a --disk value ends in what parses as one of its ",ro", ",iops=N", ",bw=N" flags (a
 * path that would be misread as one: disk-switch refuses it). */
bool worker_disk_flag_suffix(const char *value);

struct worker_options {
	const char *kernel;      /* NULL: boot from disks[0] (with restore_path: what a reset boots) */
	const char *restore_path; /* --restore: a saved state to resume instead of booting */
	const char *incoming;    /* --incoming: unix:PATH, tcp:HOST:PORT, tls:HOST:PORT or fd:N to receive a live migration on */
	const char *migration_cert, *migration_key, *migration_trust; /* --migration-*: PEM files for tls: */
	const char *initrd;      /* NULL: none */
	const char *cmdline;
	uint64_t memory;         /* bytes, a multiple of 2 MiB */
	uint32_t cpus;
	const char *serial_path; /* NULL: stdio */
	const char *control_path; /* NULL: no control socket */
	struct worker_disk disks[WORKER_MAX_DISKS]; /* SCSI LUNs 0.. on the synthetic controller (--disk, --dvd) */
	unsigned ndisks;
	struct worker_nic nics[WORKER_MAX_NICS];
	unsigned nnics;
	bool no_reboot;          /* exit with status 3 instead of restarting on guest reset */
	unsigned disabled_ics;   /* --disable-ic NAME: bits (1 << WORKER_IC_*) not offered to the guest */
	bool help;
};

/* Integration services --disable-ic can leave out (vmms's Disable-VMIntegrationService). */
enum { WORKER_IC_HEARTBEAT, WORKER_IC_SHUTDOWN, WORKER_IC_TIMESYNC, WORKER_IC_KVP, WORKER_IC_VSS, WORKER_IC_FCOPY, WORKER_IC_COUNT };
/* "heartbeat", "shutdown", "timesync", "kvp", "vss"; NULL out of range. */
const char *worker_ic_name(unsigned ic);

/* Parses a memory size: "512M", "2G", "1GB", "1536MiB", or a plain number of MiB.
 * Returns false on anything else or on overflow. */
bool parse_memory_size(const char *s, uint64_t *bytes);

/* Returns false with a message in err naming the bad option. */
bool worker_options_parse(struct worker_options *o, int argc, char **argv, char *err, size_t errlen);
const char *worker_options_usage(void);

#endif
