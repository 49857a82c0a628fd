/* ACPI PM1 event/control blocks, PM timer and reset register: see include/devices/acpi_pm.h. */
#include "devices/acpi_pm.h"

#define NS_PER_SEC        1000000000ull

/* PM1 events that can raise the SCI when enabled */
#define PM1_SCI_EVENTS    (ACPI_PM1_TMR | ACPI_PM1_GBL | ACPI_PM1_PWRBTN | ACPI_PM1_SLPBTN | \
                           ACPI_PM1_RTC)

/* The registers, as seen byte by byte */
enum pm_reg {
	REG_NONE,
	REG_STS,     /* PM1_STS: evt + 0..1 */
	REG_EN,      /* PM1_EN:  evt + 2..3 */
	REG_CNT,     /* PM1_CNT: cnt + 0..1 */
	REG_TMR,     /* PM_TMR:  tmr + 0..3 */
	REG_RESET,   /* RESET_REG: reset + 0 */
	REG_COUNT,
};

/* Which register holds the byte at port, and which byte of it (*idx). */
static enum pm_reg locate(const struct acpi_pm *pm, uint32_t port, unsigned *idx)
{
	if (port >= pm->evt_port && port < pm->evt_port + 2u) {
		*idx = port - pm->evt_port;
		return REG_STS;
	}
	if (port >= pm->evt_port + 2u && port < pm->evt_port + (uint32_t)ACPI_PM1_EVT_LEN) {
		*idx = port - pm->evt_port - 2u;
		return REG_EN;
	}
	if (port >= pm->cnt_port && port < pm->cnt_port + (uint32_t)ACPI_PM1_CNT_LEN) {
		*idx = port - pm->cnt_port;
		return REG_CNT;
	}
	if (pm->tmr_port && port >= pm->tmr_port &&
	    port < pm->tmr_port + (uint32_t)ACPI_PM_TMR_LEN) {
		*idx = port - pm->tmr_port;
		return REG_TMR;
	}
	if (pm->reset_port && port == pm->reset_port) {
		*idx = 0;
		return REG_RESET;
	}
	*idx = 0;
	return REG_NONE;
}

void acpi_pm_init(struct acpi_pm *pm, const struct acpi_config *cfg)
{
	*pm = (struct acpi_pm){
		.pm1_cnt = ACPI_PM1_CNT_SCI_EN,
		.evt_port = cfg->pm1a_evt_port,
		.cnt_port = cfg->pm1a_cnt_port,
		.tmr_port = cfg->pm_tmr_port,
		.reset_port = cfg->reset_port,
		.reset_value = cfg->reset_value,
	};
}

bool acpi_pm_handles(const struct acpi_pm *pm, uint16_t port)
{
	unsigned idx;
	return locate(pm, port, &idx) != REG_NONE;
}

uint32_t acpi_pm_timer(uint64_t now_ns)
{
	uint64_t ticks = (now_ns / NS_PER_SEC) * ACPI_PM_TIMER_HZ +
	                 (now_ns % NS_PER_SEC) * ACPI_PM_TIMER_HZ / NS_PER_SEC;
	return (uint32_t)ticks;
}

uint32_t acpi_pm_read(struct acpi_pm *pm, uint16_t port, unsigned size, uint64_t now_ns)
{
	if (size == 0 || size > 4)
		return UINT32_MAX;

	uint32_t value = 0;
	for (unsigned i = 0; i < size; i++) {
		unsigned idx;
		uint32_t reg;
		switch (locate(pm, (uint32_t)port + i, &idx)) {
		case REG_STS:
			reg = pm->pm1_sts;
			break;
		case REG_EN:
			reg = pm->pm1_en;
			break;
		case REG_CNT:
			reg = (pm->pm1_cnt & ACPI_PM1_CNT_STORED) | ACPI_PM1_CNT_SCI_EN;
			break;
		case REG_TMR:
			reg = acpi_pm_timer(now_ns);
			break;
		case REG_RESET:
			reg = 0;  /* write-only */
			break;
		default:
			reg = 0xff;
			break;
		}
		value |= ((reg >> (8 * idx)) & 0xffu) << (8 * i);
	}
	return value;
}

enum acpi_pm_action acpi_pm_write(struct acpi_pm *pm, uint16_t port, uint32_t value,
                                  unsigned size)
{
	if (size == 0 || size > 4)
		return ACPI_PM_NONE;

	/* Gather the access into per-register (bits, byte mask), then apply each once */
	uint32_t val[REG_COUNT] = {0}, mask[REG_COUNT] = {0};
	for (unsigned i = 0; i < size; i++) {
		unsigned idx;
		enum pm_reg r = locate(pm, (uint32_t)port + i, &idx);
		val[r] |= ((value >> (8 * i)) & 0xffu) << (8 * idx);
		mask[r] |= 0xffu << (8 * idx);
	}

	enum acpi_pm_action action = ACPI_PM_NONE;

	if (mask[REG_STS])
		pm->pm1_sts &= (uint16_t)~(val[REG_STS] & mask[REG_STS]);

	if (mask[REG_EN]) {
		uint32_t en = (pm->pm1_en & ~mask[REG_EN]) | (val[REG_EN] & mask[REG_EN]);
		pm->pm1_en = (uint16_t)(en & ACPI_PM1_EN_MASK);
	}

	if (mask[REG_CNT]) {
		uint32_t cnt = (pm->pm1_cnt & ~mask[REG_CNT]) | (val[REG_CNT] & mask[REG_CNT]);
		pm->pm1_cnt = (uint16_t)((cnt & ACPI_PM1_CNT_STORED) | ACPI_PM1_CNT_SCI_EN);
		if (val[REG_CNT] & mask[REG_CNT] & ACPI_PM1_CNT_SLP_EN) {
			unsigned typ = (cnt & ACPI_PM1_CNT_SLP_TYP) >> ACPI_PM1_CNT_SLP_TYP_SHIFT;
			if (typ == ACPI_SLP_TYP_S5)
				action = ACPI_PM_POWER_OFF;
			else
				pm->pm1_sts |= ACPI_PM1_WAK_STS;  /* no such state: "wake" at once */
		}
	}

	if ((mask[REG_RESET] & 0xffu) && (val[REG_RESET] & 0xffu) == pm->reset_value)
		action = ACPI_PM_RESET;

	return action;
}

void acpi_pm_power_button(struct acpi_pm *pm)
{
	pm->pm1_sts |= ACPI_PM1_PWRBTN;
}

bool acpi_pm_sci_level(const struct acpi_pm *pm)
{
	return (pm->pm1_sts & pm->pm1_en & PM1_SCI_EVENTS) != 0;
}
