/* Unit tests for devices/acpi_pm.c: PM1 status/enable/control, soft-off, reset, PM timer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "devices/acpi_pm.h"

#define EVT  ACPI_PM1A_EVT_PORT
#define CNT  ACPI_PM1A_CNT_PORT
#define TMR  ACPI_PM_TMR_PORT
#define RST  ACPI_RESET_PORT

static struct acpi_pm fresh(void)
{
	struct acpi_config cfg;
	acpi_config_default(&cfg, 1);
	struct acpi_pm pm;
	acpi_pm_init(&pm, &cfg);
	return pm;
}

static uint16_t slp(unsigned typ, bool en)
{
	return (uint16_t)((typ << ACPI_PM1_CNT_SLP_TYP_SHIFT) | (en ? ACPI_PM1_CNT_SLP_EN : 0));
}

static void test_power_on_state(void **state)
{
	(void)state;
	struct acpi_pm pm = fresh();
	assert_int_equal(acpi_pm_read(&pm, EVT, 2, 0), 0);
	assert_int_equal(acpi_pm_read(&pm, EVT + 2, 2, 0), 0);
	assert_int_equal(acpi_pm_read(&pm, CNT, 2, 0), ACPI_PM1_CNT_SCI_EN);
	assert_false(acpi_pm_sci_level(&pm));
}

static void test_handles(void **state)
{
	(void)state;
	struct acpi_pm pm = fresh();
	for (unsigned p = EVT; p < EVT + 4; p++)
		assert_true(acpi_pm_handles(&pm, (uint16_t)p));
	for (unsigned p = CNT; p < CNT + 2; p++)
		assert_true(acpi_pm_handles(&pm, (uint16_t)p));
	for (unsigned p = TMR; p < TMR + 4; p++)
		assert_true(acpi_pm_handles(&pm, (uint16_t)p));
	assert_true(acpi_pm_handles(&pm, RST));
	assert_false(acpi_pm_handles(&pm, CNT + 2));
	assert_false(acpi_pm_handles(&pm, CNT + 3));
	assert_false(acpi_pm_handles(&pm, RST + 1));
	assert_false(acpi_pm_handles(&pm, EVT - 1));
	assert_false(acpi_pm_handles(&pm, 0));
	assert_false(acpi_pm_handles(&pm, 0xffff));
	/* an unclaimed byte reads as open bus */
	assert_int_equal(acpi_pm_read(&pm, CNT + 2, 1, 0), 0xff);
	assert_int_equal(acpi_pm_read(&pm, 0xffff, 4, 0), 0xffffffff);
}

static void test_s5_powers_off(void **state)
{
	(void)state;
	struct acpi_pm pm = fresh();
	/* ACPICA's order: SLP_TYP first, then SLP_TYP | SLP_EN */
	assert_int_equal(acpi_pm_write(&pm, CNT, ACPI_PM1_CNT_SCI_EN | slp(ACPI_SLP_TYP_S5, false),
	                               2), ACPI_PM_NONE);
	assert_int_equal(acpi_pm_read(&pm, CNT, 2, 0),
	                 ACPI_PM1_CNT_SCI_EN | slp(ACPI_SLP_TYP_S5, false));
	assert_int_equal(acpi_pm_write(&pm, CNT, ACPI_PM1_CNT_SCI_EN | slp(ACPI_SLP_TYP_S5, true),
	                               2), ACPI_PM_POWER_OFF);
	/* SLP_EN is write-only */
	assert_int_equal(acpi_pm_read(&pm, CNT, 2, 0) & ACPI_PM1_CNT_SLP_EN, 0);

	/* a single write of the high byte does it too, as does a 4-byte write */
	pm = fresh();
	assert_int_equal(acpi_pm_write(&pm, CNT + 1, slp(ACPI_SLP_TYP_S5, true) >> 8, 1),
	                 ACPI_PM_POWER_OFF);
	pm = fresh();
	assert_int_equal(acpi_pm_write(&pm, CNT, slp(ACPI_SLP_TYP_S5, true), 4),
	                 ACPI_PM_POWER_OFF);
}

static void test_other_sleep_types_do_nothing(void **state)
{
	(void)state;
	for (unsigned typ = 0; typ < 8; typ++) {
		if (typ == ACPI_SLP_TYP_S5)
			continue;
		struct acpi_pm pm = fresh();
		assert_int_equal(acpi_pm_write(&pm, CNT, slp(typ, true), 2), ACPI_PM_NONE);
		/* the guest's wait for WAK_STS ends at once */
		assert_true(acpi_pm_read(&pm, EVT, 2, 0) & ACPI_PM1_WAK_STS);
		assert_false(acpi_pm_sci_level(&pm));
	}
	/* SLP_TYP = S5 without SLP_EN is only a setting */
	struct acpi_pm pm = fresh();
	assert_int_equal(acpi_pm_write(&pm, CNT, slp(ACPI_SLP_TYP_S5, false), 2), ACPI_PM_NONE);
	/* writing the low byte alone cannot sleep: SLP_EN lives in the high byte */
	assert_int_equal(acpi_pm_write(&pm, CNT, 0xff, 1), ACPI_PM_NONE);
	assert_int_equal(acpi_pm_read(&pm, EVT, 2, 0), 0);
}

static void test_sci_en_fixed(void **state)
{
	(void)state;
	struct acpi_pm pm = fresh();
	assert_int_equal(acpi_pm_write(&pm, CNT, 0, 2), ACPI_PM_NONE);
	assert_int_equal(acpi_pm_read(&pm, CNT, 2, 0), ACPI_PM1_CNT_SCI_EN);
	assert_int_equal(acpi_pm_read(&pm, CNT, 1, 0), ACPI_PM1_CNT_SCI_EN);
	/* GBL_RLS is write-only; BM_RLD reads back */
	acpi_pm_write(&pm, CNT, ACPI_PM1_CNT_GBL_RLS | ACPI_PM1_CNT_BM_RLD, 2);
	assert_int_equal(acpi_pm_read(&pm, CNT, 2, 0), ACPI_PM1_CNT_SCI_EN | ACPI_PM1_CNT_BM_RLD);
}

static void test_status_write_one_to_clear(void **state)
{
	(void)state;
	struct acpi_pm pm = fresh();
	acpi_pm_write(&pm, CNT, slp(1, true), 2);  /* sets WAK_STS */
	acpi_pm_power_button(&pm);
	uint16_t both = ACPI_PM1_WAK_STS | ACPI_PM1_PWRBTN;
	assert_int_equal(acpi_pm_read(&pm, EVT, 2, 0), both);

	/* writing 0s (or the bits of other events) clears nothing */
	acpi_pm_write(&pm, EVT, 0, 2);
	acpi_pm_write(&pm, EVT, ACPI_PM1_TMR | ACPI_PM1_RTC, 2);
	assert_int_equal(acpi_pm_read(&pm, EVT, 2, 0), both);
	/* writing 1 clears just that bit */
	acpi_pm_write(&pm, EVT, ACPI_PM1_PWRBTN, 2);
	assert_int_equal(acpi_pm_read(&pm, EVT, 2, 0), ACPI_PM1_WAK_STS);
	/* byte access to the high byte */
	acpi_pm_write(&pm, EVT + 1, ACPI_PM1_WAK_STS >> 8, 1);
	assert_int_equal(acpi_pm_read(&pm, EVT, 2, 0), 0);
}

static void test_enable_and_sci(void **state)
{
	(void)state;
	struct acpi_pm pm = fresh();
	acpi_pm_power_button(&pm);
	assert_false(acpi_pm_sci_level(&pm));  /* not enabled */

	/* one 4-byte write spanning both registers: enable PWRBTN, clear no status */
	assert_int_equal(acpi_pm_write(&pm, EVT, (uint32_t)ACPI_PM1_PWRBTN << 16, 4),
	                 ACPI_PM_NONE);
	assert_int_equal(acpi_pm_read(&pm, EVT + 2, 2, 0), ACPI_PM1_PWRBTN);
	assert_int_equal(acpi_pm_read(&pm, EVT, 4, 0),
	                 ((uint32_t)ACPI_PM1_PWRBTN << 16) | ACPI_PM1_PWRBTN);
	assert_true(acpi_pm_sci_level(&pm));

	/* the guest's handler acknowledges: the line drops */
	acpi_pm_write(&pm, EVT, ACPI_PM1_PWRBTN, 2);
	assert_false(acpi_pm_sci_level(&pm));
	assert_int_equal(acpi_pm_read(&pm, EVT + 2, 2, 0), ACPI_PM1_PWRBTN);

	/* unimplemented enable bits read back as 0 */
	acpi_pm_write(&pm, EVT + 2, 0xffff, 2);
	assert_int_equal(acpi_pm_read(&pm, EVT + 2, 2, 0), ACPI_PM1_EN_MASK);
	/* a byte write to the enable's high byte keeps the low byte */
	acpi_pm_write(&pm, EVT + 3, 0, 1);
	assert_int_equal(acpi_pm_read(&pm, EVT + 2, 2, 0), ACPI_PM1_EN_MASK & 0xff);
}

static void test_reset(void **state)
{
	(void)state;
	struct acpi_pm pm = fresh();
	assert_int_equal(acpi_pm_write(&pm, RST, ACPI_RESET_VALUE ^ 0xff, 1), ACPI_PM_NONE);
	assert_int_equal(acpi_pm_write(&pm, RST, ACPI_RESET_VALUE, 1), ACPI_PM_RESET);
	assert_int_equal(acpi_pm_read(&pm, RST, 1, 0), 0);

	struct acpi_config cfg;
	acpi_config_default(&cfg, 1);
	cfg.reset_port = 0;
	acpi_pm_init(&pm, &cfg);
	assert_false(acpi_pm_handles(&pm, ACPI_RESET_PORT));
	assert_int_equal(acpi_pm_write(&pm, ACPI_RESET_PORT, ACPI_RESET_VALUE, 1), ACPI_PM_NONE);
}

static void test_timer(void **state)
{
	(void)state;
	struct acpi_pm pm = fresh();
	assert_int_equal(acpi_pm_read(&pm, TMR, 4, 0), 0);
	assert_int_equal(acpi_pm_read(&pm, TMR, 4, 1000000000ull), ACPI_PM_TIMER_HZ);
	assert_int_equal(acpi_pm_timer(279), 0);          /* one tick is ~279.37 ns */
	assert_int_equal(acpi_pm_timer(280), 1);
	assert_int_equal(acpi_pm_timer(500000000ull), ACPI_PM_TIMER_HZ / 2);

	/* exact, with no 64-bit overflow, far into the VM's life */
	const uint64_t samples[] = {5153960755ull, 86400ull * 1000000000ull,
	                            1000ull * 86400ull * 1000000000ull + 123456789ull};
	for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
		unsigned __int128 want = (unsigned __int128)samples[i] * ACPI_PM_TIMER_HZ / 1000000000u;
		assert_int_equal(acpi_pm_timer(samples[i]), (uint32_t)want);
	}

	/* wraps at 2^32 (TMR_VAL_EXT): 2^32 ticks is ~1199.86 s */
	uint64_t wrap_ns = (uint64_t)(((unsigned __int128)1 << 32) * 1000000000u /
	                              ACPI_PM_TIMER_HZ) + 1;
	assert_true(acpi_pm_timer(wrap_ns) < 10);

	/* byte reads compose into the dword */
	uint64_t now = 123456789012ull;
	uint32_t dword = acpi_pm_read(&pm, TMR, 4, now);
	uint32_t bytes = 0;
	for (unsigned i = 0; i < 4; i++)
		bytes |= acpi_pm_read(&pm, (uint16_t)(TMR + i), 1, now) << (8 * i);
	assert_int_equal(bytes, dword);
	assert_int_equal(acpi_pm_read(&pm, TMR + 2, 2, now), dword >> 16);

	/* read-only */
	assert_int_equal(acpi_pm_write(&pm, TMR, 0, 4), ACPI_PM_NONE);
	assert_int_equal(acpi_pm_read(&pm, TMR, 4, now), dword);
}

static void test_bad_sizes(void **state)
{
	(void)state;
	struct acpi_pm pm = fresh();
	assert_int_equal(acpi_pm_write(&pm, CNT, slp(ACPI_SLP_TYP_S5, true), 0), ACPI_PM_NONE);
	assert_int_equal(acpi_pm_write(&pm, CNT, slp(ACPI_SLP_TYP_S5, true), 8), ACPI_PM_NONE);
	assert_int_equal(acpi_pm_read(&pm, CNT, 0, 0), 0xffffffff);
	assert_int_equal(acpi_pm_read(&pm, CNT, 8, 0), 0xffffffff);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_power_on_state),
		cmocka_unit_test(test_handles),
		cmocka_unit_test(test_s5_powers_off),
		cmocka_unit_test(test_other_sleep_types_do_nothing),
		cmocka_unit_test(test_sci_en_fixed),
		cmocka_unit_test(test_status_write_one_to_clear),
		cmocka_unit_test(test_enable_and_sci),
		cmocka_unit_test(test_reset),
		cmocka_unit_test(test_timer),
		cmocka_unit_test(test_bad_sizes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
