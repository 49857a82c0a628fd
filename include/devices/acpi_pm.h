/* ACPI power management I/O: the PM1a event and control blocks, the PM timer and the reset
 * register the FADT (devices/acpi.c) points at, as a pure state machine.
 *
 * The worker routes guest port I/O in [pm1a_evt_port, +4), [pm1a_cnt_port, +2),
 * [pm_tmr_port, +4) and reset_port (acpi_pm_handles() says yes to exactly those) to
 * acpi_pm_read()/acpi_pm_write(), acts on the returned action, and after every write or
 * acpi_pm_power_button() drives the SCI line (ISA IRQ cfg.sci_irq, level, active high) to
 * acpi_pm_sci_level().
 *
 * Registers (ACPI 6.x, 4.8 "fixed hardware"):
 *   PM1_STS  evt+0, 16 bits, write-1-to-clear: PWRBTN_STS (set by the power button),
 *            WAK_STS (set when the guest asks for a sleep state we do not have, so its wait
 *            for wake ends at once instead of hanging).
 *   PM1_EN   evt+2, 16 bits: PWRBTN_EN is the only enable with an event behind it; the
 *            others named below are stored so the guest reads back what it wrote.
 *   PM1_CNT  cnt+0, 16 bits: SCI_EN always reads 1 (ACPI mode is fixed, SMI_CMD is 0);
 *            SLP_TYP reads back; SLP_EN and GBL_RLS are write-only and read 0. Writing SLP_EN
 *            with SLP_TYP = ACPI_SLP_TYP_S5 is soft-off.
 *   PM_TMR   tmr+0, 32 bits (FADT TMR_VAL_EXT), 3.579545 MHz, read-only, derived from the
 *            caller's monotonic clock; TMR_STS (timer carry) is not generated.
 *   RESET    reset_port, 8 bits, write-only: the FADT RESET_VALUE resets the machine.
 * Accesses may be 1, 2 or 4 bytes wide at any port inside a block and may span the status
 * and enable registers; bytes outside any register read as 0xff and ignore writes.
 */
#ifndef VIRIDIAN_DEVICES_ACPI_PM_H
#define VIRIDIAN_DEVICES_ACPI_PM_H

#include <stdbool.h>
#include <stdint.h>

#include "devices/acpi.h"

#define ACPI_PM_TIMER_HZ        3579545u

/* PM1_STS / PM1_EN bits */
#define ACPI_PM1_TMR            (1u << 0)
#define ACPI_PM1_BM_STS         (1u << 4)
#define ACPI_PM1_GBL            (1u << 5)
#define ACPI_PM1_PWRBTN         (1u << 8)
#define ACPI_PM1_SLPBTN         (1u << 9)
#define ACPI_PM1_RTC            (1u << 10)
#define ACPI_PM1_PCIEXP_WAKE    (1u << 14)  /* STS; in PM1_EN it is PCIEXP_WAKE_DIS */
#define ACPI_PM1_WAK_STS        (1u << 15)
#define ACPI_PM1_EN_MASK        (ACPI_PM1_TMR | ACPI_PM1_GBL | ACPI_PM1_PWRBTN | \
                                 ACPI_PM1_SLPBTN | ACPI_PM1_RTC | ACPI_PM1_PCIEXP_WAKE)

/* PM1_CNT bits */
#define ACPI_PM1_CNT_SCI_EN     (1u << 0)
#define ACPI_PM1_CNT_BM_RLD     (1u << 1)
#define ACPI_PM1_CNT_GBL_RLS    (1u << 2)   /* write-only */
#define ACPI_PM1_CNT_SLP_TYP_SHIFT 10
#define ACPI_PM1_CNT_SLP_TYP    (7u << ACPI_PM1_CNT_SLP_TYP_SHIFT)
#define ACPI_PM1_CNT_SLP_EN     (1u << 13)  /* write-only */
/* PM1_CNT bits that are stored and read back; SCI_EN is forced on */
#define ACPI_PM1_CNT_STORED     (ACPI_PM1_CNT_BM_RLD | ACPI_PM1_CNT_SLP_TYP)
/* PM1_STS bits the device ever sets */
#define ACPI_PM1_STS_SET        (ACPI_PM1_PWRBTN | ACPI_PM1_WAK_STS)

struct acpi_pm {
	uint16_t pm1_sts;        /* PM1 status (write-1-to-clear) */
	uint16_t pm1_en;         /* PM1 enable */
	uint16_t pm1_cnt;        /* PM1 control as stored: SCI_EN, BM_RLD, SLP_TYP */
	/* where the guest finds it, from the struct acpi_config the FADT was built from */
	uint16_t evt_port;       /* PM1a_EVT_BLK */
	uint16_t cnt_port;       /* PM1a_CNT_BLK */
	uint16_t tmr_port;       /* PM_TMR_BLK, 0 = none */
	uint16_t reset_port;     /* RESET_REG, 0 = none */
	uint8_t  reset_value;    /* RESET_VALUE */
};

enum acpi_pm_action {
	ACPI_PM_NONE = 0,
	ACPI_PM_POWER_OFF,       /* SLP_EN written with SLP_TYP = S5: stop the VM, it is off */
	ACPI_PM_RESET,           /* RESET_VALUE written to RESET_REG: reset the VM */
};

/* Power-on state for the ports in cfg. */
void acpi_pm_init(struct acpi_pm *pm, const struct acpi_config *cfg);

/* True when port belongs to one of the device's registers. */
bool acpi_pm_handles(const struct acpi_pm *pm, uint16_t port);

/* A guest read of size (1, 2, 4) bytes at port; now_ns is the caller's monotonic clock in ns
 * (e.g. since VM start), from which the PM timer is derived. */
uint32_t acpi_pm_read(struct acpi_pm *pm, uint16_t port, unsigned size, uint64_t now_ns);

/* A guest write of size (1, 2, 4) bytes at port: returns what the VMM must do. */
enum acpi_pm_action acpi_pm_write(struct acpi_pm *pm, uint16_t port, uint32_t value,
                                  unsigned size);

/* Host-side power-button press (graceful shutdown request): sets PWRBTN_STS. */
void acpi_pm_power_button(struct acpi_pm *pm);

/* SCI line level: some enabled PM1 event is pending. */
bool acpi_pm_sci_level(const struct acpi_pm *pm);

/* PM timer value at now_ns: 3.579545 MHz ticks, modulo 2^32. */
uint32_t acpi_pm_timer(uint64_t now_ns);

/* Saved state: an ACPI_PM section (PM1 status, enable, control). The ports come from the
 * configuration and are checked to match. 0 or a negative errno after state_fail(). */
struct state_writer;
struct state_section;
int acpi_pm_save(const struct acpi_pm *pm, struct state_writer *w);
int acpi_pm_restore(struct acpi_pm *pm, const struct state_section *sec);

#endif /* VIRIDIAN_DEVICES_ACPI_PM_H */
