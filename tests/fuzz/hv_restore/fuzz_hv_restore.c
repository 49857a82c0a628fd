/* libFuzzer target: arbitrary bytes become saved-state sections handed to the partition's and
 * the devices' restore, on fresh objects as a new worker has them. The input is a sequence of
 * (component u8, instance u8, length u16 LE, payload) records. Whatever a restore accepts must
 * then work: the partition's MSRs and SynIC (EOM, unmask) and each device's ports are driven,
 * and its state is saved and restored into another fresh object, which must accept it and save
 * the same bytes. Grants of guest pages must balance. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../fuzz_input.h"
#include "devices/acpi_pm.h"
#include "devices/i8042.h"
#include "devices/rtc.h"
#include "devices/uart.h"
#include "hv/partition.h"
#include "state/savedstate.h"

#define RAM_PAGES 64
#define NR_VPS    2
#define TSC_KHZ   3000000ull
#define HC_PORT   0xEB
#define RECORDS   8

static uint8_t ram[RAM_PAGES * 4096];
static int grants[RAM_PAGES];
static int irq_levels[16];
static const uint8_t digest[STATE_DIGEST_SIZE];

static void *gpa_to_hva(void *opaque, uint64_t gpa, uint64_t len)
{
	(void)opaque;
	return gpa < sizeof(ram) && len <= sizeof(ram) - gpa ? ram + gpa : NULL;
}

static uint64_t guest_tsc(void *opaque, uint32_t vp)
{
	(void)opaque;
	return 123456789ull * (vp + 1);
}

static void inject(void *opaque, uint32_t vp, uint8_t vector)
{
	(void)opaque;
	if (vp >= NR_VPS || vector < 16)
		abort();
}

static void grant(void *opaque, void *hva, uint64_t len, bool on)
{
	(void)opaque;
	size_t page = (size_t)((uint8_t *)hva - ram) / 4096;
	if (len != 4096 || page >= RAM_PAGES || (grants[page] += on ? 1 : -1) < 0)
		abort();
}

static void set_level(void *opaque, uint32_t irq, int level)
{
	(void)opaque;
	if (irq >= 16 || (level != 0 && level != 1))
		abort();
	irq_levels[irq] = level;
}

static time_t fixed_now(void)
{
	return 1700000000;
}

static void reset(void *opaque)
{
	(void)opaque;
}

struct machine {
	struct hv_partition hv;
	struct uart uart;
	struct rtc rtc;
	struct i8042 kbd;
	struct acpi_pm pm;
};

static const struct hv_platform platform = {
	.gpa_to_hva = gpa_to_hva, .guest_tsc = guest_tsc, .inject = inject, .grant = grant,
};

static void machine_init(struct machine *m)
{
	struct irq_line com1 = { set_level, NULL, UART_COM1_IRQ };
	struct irq_line kbd = { set_level, NULL, I8042_KBD_IRQ }, aux = { set_level, NULL, I8042_AUX_IRQ };
	struct acpi_config cfg;
	acpi_config_default(&cfg, NR_VPS);
	if (!hv_partition_init(&m->hv, NR_VPS, TSC_KHZ, HC_PORT, &platform))
		abort();
	uart_init(&m->uart, -1, &com1);
	rtc_init(&m->rtc, fixed_now);
	i8042_init(&m->kbd, &kbd, &aux, reset, NULL);
	acpi_pm_init(&m->pm, &cfg);
}

static void machine_destroy(struct machine *m)
{
	hv_partition_destroy(&m->hv);
	uart_destroy(&m->uart);
	rtc_destroy(&m->rtc);
	i8042_destroy(&m->kbd);
}

static const uint32_t types[] = {
	STATE_SECTION_PARTITION, STATE_SECTION_SYNIC, STATE_SECTION_UART, STATE_SECTION_RTC,
	STATE_SECTION_I8042, STATE_SECTION_ACPI_PM,
};
#define COMPONENTS (sizeof(types) / sizeof(types[0]))

static int restore(struct machine *m, const struct state_section *sec)
{
	switch (sec->type) {
	case STATE_SECTION_PARTITION:
	case STATE_SECTION_SYNIC: return hv_partition_restore(&m->hv, sec);
	case STATE_SECTION_UART: return uart_restore(&m->uart, sec);
	case STATE_SECTION_RTC: return rtc_restore(&m->rtc, sec);
	case STATE_SECTION_I8042: return i8042_restore(&m->kbd, sec);
	default: return acpi_pm_restore(&m->pm, sec);
	}
}

/* Everything the machine saves, into a fresh memfd. */
static int save_all(struct machine *m)
{
	int fd = memfd_create("fuzz", 0);
	struct state_writer *w;
	if (fd < 0 || state_writer_open(&w, fd, digest))
		abort();
	if (hv_partition_save(&m->hv, w) || uart_save(&m->uart, w, 0) || rtc_save(&m->rtc, w) ||
	    i8042_save(&m->kbd, w) || acpi_pm_save(&m->pm, w) || state_writer_finish(w))
		abort();
	return fd;
}

static bool same_file(int a, int b)
{
	off_t na = lseek(a, 0, SEEK_END), nb = lseek(b, 0, SEEK_END);
	if (na != nb)
		return false;
	static uint8_t ba[1 << 20], bb[1 << 20];
	if (na > (off_t)sizeof(ba) || pread(a, ba, (size_t)na, 0) != na || pread(b, bb, (size_t)nb, 0) != nb)
		abort();
	return !memcmp(ba, bb, (size_t)na);
}

/* Restored state saves, restores into a fresh machine and saves the same again. */
static void check_resave(struct machine *m)
{
	int fa = save_all(m);
	struct machine *n = calloc(1, sizeof(*n));
	if (!n)
		abort();
	machine_init(n);
	struct state_reader *r;
	struct state_section sec;
	if (lseek(fa, 0, SEEK_SET) || state_reader_open(&r, fa, NULL))
		abort();
	int rc;
	while ((rc = state_reader_next(r, &sec)) > 0)
		if (restore(n, &sec)) {
			fprintf(stderr, "re-restore failed: %s\n", state_last_error());
			abort();
		}
	if (rc < 0)
		abort();
	state_reader_close(r);
	int fb = save_all(n);
	if (!same_file(fa, fb))
		abort();
	close(fa);
	close(fb);
	machine_destroy(n);
	free(n);
}

/* The normal paths over the restored state. */
static void drive(struct machine *m)
{
	for (uint32_t vp = 0; vp < NR_VPS; vp++) {
		uint64_t v;
		for (uint32_t msr = HV_X64_MSR_GUEST_OS_ID; msr <= HV_X64_MSR_CRASH_CTL; msr++)
			hv_msr_read(&m->hv, vp, msr, &v);
		hv_msr_write(&m->hv, vp, HV_X64_MSR_EOM, 0);
		hv_msr_write(&m->hv, vp, HV_X64_MSR_SCONTROL, HV_MSR_ENABLE);
		for (uint32_t s = 0; s < HV_SYNIC_SINT_COUNT; s++)
			hv_msr_write(&m->hv, vp, HV_X64_MSR_SINT0 + s, 0x40);
		hv_synic_post(&m->hv.vps[vp].synic, 3, 7, "x", 1);
		hv_synic_signal_event(&m->hv.vps[vp].synic, 3, 9);
	}
	for (unsigned i = 0; i < 8; i++)
		uart_read(&m->uart, i);
	for (unsigned i = 0; i < 0x80; i++) {
		rtc_write(&m->rtc, RTC_PORT_INDEX, (uint8_t)i);
		rtc_read(&m->rtc, RTC_PORT_DATA);
	}
	rtc_write(&m->rtc, RTC_PORT_INDEX, 0x0B);
	rtc_write(&m->rtc, RTC_PORT_DATA, 0x02); /* releases SET: the latched time applies */
	rtc_write(&m->rtc, RTC_PORT_INDEX, 0x09);
	rtc_read(&m->rtc, RTC_PORT_DATA);
	i8042_write(&m->kbd, I8042_DATA_PORT, 0x01);
	for (unsigned i = 0; i < I8042_QUEUE + 2; i++)
		i8042_read(&m->kbd, I8042_DATA_PORT);
	acpi_pm_read(&m->pm, m->pm.evt_port, 4, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct in in = { data, size };
	struct machine *m = calloc(1, sizeof(*m));
	if (!m)
		return 0;
	memset(ram, 0, sizeof(ram));
	memset(grants, 0, sizeof(grants));
	machine_init(m);
	bool any = false;
	for (int i = 0; i < RECORDS && in.n; i++) {
		uint32_t type = types[take(&in) % COMPONENTS];
		uint32_t instance = take(&in) % (NR_VPS + 1);
		size_t len = take(&in);
		len |= (size_t)take(&in) << 8;
		uint8_t *payload = malloc(len ? len : 1);
		if (!payload)
			break;
		len = take_bytes(&in, payload, len);
		struct state_section sec = { .type = type, .instance = instance, .version = 1,
					     .payload = { .data = payload, .size = len } };
		int rc = restore(m, &sec);
		if (rc > 0 || (rc < 0 && !*state_last_error()))
			abort(); /* failures are negative errnos with a message */
		any |= rc == 0;
		free(payload);
	}
	if (any) {
		check_resave(m);
		drive(m);
	}
	machine_destroy(m);
	free(m);
	for (unsigned i = 0; i < RAM_PAGES; i++)
		if (grants[i])
			abort();
	return 0;
}
