/* Unit tests for devices/i8042.c: controller self test, command byte, keyboard probe
 * replies, AUX loopback, IRQ 1/12 levels following the output queue, and the reset line
 * (command 0xFE, pulse commands and output-port bit 0). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "devices/i8042.h"
#include "irq_recorder.h"

#define DATA I8042_DATA_PORT
#define CMD  I8042_COMMAND_PORT
#define KBD  I8042_KBD_IRQ
#define AUX  I8042_AUX_IRQ

#define ST_OBF 0x01
#define ST_SYS 0x04
#define ST_AUX 0x20

struct ctx {
	struct irq_recorder rec;
	unsigned resets;
	struct i8042 k;
};

static void on_reset(void *opaque)
{
	struct ctx *c = opaque;
	c->resets++;
}

static int setup(void **state)
{
	struct ctx *c = calloc(1, sizeof(*c));
	if (!c)
		return -1;
	struct irq_line kl = irq_recorder_line(&c->rec, KBD), al = irq_recorder_line(&c->rec, AUX);
	i8042_init(&c->k, &kl, &al, on_reset, c);
	*state = c;
	return 0;
}

static int teardown(void **state)
{
	struct ctx *c = *state;
	i8042_destroy(&c->k);
	free(c);
	return 0;
}

static uint8_t status(struct ctx *c) { return i8042_read(&c->k, CMD); }
static uint8_t data(struct ctx *c) { return i8042_read(&c->k, DATA); }
static void command(struct ctx *c, uint8_t v) { i8042_write(&c->k, CMD, v); }
static void send(struct ctx *c, uint8_t v) { i8042_write(&c->k, DATA, v); }

/* Read one byte the way Linux does: wait for OBF, then read the data port. */
static uint8_t expect_byte(struct ctx *c, bool aux)
{
	uint8_t st = status(c);
	assert_true(st & ST_OBF);
	assert_int_equal(!!(st & ST_AUX), aux);
	return data(c);
}

static void expect_empty(struct ctx *c)
{
	assert_false(status(c) & ST_OBF);
}

static void test_power_on(void **state)
{
	struct ctx *c = *state;
	uint8_t st = status(c);
	assert_false(st & ST_OBF);
	assert_true(st & ST_SYS);
	assert_int_equal(c->rec.level[KBD], 0);
	assert_int_equal(c->rec.level[AUX], 0);
	assert_int_equal(c->resets, 0);
	assert_int_equal(c->rec.bad_irq, 0);
}

static void test_self_test(void **state)
{
	struct ctx *c = *state;
	command(c, 0xAA);
	assert_int_equal(expect_byte(c, false), 0x55);
	expect_empty(c);
	/* interface tests pass */
	command(c, 0xAB);
	assert_int_equal(expect_byte(c, false), 0x00);
	command(c, 0xA9);
	assert_int_equal(expect_byte(c, false), 0x00);
	expect_empty(c);
}

static void test_command_byte(void **state)
{
	struct ctx *c = *state;
	command(c, 0x20);
	uint8_t mode = expect_byte(c, false);
	assert_int_equal(mode, 0x45);                 /* KBD interrupt, system flag, translation */
	command(c, 0x60);
	send(c, 0x47);
	expect_empty(c);                              /* a data byte for the controller, no reply */
	command(c, 0x20);
	assert_int_equal(expect_byte(c, false), 0x47);
	/* enable/disable commands flip the disable bits */
	command(c, 0xA7);
	command(c, 0x20);
	assert_int_equal(expect_byte(c, false) & 0x20, 0x20);
	command(c, 0xA8);
	command(c, 0x20);
	assert_int_equal(expect_byte(c, false) & 0x20, 0x00);
	command(c, 0xAD);
	command(c, 0x20);
	assert_int_equal(expect_byte(c, false) & 0x10, 0x10);
	command(c, 0xAE);
	command(c, 0x20);
	assert_int_equal(expect_byte(c, false), 0x47);
}

static void test_keyboard_reset_and_identify(void **state)
{
	struct ctx *c = *state;
	send(c, 0xFF);                                /* reset */
	assert_int_equal(expect_byte(c, false), 0xFA);
	assert_int_equal(expect_byte(c, false), 0xAA);
	expect_empty(c);
	send(c, 0xF2);                                /* identify */
	assert_int_equal(expect_byte(c, false), 0xFA);
	assert_int_equal(expect_byte(c, false), 0xAB);
	assert_int_equal(expect_byte(c, false), 0x83);
	expect_empty(c);
}

static void test_keyboard_commands(void **state)
{
	struct ctx *c = *state;
	send(c, 0xEE);                                /* echo */
	assert_int_equal(expect_byte(c, false), 0xEE);
	send(c, 0xED);                                /* set LEDs: ack, then ack the parameter */
	assert_int_equal(expect_byte(c, false), 0xFA);
	send(c, 0x07);
	assert_int_equal(expect_byte(c, false), 0xFA);
	expect_empty(c);
	send(c, 0xF3);                                /* typematic rate */
	assert_int_equal(expect_byte(c, false), 0xFA);
	send(c, 0xFF);                                /* a parameter, not a reset */
	assert_int_equal(expect_byte(c, false), 0xFA);
	expect_empty(c);
	send(c, 0xF0);                                /* get scancode set */
	assert_int_equal(expect_byte(c, false), 0xFA);
	send(c, 0x00);
	assert_int_equal(expect_byte(c, false), 0xFA);
	assert_int_equal(expect_byte(c, false), 0x02);
	send(c, 0xF4);
	assert_int_equal(expect_byte(c, false), 0xFA);
	send(c, 0xF5);
	assert_int_equal(expect_byte(c, false), 0xFA);
	send(c, 0xF6);
	assert_int_equal(expect_byte(c, false), 0xFA);
	send(c, 0x01);                                /* unknown: resend */
	assert_int_equal(expect_byte(c, false), 0xFE);
	expect_empty(c);
}

static void test_aux_loopback(void **state)
{
	struct ctx *c = *state;
	command(c, 0xD3);
	send(c, 0x5A);
	assert_int_equal(expect_byte(c, true), 0x5A);  /* with the AUX data status bit */
	expect_empty(c);
	/* keyboard loopback: same byte, no AUX bit */
	command(c, 0xD2);
	send(c, 0xA5);
	assert_int_equal(expect_byte(c, false), 0xA5);
	expect_empty(c);
	/* bytes to the (absent) mouse get no answer */
	command(c, 0xD4);
	send(c, 0xF2);
	expect_empty(c);
}

static void test_kbd_irq_follows_queue(void **state)
{
	struct ctx *c = *state;
	send(c, 0xF2);                               /* three bytes queued */
	assert_int_equal(c->rec.level[KBD], 1);
	assert_int_equal(c->rec.level[AUX], 0);
	data(c);
	assert_int_equal(c->rec.level[KBD], 1);       /* still more */
	data(c);
	data(c);
	assert_int_equal(c->rec.level[KBD], 0);
	/* the status read does not change it */
	status(c);
	assert_int_equal(c->rec.level[KBD], 0);
}

static void test_irq_enable_bits(void **state)
{
	struct ctx *c = *state;
	/* keyboard interrupt off: bytes queue without IRQ 1 */
	command(c, 0x60);
	send(c, 0x44);
	send(c, 0xEE);
	assert_int_equal(c->rec.level[KBD], 0);
	assert_true(status(c) & ST_OBF);
	/* turning it on with a byte waiting raises it */
	command(c, 0x60);
	send(c, 0x45);
	assert_int_equal(c->rec.level[KBD], 1);
	assert_int_equal(data(c), 0xEE);
	assert_int_equal(c->rec.level[KBD], 0);

	/* AUX interrupt off (the default): AUX data raises nothing */
	command(c, 0xD3);
	send(c, 0x11);
	assert_int_equal(c->rec.level[AUX], 0);
	assert_int_equal(c->rec.level[KBD], 0);       /* and not the keyboard line either */
	/* on: IRQ 12 */
	command(c, 0x60);
	send(c, 0x47);
	assert_int_equal(c->rec.level[AUX], 1);
	assert_int_equal(c->rec.level[KBD], 0);
	assert_int_equal(expect_byte(c, true), 0x11);
	assert_int_equal(c->rec.level[AUX], 0);
}

static void test_irq_line_switches_with_head(void **state)
{
	struct ctx *c = *state;
	command(c, 0x60);
	send(c, 0x47);                                /* both interrupts on */
	command(c, 0xD3);
	send(c, 0x01);                                /* AUX byte first */
	command(c, 0xD2);
	send(c, 0x02);                                /* then a keyboard byte */
	assert_int_equal(c->rec.level[AUX], 1);
	assert_int_equal(c->rec.level[KBD], 0);
	assert_int_equal(expect_byte(c, true), 0x01);
	assert_int_equal(c->rec.level[AUX], 0);
	assert_int_equal(c->rec.level[KBD], 1);
	assert_int_equal(expect_byte(c, false), 0x02);
	assert_int_equal(c->rec.level[KBD], 0);
	assert_int_equal(c->rec.level[AUX], 0);
}

static void test_reset_command(void **state)
{
	struct ctx *c = *state;
	command(c, 0xFE);
	assert_int_equal(c->resets, 1);
	command(c, 0xFF);                             /* pulse nothing */
	assert_int_equal(c->resets, 1);
	command(c, 0xF0);                             /* pulse all four lines, bit 0 included */
	assert_int_equal(c->resets, 2);
	command(c, 0xFD);                             /* pulse line 1 only */
	assert_int_equal(c->resets, 2);
}

static void test_output_port(void **state)
{
	struct ctx *c = *state;
	command(c, 0xD0);
	assert_int_equal(expect_byte(c, false) & 0x01, 0x01); /* reset line high: running */
	command(c, 0xD1);
	send(c, 0xDF);                                /* bit 0 high: no reset */
	assert_int_equal(c->resets, 0);
	command(c, 0xD0);
	assert_int_equal(expect_byte(c, false), 0xDF);
	command(c, 0xD1);
	send(c, 0xDE);                                /* bit 0 low: reset */
	assert_int_equal(c->resets, 1);
	expect_empty(c);
}

static void test_command_cancels_pending_data(void **state)
{
	struct ctx *c = *state;
	command(c, 0xD1);                             /* waits for an output-port byte ... */
	command(c, 0xAA);                             /* ... but a new command comes first */
	assert_int_equal(expect_byte(c, false), 0x55);
	send(c, 0xFE);                                /* now a keyboard byte (resend), not the port */
	assert_int_equal(c->resets, 0);
	assert_int_equal(expect_byte(c, false), 0xFE);
	command(c, 0x60);
	command(c, 0x20);
	assert_int_equal(expect_byte(c, false), 0x45); /* the command byte was not written */
}

static void test_queue_overflow(void **state)
{
	struct ctx *c = *state;
	for (unsigned i = 0; i < 10; i++)
		send(c, 0xF2);                        /* 30 bytes of replies into 16 places */
	unsigned n = 0;
	while (status(c) & ST_OBF) {
		data(c);
		n++;
		assert_true(n <= I8042_QUEUE);
	}
	assert_int_equal(n, I8042_QUEUE);
	assert_int_equal(c->rec.level[KBD], 0);
}

static void test_no_reset_callback(void **state)
{
	(void)state;
	struct irq_recorder rec = { 0 };
	struct irq_line kl = irq_recorder_line(&rec, KBD), al = irq_recorder_line(&rec, AUX);
	struct i8042 k;
	i8042_init(&k, &kl, &al, NULL, NULL);
	i8042_write(&k, CMD, 0xFE);                   /* nobody listening: no crash */
	i8042_write(&k, CMD, 0xD1);
	i8042_write(&k, DATA, 0x00);
	i8042_destroy(&k);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_power_on),
		T(test_self_test),
		T(test_command_byte),
		T(test_keyboard_reset_and_identify),
		T(test_keyboard_commands),
		T(test_aux_loopback),
		T(test_kbd_irq_follows_queue),
		T(test_irq_enable_bits),
		T(test_irq_line_switches_with_head),
		T(test_reset_command),
		T(test_output_port),
		T(test_command_cancels_pending_data),
		T(test_queue_overflow),
		cmocka_unit_test(test_no_reset_callback),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
