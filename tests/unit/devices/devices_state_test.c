/* Saved state of the emulated devices (uart/rtc/i8042/acpi_pm _save/_restore): each device is
 * driven through its ports into a non-trivial state, saved to a memfd, restored into a fresh
 * one and must then answer the same reads in the same order with the same IRQ levels (which
 * the restore drives on its own line); a re-save is identical. Hostile payloads fail with a
 * message and leave the device and its lines untouched. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "../hv/state_file.h"
#include "devices/acpi_pm.h"
#include "devices/i8042.h"
#include "devices/rtc.h"
#include "devices/uart.h"
#include "irq_recorder.h"

/* A file holding what call (a device's save into w_) writes. */
#define SAVE(f, call)                                                                      \
	do {                                                                               \
		struct state_writer *w_ = sf_begin(f);                                     \
		assert_int_equal((call), 0);                                               \
		sf_end(f, w_);                                                             \
	} while (0)

static struct state_section one_section(struct sf *f, uint32_t type)
{
	struct state_section sec;
	assert_int_equal(sf_next(f, &sec), 1);
	assert_int_equal(sec.type, type);
	assert_int_equal(sec.version, 1);
	return sec;
}

static uint8_t *copy_payload(const struct state_section *sec, size_t *len)
{
	*len = sec->payload.size;
	uint8_t *p = malloc(*len + 1);
	assert_non_null(p);
	memcpy(p, sec->payload.data, *len);
	p[*len] = 0;
	return p;
}

/* restore(obj, payload with one field replaced) fails cleanly saying text. */
static void assert_field_fails(int (*restore)(void *, const struct state_section *), void *obj,
			       uint32_t type, const uint8_t *good, size_t len, size_t off,
			       uint64_t value, unsigned width, const char *text)
{
	uint8_t *buf = malloc(len);
	assert_non_null(buf);
	memcpy(buf, good, len);
	sf_poke(buf, off, value, width);
	struct state_section sec = sf_section(type, 0, 1, buf, len);
	sf_assert_error(restore(obj, &sec), -EBADMSG, text);
	free(buf);
}

/* Wrong version and wrong type, for any device. */
static void assert_header_checks(int (*restore)(void *, const struct state_section *), void *obj,
				 uint32_t type, const uint8_t *p, size_t len)
{
	struct state_section sec = sf_section(type, 0, 2, p, len);
	sf_assert_error(restore(obj, &sec), -EPROTONOSUPPORT, "section version 2");
	sec = sf_section(STATE_SECTION_PARTITION, 0, 1, p, len);
	sf_assert_error(restore(obj, &sec), -EINVAL, "section type 0x100");
}

/* ---- UART ---- */

#define LCR 3
#define IER 1
#define IIR 2
#define FCR 2
#define MCR 4
#define LSR 5
#define MSR 6
#define SCR 7

static int uart_restore_any(void *u, const struct state_section *sec)
{
	return uart_restore(u, sec);
}

/* Divisor set, FIFO on, RX and THR-empty interrupts on with OUT2, a scratch byte, and a
 * receive FIFO that has wrapped: IRQ high. */
static void uart_busy(struct uart *u)
{
	uart_write(u, LCR, 0x83);
	uart_write(u, 0, 0x01);
	uart_write(u, IER, 0x02);
	uart_write(u, LCR, 0x03);
	uart_write(u, FCR, 0x07);
	uart_write(u, IER, 0x03);
	uart_write(u, MCR, 0x0B);
	uart_write(u, SCR, 0x5A);
	uint8_t bytes[300];
	for (unsigned i = 0; i < sizeof(bytes); i++)
		bytes[i] = (uint8_t)(i * 7);
	assert_int_equal(uart_receive(u, bytes, 200), 200);
	for (int i = 0; i < 150; i++)
		(void)uart_read(u, 0);
	assert_int_equal(uart_receive(u, bytes + 200, 100), 100); /* from head 150: wraps */
	uart_write(u, 0, 'x');                                   /* THR-empty pending */
}

static void test_uart_round_trip(void **state)
{
	(void)state;
	struct irq_recorder ra = { 0 }, rb = { 0 };
	struct irq_line la = irq_recorder_line(&ra, UART_COM1_IRQ), lb = irq_recorder_line(&rb, UART_COM1_IRQ);
	struct uart a, b;
	uart_init(&a, -1, &la);
	uart_init(&b, -1, &lb);
	uart_busy(&a);
	assert_int_equal(ra.level[UART_COM1_IRQ], 1);

	struct sf fa, fb;
	SAVE(&fa, uart_save(&a, w_, 0));
	struct state_section sec = one_section(&fa, STATE_SECTION_UART);
	assert_int_equal(sec.instance, 0);
	assert_int_equal(uart_restore(&b, &sec), 0);
	assert_int_equal(rb.level[UART_COM1_IRQ], 1);
	assert_int_equal(rb.changes[UART_COM1_IRQ], 1);
	SAVE(&fb, uart_save(&b, w_, 0));
	sf_assert_same(&fa, &fb);
	sf_close(&fa);
	sf_close(&fb);

	/* The same reads give the same answers and lines: registers, divisor, then the FIFO
	 * oldest first until empty, interrupt identification on the way. */
	const unsigned regs[] = { IIR, LSR, MSR, SCR, LCR, MCR, IER, IIR, IIR };
	for (size_t i = 0; i < sizeof(regs) / sizeof(regs[0]); i++)
		assert_int_equal(uart_read(&a, regs[i]), uart_read(&b, regs[i]));
	uart_write(&a, LCR, 0x83);
	uart_write(&b, LCR, 0x83);
	assert_int_equal(uart_read(&b, 0), 0x01);
	assert_int_equal(uart_read(&b, IER), 0x02);
	assert_int_equal(uart_read(&a, 0), 0x01);
	assert_int_equal(uart_read(&a, IER), 0x02);
	uart_write(&a, LCR, 0x03);
	uart_write(&b, LCR, 0x03);
	for (int i = 150; i < 300; i++) {
		assert_int_equal(uart_read(&b, LSR) & 1, 1);
		assert_int_equal(uart_read(&b, 0), (uint8_t)(i * 7));
		assert_int_equal(uart_read(&a, LSR) & 1, 1);
		assert_int_equal(uart_read(&a, 0), (uint8_t)(i * 7));
		assert_int_equal(ra.level[UART_COM1_IRQ], rb.level[UART_COM1_IRQ]);
	}
	assert_int_equal(uart_read(&b, LSR) & 1, 0);
	/* the THR-empty interrupt is still up until IIR shows it */
	assert_int_equal(rb.level[UART_COM1_IRQ], 1);
	assert_int_equal(uart_read(&a, IIR), 0xC2);
	assert_int_equal(uart_read(&b, IIR), 0xC2);
	assert_int_equal(rb.level[UART_COM1_IRQ], 0);
	assert_int_equal(ra.level[UART_COM1_IRQ], 0);
	uart_destroy(&a);
	uart_destroy(&b);
}

static void test_uart_hostile(void **state)
{
	(void)state;
	struct irq_recorder ra = { 0 }, rb = { 0 };
	struct irq_line la = irq_recorder_line(&ra, UART_COM1_IRQ), lb = irq_recorder_line(&rb, UART_COM1_IRQ);
	struct uart a, b;
	uart_init(&a, -1, &la);
	uart_init(&b, -1, &lb);
	uart_busy(&a);
	struct sf f;
	SAVE(&f, uart_save(&a, w_, 0));
	struct state_section sec = one_section(&f, STATE_SECTION_UART);
	size_t len;
	uint8_t *p = copy_payload(&sec, &len);
	sf_close(&f);
	assert_int_equal(len, 11 + 2 + 150);
	const uint32_t T = STATE_SECTION_UART;
	/* ier lcr mcr lsr_err msr scr dll dlm fcr thre irq rx_count(u16) bytes */
	assert_field_fails(uart_restore_any, &b, T, p, len, 11, 257, 2, "uart 0: 257 bytes in the receive FIFO, at most 256");
	assert_field_fails(uart_restore_any, &b, T, p, len, 11, 0xFFFF, 2, "65535 bytes");
	assert_field_fails(uart_restore_any, &b, T, p, len, 0, 0x13, 1, "IER 0x13");
	assert_field_fails(uart_restore_any, &b, T, p, len, 2, 0x2B, 1, "MCR 0x2b");
	assert_field_fails(uart_restore_any, &b, T, p, len, 8, 0x03, 1, "FCR 0x3");
	assert_field_fails(uart_restore_any, &b, T, p, len, 3, 0x01, 1, "LSR errors 0x1");
	assert_field_fails(uart_restore_any, &b, T, p, len, 9, 2, 1, "THR-empty pending 2");
	assert_field_fails(uart_restore_any, &b, T, p, len, 10, 2, 1, "IRQ level 2");
	assert_field_fails(uart_restore_any, &b, T, p, len, 10, 0, 1, "IRQ level 0, but its registers say 1");
	assert_field_fails(uart_restore_any, &b, T, p, len, 2, 0x03, 1, "IRQ level 1, but its registers say 0");
	sf_assert_exact_length(uart_restore_any, &b, T, 0, p, len);
	assert_header_checks(uart_restore_any, &b, T, p, len);
	/* nothing changed: b is a UART at power-on, its line never touched */
	assert_int_equal(rb.calls, 0);
	assert_int_equal(uart_read(&b, SCR), 0);
	assert_int_equal(uart_read(&b, LSR), 0x60);
	free(p);
	uart_destroy(&a);
	uart_destroy(&b);
}

/* ---- RTC ---- */

static time_t clock_a = 1700000000, clock_b = 1700000000 + 3600;
static time_t now_a(void) { return clock_a; }
static time_t now_b(void) { return clock_b; }

static int rtc_restore_any(void *r, const struct state_section *sec)
{
	return rtc_restore(r, sec);
}

static uint8_t cmos_rd(struct rtc *r, uint8_t index)
{
	rtc_write(r, RTC_PORT_INDEX, index);
	return rtc_read(r, RTC_PORT_DATA);
}

static void cmos_wr(struct rtc *r, uint8_t index, uint8_t v)
{
	rtc_write(r, RTC_PORT_INDEX, index);
	rtc_write(r, RTC_PORT_DATA, v);
}

/* CMOS RAM filled, the clock set a year ahead, then SET held with half a new date latched
 * and the index left on the CMOS RAM. */
static void rtc_busy(struct rtc *r)
{
	for (uint8_t i = 0x0E; i < 0x80; i++)
		if (i != 0x32)
			cmos_wr(r, i, (uint8_t)(i ^ 0xA5));
	cmos_wr(r, 0x09, 0x24); /* year 24 (BCD): the offset moves */
	cmos_wr(r, 0x0B, 0x82); /* SET, 24 h, BCD */
	cmos_wr(r, 0x00, 0x30);
	cmos_wr(r, 0x04, 0x13);
	rtc_write(r, RTC_PORT_INDEX, 0x40);
}

static void test_rtc_round_trip(void **state)
{
	(void)state;
	struct rtc a, b;
	rtc_init(&a, now_a);
	rtc_init(&b, now_b);
	rtc_busy(&a);
	struct sf fa, fb;
	SAVE(&fa, rtc_save(&a, w_));
	struct state_section sec = one_section(&fa, STATE_SECTION_RTC);
	assert_int_equal(rtc_restore(&b, &sec), 0);
	assert_ptr_equal(b.now, now_b); /* the new host's clock */
	assert_int_equal(b.offset_s, a.offset_s);
	SAVE(&fb, rtc_save(&b, w_));
	sf_assert_same(&fa, &fb);
	sf_close(&fa);
	sf_close(&fb);

	/* The index survived; CMOS RAM and the latched time read the same. */
	assert_int_equal(rtc_read(&a, RTC_PORT_DATA), rtc_read(&b, RTC_PORT_DATA));
	for (uint8_t i = 0; i < 0x80; i++)
		assert_int_equal(cmos_rd(&a, i), cmos_rd(&b, i));
	assert_int_equal(cmos_rd(&b, 0x00), 0x30);
	assert_int_equal(cmos_rd(&b, 0x04), 0x13);
	/* Released, the clock runs from the new host's time: set to the latched date, it reads
	 * the same on both. */
	cmos_wr(&a, 0x0B, 0x02);
	cmos_wr(&b, 0x0B, 0x02);
	for (uint8_t i = 0; i <= 9; i++)
		assert_int_equal(cmos_rd(&a, i), cmos_rd(&b, i));
	rtc_destroy(&a);
	rtc_destroy(&b);
}

/* Without SET, the guest's clock keeps running while the VM is saved: restored on a host
 * an hour later, it reads an hour later. */
static void test_rtc_keeps_running(void **state)
{
	(void)state;
	struct rtc a, b;
	rtc_init(&a, now_a);
	rtc_init(&b, now_b);
	cmos_wr(&a, 0x0B, 0x06); /* binary, 24 h */
	cmos_wr(&a, 0x04, 5);
	struct sf f;
	SAVE(&f, rtc_save(&a, w_));
	struct state_section sec = one_section(&f, STATE_SECTION_RTC);
	assert_int_equal(rtc_restore(&b, &sec), 0);
	sf_close(&f);
	assert_int_equal(cmos_rd(&a, 0x04), 5);
	assert_int_equal(cmos_rd(&b, 0x04), 6);
	assert_int_equal(cmos_rd(&a, 0x02), cmos_rd(&b, 0x02));
	rtc_destroy(&a);
	rtc_destroy(&b);
}

static void test_rtc_hostile(void **state)
{
	(void)state;
	struct rtc a, b;
	rtc_init(&a, now_a);
	rtc_init(&b, now_b);
	rtc_busy(&a);
	struct sf f;
	SAVE(&f, rtc_save(&a, w_));
	struct state_section sec = one_section(&f, STATE_SECTION_RTC);
	size_t len;
	uint8_t *p = copy_payload(&sec, &len);
	sf_close(&f);
	assert_int_equal(len, 1 + 128 + 8 + 7 * 4);
	const uint32_t T = STATE_SECTION_RTC;
	/* index 0, cmos 1-128, offset 129, latched sec min hour mday mon year wday from 137 */
	assert_field_fails(rtc_restore_any, &b, T, p, len, 0, 0x80, 1, "index 128, there are 128");
	assert_field_fails(rtc_restore_any, &b, T, p, len, 1 + 0x0A, 0xA6, 1, "registers A-D 0xa6");
	assert_field_fails(rtc_restore_any, &b, T, p, len, 1 + 0x0B, 0x92, 1, "0x92");
	assert_field_fails(rtc_restore_any, &b, T, p, len, 1 + 0x0C, 0x80, 1, "registers A-D");
	assert_field_fails(rtc_restore_any, &b, T, p, len, 1 + 0x0D, 0x00, 1, "registers A-D");
	assert_field_fails(rtc_restore_any, &b, T, p, len, 129, 1ull << 41, 8, "2199023255552 s from host time");
	assert_field_fails(rtc_restore_any, &b, T, p, len, 129, (uint64_t)INT64_MIN, 8, "from host time");
	assert_field_fails(rtc_restore_any, &b, T, p, len, 137, 256, 4, "latched time");
	assert_field_fails(rtc_restore_any, &b, T, p, len, 137 + 4, (uint32_t)-1, 4, "latched time");
	assert_field_fails(rtc_restore_any, &b, T, p, len, 137 + 8, 0x7FFFFFFF, 4, "latched time");
	assert_field_fails(rtc_restore_any, &b, T, p, len, 137 + 16, (uint32_t)-2, 4, "latched time");
	assert_field_fails(rtc_restore_any, &b, T, p, len, 137 + 20, 1u << 21, 4, "latched time");
	assert_field_fails(rtc_restore_any, &b, T, p, len, 137 + 24, 7, 4, "(day 7)");
	sf_assert_exact_length(rtc_restore_any, &b, T, 0, p, len);
	assert_header_checks(rtc_restore_any, &b, T, p, len);
	assert_int_equal(b.offset_s, 0);
	assert_int_equal(cmos_rd(&b, 0x40), 0);
	free(p);
	rtc_destroy(&a);
	rtc_destroy(&b);
}

/* ---- i8042 ---- */

static unsigned resets;
static void count_reset(void *opaque)
{
	(void)opaque;
	resets++;
}

static int i8042_restore_any(void *k, const struct state_section *sec)
{
	return i8042_restore(k, sec);
}

/* Both interrupts on, a keyboard ID reply partly read, an aux loopback byte behind it, a
 * keyboard command waiting for its parameter and a controller command for its data. */
static void i8042_busy(struct i8042 *k)
{
	i8042_write(k, I8042_COMMAND_PORT, 0x60);
	i8042_write(k, I8042_DATA_PORT, 0x47);
	i8042_write(k, I8042_DATA_PORT, 0xF2);  /* ACK AB 83 */
	(void)i8042_read(k, I8042_DATA_PORT);
	i8042_write(k, I8042_COMMAND_PORT, 0xD3);
	i8042_write(k, I8042_DATA_PORT, 0x42);  /* aux loopback */
	i8042_write(k, I8042_DATA_PORT, 0xED);  /* SET_LEDS: ACK, parameter pending */
	i8042_write(k, I8042_COMMAND_PORT, 0xD1); /* write output port: data pending */
}

static void test_i8042_round_trip(void **state)
{
	(void)state;
	struct irq_recorder ra = { 0 }, rb = { 0 };
	struct irq_line ka = irq_recorder_line(&ra, I8042_KBD_IRQ), xa = irq_recorder_line(&ra, I8042_AUX_IRQ);
	struct irq_line kb = irq_recorder_line(&rb, I8042_KBD_IRQ), xb = irq_recorder_line(&rb, I8042_AUX_IRQ);
	struct i8042 a, b;
	i8042_init(&a, &ka, &xa, count_reset, NULL);
	i8042_init(&b, &kb, &xb, count_reset, NULL);
	i8042_busy(&a);
	resets = 0;
	struct sf fa, fb;
	SAVE(&fa, i8042_save(&a, w_));
	struct state_section sec = one_section(&fa, STATE_SECTION_I8042);
	assert_int_equal(i8042_restore(&b, &sec), 0);
	assert_int_equal(rb.level[I8042_KBD_IRQ], 1);
	assert_int_equal(rb.level[I8042_AUX_IRQ], 0);
	assert_int_equal(rb.changes[I8042_KBD_IRQ], 1);
	assert_int_equal(resets, 0);
	SAVE(&fb, i8042_save(&b, w_));
	sf_assert_same(&fa, &fb);
	sf_close(&fa);
	sf_close(&fb);

	/* The pending data byte goes to the output port, then the queue drains in order, lines
	 * following; the pending LED parameter completes; the output port reads back. */
	i8042_write(&a, I8042_DATA_PORT, 0x03);
	i8042_write(&b, I8042_DATA_PORT, 0x03);
	const uint8_t want[] = { 0xAB, 0x83, 0x42, 0xFA };
	for (size_t i = 0; i < sizeof(want); i++) {
		assert_int_equal(i8042_read(&a, I8042_COMMAND_PORT), i8042_read(&b, I8042_COMMAND_PORT));
		assert_int_equal(ra.level[I8042_KBD_IRQ], rb.level[I8042_KBD_IRQ]);
		assert_int_equal(ra.level[I8042_AUX_IRQ], rb.level[I8042_AUX_IRQ]);
		assert_int_equal(i8042_read(&a, I8042_DATA_PORT), want[i]);
		assert_int_equal(i8042_read(&b, I8042_DATA_PORT), want[i]);
	}
	assert_int_equal(rb.level[I8042_AUX_IRQ], 0);
	i8042_write(&b, I8042_DATA_PORT, 0x00);
	assert_int_equal(i8042_read(&b, I8042_DATA_PORT), 0xFA);
	i8042_write(&b, I8042_COMMAND_PORT, 0xD0);
	assert_int_equal(i8042_read(&b, I8042_DATA_PORT), 0x03);
	i8042_write(&b, I8042_COMMAND_PORT, 0x20);
	assert_int_equal(i8042_read(&b, I8042_DATA_PORT), 0x47);
	assert_int_equal(resets, 0);
	i8042_destroy(&a);
	i8042_destroy(&b);
}

/* The aux line is re-raised too. */
static void test_i8042_aux_level(void **state)
{
	(void)state;
	struct irq_recorder ra = { 0 }, rb = { 0 };
	struct irq_line ka = irq_recorder_line(&ra, I8042_KBD_IRQ), xa = irq_recorder_line(&ra, I8042_AUX_IRQ);
	struct irq_line kb = irq_recorder_line(&rb, I8042_KBD_IRQ), xb = irq_recorder_line(&rb, I8042_AUX_IRQ);
	struct i8042 a, b;
	i8042_init(&a, &ka, &xa, NULL, NULL);
	i8042_init(&b, &kb, &xb, NULL, NULL);
	i8042_write(&a, I8042_COMMAND_PORT, 0x60);
	i8042_write(&a, I8042_DATA_PORT, 0x47);
	i8042_write(&a, I8042_COMMAND_PORT, 0xD3);
	i8042_write(&a, I8042_DATA_PORT, 0x99);
	assert_int_equal(ra.level[I8042_AUX_IRQ], 1);
	struct sf f;
	SAVE(&f, i8042_save(&a, w_));
	struct state_section sec = one_section(&f, STATE_SECTION_I8042);
	assert_int_equal(i8042_restore(&b, &sec), 0);
	sf_close(&f);
	assert_int_equal(rb.level[I8042_AUX_IRQ], 1);
	assert_int_equal(rb.level[I8042_KBD_IRQ], 0);
	assert_int_equal(i8042_read(&b, I8042_COMMAND_PORT) & 0x21, 0x21);
	assert_int_equal(i8042_read(&b, I8042_DATA_PORT), 0x99);
	assert_int_equal(rb.level[I8042_AUX_IRQ], 0);
	i8042_destroy(&a);
	i8042_destroy(&b);
}

static void test_i8042_hostile(void **state)
{
	(void)state;
	struct irq_recorder ra = { 0 }, rb = { 0 };
	struct irq_line ka = irq_recorder_line(&ra, I8042_KBD_IRQ), xa = irq_recorder_line(&ra, I8042_AUX_IRQ);
	struct irq_line kb = irq_recorder_line(&rb, I8042_KBD_IRQ), xb = irq_recorder_line(&rb, I8042_AUX_IRQ);
	struct i8042 a, b;
	i8042_init(&a, &ka, &xa, NULL, NULL);
	i8042_init(&b, &kb, &xb, NULL, NULL);
	i8042_busy(&a);
	struct sf f;
	SAVE(&f, i8042_save(&a, w_));
	struct state_section sec = one_section(&f, STATE_SECTION_I8042);
	size_t len;
	uint8_t *p = copy_payload(&sec, &len);
	sf_close(&f);
	assert_int_equal(len, 7 + 4 * 2);
	const uint32_t T = STATE_SECTION_I8042;
	/* mode, pending, pending_kbd, out_port, kbd_level, aux_level, count, (byte, aux)... */
	assert_field_fails(i8042_restore_any, &b, T, p, len, 6, 17, 1, "i8042: 17 bytes queued, at most 16");
	assert_field_fails(i8042_restore_any, &b, T, p, len, 6, 255, 1, "255 bytes queued");
	assert_field_fails(i8042_restore_any, &b, T, p, len, 8, 2, 1, "port is not 0 or 1");
	assert_field_fails(i8042_restore_any, &b, T, p, len, 1, 0x20, 1, "pending command 0x20");
	assert_field_fails(i8042_restore_any, &b, T, p, len, 2, 0xF4, 1, "keyboard command 0xf4");
	assert_field_fails(i8042_restore_any, &b, T, p, len, 4, 0, 1, "IRQ levels 0/0");
	assert_field_fails(i8042_restore_any, &b, T, p, len, 5, 1, 1, "but its queue and mode say 1/0");
	assert_field_fails(i8042_restore_any, &b, T, p, len, 8, 1, 1, "IRQ levels 1/0");
	assert_field_fails(i8042_restore_any, &b, T, p, len, 0, 0x46, 1, "IRQ levels 1/0");
	sf_assert_exact_length(i8042_restore_any, &b, T, 0, p, len);
	assert_header_checks(i8042_restore_any, &b, T, p, len);
	assert_int_equal(rb.calls, 0);
	assert_int_equal(i8042_read(&b, I8042_COMMAND_PORT) & 1, 0);
	free(p);
	i8042_destroy(&a);
	i8042_destroy(&b);
}

/* ---- ACPI PM ---- */

static int acpi_pm_restore_any(void *pm, const struct state_section *sec)
{
	return acpi_pm_restore(pm, sec);
}

static void test_acpi_pm_round_trip(void **state)
{
	(void)state;
	struct acpi_config cfg;
	acpi_config_default(&cfg, 2);
	struct acpi_pm a, b;
	acpi_pm_init(&a, &cfg);
	acpi_pm_init(&b, &cfg);
	acpi_pm_write(&a, cfg.pm1a_evt_port + 2, ACPI_PM1_PWRBTN | ACPI_PM1_RTC, 2);
	acpi_pm_write(&a, cfg.pm1a_cnt_port, ACPI_PM1_CNT_BM_RLD | 3u << ACPI_PM1_CNT_SLP_TYP_SHIFT, 2);
	acpi_pm_power_button(&a);
	assert_true(acpi_pm_sci_level(&a));
	struct sf fa, fb;
	SAVE(&fa, acpi_pm_save(&a, w_));
	struct state_section sec = one_section(&fa, STATE_SECTION_ACPI_PM);
	assert_int_equal(acpi_pm_restore(&b, &sec), 0);
	SAVE(&fb, acpi_pm_save(&b, w_));
	sf_assert_same(&fa, &fb);
	sf_close(&fa);
	sf_close(&fb);
	assert_true(acpi_pm_sci_level(&b));
	assert_int_equal(acpi_pm_read(&b, cfg.pm1a_evt_port, 4, 0), acpi_pm_read(&a, cfg.pm1a_evt_port, 4, 0));
	assert_int_equal(acpi_pm_read(&b, cfg.pm1a_cnt_port, 2, 0), acpi_pm_read(&a, cfg.pm1a_cnt_port, 2, 0));
	/* the guest acknowledges the button on both */
	acpi_pm_write(&b, cfg.pm1a_evt_port, ACPI_PM1_PWRBTN, 2);
	assert_false(acpi_pm_sci_level(&b));
}

static void test_acpi_pm_hostile(void **state)
{
	(void)state;
	struct acpi_config cfg;
	acpi_config_default(&cfg, 2);
	struct acpi_pm a, b;
	acpi_pm_init(&a, &cfg);
	acpi_pm_init(&b, &cfg);
	acpi_pm_power_button(&a);
	struct sf f;
	SAVE(&f, acpi_pm_save(&a, w_));
	struct state_section sec = one_section(&f, STATE_SECTION_ACPI_PM);
	size_t len;
	uint8_t *p = copy_payload(&sec, &len);
	sf_close(&f);
	assert_int_equal(len, 15);
	const uint32_t T = STATE_SECTION_ACPI_PM;
	/* evt 0, cnt 2, tmr 4, reset 6, reset value 8, sts 9, en 11, cnt 13 */
	assert_field_fails(acpi_pm_restore_any, &b, T, p, len, 0, 0x700, 2, "saved with PM1 event 0x700");
	assert_field_fails(acpi_pm_restore_any, &b, T, p, len, 4, 0, 2, "timer 0x0");
	assert_field_fails(acpi_pm_restore_any, &b, T, p, len, 8, 0, 1, "(value 0x0)");
	assert_field_fails(acpi_pm_restore_any, &b, T, p, len, 9, ACPI_PM1_TMR, 2, "PM1 status 0x1");
	assert_field_fails(acpi_pm_restore_any, &b, T, p, len, 11, 0x8000, 2, "enable 0x8000");
	assert_field_fails(acpi_pm_restore_any, &b, T, p, len, 13, 0, 2, "control 0x0");
	assert_field_fails(acpi_pm_restore_any, &b, T, p, len, 13, ACPI_PM1_CNT_SCI_EN | ACPI_PM1_CNT_SLP_EN, 2, "control 0x2001");
	sf_assert_exact_length(acpi_pm_restore_any, &b, T, 0, p, len);
	assert_header_checks(acpi_pm_restore_any, &b, T, p, len);
	assert_int_equal(b.pm1_sts, 0);
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_uart_round_trip),
		cmocka_unit_test(test_uart_hostile),
		cmocka_unit_test(test_rtc_round_trip),
		cmocka_unit_test(test_rtc_keeps_running),
		cmocka_unit_test(test_rtc_hostile),
		cmocka_unit_test(test_i8042_round_trip),
		cmocka_unit_test(test_i8042_aux_level),
		cmocka_unit_test(test_i8042_hostile),
		cmocka_unit_test(test_acpi_pm_round_trip),
		cmocka_unit_test(test_acpi_pm_hostile),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
