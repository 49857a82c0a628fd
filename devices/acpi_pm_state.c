/* Saved state of the ACPI PM device (include/devices/acpi_pm.h). Apart from acpi_pm.c, which
 * tests/unit/acpi compiles in without the saved-state library. */
#include "devices/acpi_pm.h"
#include "section.h"

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
	if ((sts & ~ACPI_PM1_STS_SET) || (en & ~ACPI_PM1_EN_MASK) ||
	    (ctl & ~ACPI_PM1_CNT_STORED) != ACPI_PM1_CNT_SCI_EN)
		return state_fail(-EBADMSG, "acpi-pm: PM1 status 0x%x, enable 0x%x or control 0x%x "
				  "is not a value the device has", sts, en, ctl);
	pm->pm1_sts = sts;
	pm->pm1_en = en;
	pm->pm1_cnt = ctl;
	return 0;
}
