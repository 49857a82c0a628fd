/* ACPI PM1 event/control blocks, PM timer and reset register: see include/devices/acpi_pm.h. */
#include "devices/acpi_pm.h"
#include "section.h"

#define NS_PER_SEC        1000000000ull

/* PM1_CNT bits that are stored and read back; SCI_EN is forced on */
#define PM1_CNT_STORED    (ACPI_PM1_CNT_BM_RLD | ACPI_PM1_CNT_SLP_TYP)
/* PM1 events that can raise the SCI when enabled */
#define PM1_SCI_EVENTS    (ACPI_PM1_TMR | ACPI_PM1_GBL | ACPI_PM1_PWRBTN | ACPI_PM1_SLPBTN | \
                           ACPI_PM1_RTC)

/* PM1_STS bits the device sets */
#define PM1_STS_SET       (ACPI_PM1_PWRBTN | ACPI_PM1_WAK_STS)

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
			reg = (pm->pm1_cnt & PM1_CNT_STORED) | ACPI_PM1_CNT_SCI_EN;
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
		pm->pm1_cnt = (uint16_t)((cnt & PM1_CNT_STORED) | ACPI_PM1_CNT_SCI_EN);
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

/* ACPI_PM, version 1: evt_port, cnt_port, tmr_port, reset_port (u16), reset_value (u8), from
 * the configuration and checked to match; pm1_sts, pm1_en, pm1_cnt (u16). The PM timer has no
 * state: it is the caller's clock. */
int acpi_pm_save(const struct acpi_pm *pm, struct state_writer *w)
{
	int rc = state_section_begin(w, STATE_SECTION_ACPI_PM, 0, DEVICE_STATE_VERSION, 0);
	if (rc)
		return rc;
	state_put_u16(w, pm->evt_port);
	state_put_u16(w, pm->cnt_port);
	state_put_u16(w, pm->tmr_port);
	state_put_u16(w, pm->reset_port);
	state_put_u8(w, pm->reset_value);
	state_put_u16(w, pm->pm1_sts);
	state_put_u16(w, pm->pm1_en);
	state_put_u16(w, pm->pm1_cnt);
	return state_section_end(w);
}

int acpi_pm_restore(struct acpi_pm *pm, const struct state_section *sec)
{
	int rc = device_section_check(sec, STATE_SECTION_ACPI_PM, "acpi-pm");
	if (rc)
		return rc;
	struct state_cursor c = sec->payload;
	uint16_t evt = state_get_u16(&c), cnt = state_get_u16(&c), tmr = state_get_u16(&c);
	uint16_t reset = state_get_u16(&c);
	uint8_t reset_value = state_get_u8(&c);
	uint16_t sts = state_get_u16(&c), en = state_get_u16(&c), ctl = state_get_u16(&c);
	if ((rc = device_section_end(&c, "acpi-pm")))
		return rc;
	if (evt != pm->evt_port || cnt != pm->cnt_port || tmr != pm->tmr_port ||
	    reset != pm->reset_port || reset_value != pm->reset_value)
		return state_fail(-EBADMSG, "acpi-pm: saved with PM1 event 0x%x, control 0x%x, timer "
				  "0x%x, reset 0x%x (value 0x%x); this VM has 0x%x, 0x%x, 0x%x, 0x%x "
				  "(0x%x)", evt, cnt, tmr, reset, reset_value, pm->evt_port,
				  pm->cnt_port, pm->tmr_port, pm->reset_port, pm->reset_value);
	if ((sts & ~PM1_STS_SET) || (en & ~ACPI_PM1_EN_MASK) ||
	    (ctl & ~PM1_CNT_STORED) != ACPI_PM1_CNT_SCI_EN)
		return state_fail(-EBADMSG, "acpi-pm: PM1 status 0x%x, enable 0x%x or control 0x%x "
				  "is not a value the device has", sts, en, ctl);
	pm->pm1_sts = sts;
	pm->pm1_en = en;
	pm->pm1_cnt = ctl;
	return 0;
}
