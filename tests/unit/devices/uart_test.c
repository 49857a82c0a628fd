/* Unit tests for devices/uart.c: the 16550A behaviour Linux's 8250 driver depends on
 * (scratch register, divisor latch, IER/IIR with the THR-empty interrupt rules, FIFO
 * bits, loopback with MSR following MCR, LSR, OUT2 gating the IRQ line, receive FIFO). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "devices/uart.h"
#include "irq_recorder.h"

enum { RBR = 0, THR = 0, DLL = 0, IER = 1, DLM = 1, IIR = 2, FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7 };

#define IRQ UART_COM1_IRQ

struct ctx {
	struct irq_recorder rec;
	struct uart u;
	int pipe[2];   /* the UART's output: [1] is its out_fd, tests read [0] */
};

static int setup(void **state)
{
	struct ctx *c = calloc(1, sizeof(*c));
	if (!c || pipe(c->pipe) != 0)
		return -1;
	fcntl(c->pipe[0], F_SETFL, O_NONBLOCK);
	struct irq_line line = irq_recorder_line(&c->rec, IRQ);
	uart_init(&c->u, c->pipe[1], &line);
	*state = c;
	return 0;
}

static int teardown(void **state)
{
	struct ctx *c = *state;
	uart_destroy(&c->u);
	close(c->pipe[0]);
	close(c->pipe[1]);
	free(c);
	return 0;
}

static uint8_t rd(struct ctx *c, unsigned reg) { return uart_read(&c->u, reg); }
static void wr(struct ctx *c, unsigned reg, uint8_t v) { uart_write(&c->u, reg, v); }
static int line(struct ctx *c) { return c->rec.level[IRQ]; }

static size_t drain_output(struct ctx *c, char *buf, size_t len)
{
	ssize_t n = read(c->pipe[0], buf, len);
	return n < 0 ? 0 : (size_t)n;
}

static void test_reset_state(void **state)
{
	struct ctx *c = *state;
	assert_int_equal(rd(c, IER), 0);
	assert_int_equal(rd(c, IIR), 0x01);          /* no interrupt, FIFOs off */
	assert_int_equal(rd(c, LCR), 0);
	assert_int_equal(rd(c, MCR), 0);
	assert_int_equal(rd(c, LSR), 0x60);          /* THRE | TEMT, no data */
	assert_int_equal(rd(c, MSR) & 0xF0, 0xB0);   /* DCD, DSR, CTS: a terminal is attached */
	assert_int_equal(rd(c, RBR), 0);
	assert_int_equal(line(c), 0);
	assert_int_equal(c->rec.bad_irq, 0);
}

static void test_scratch_register(void **state)
{
	struct ctx *c = *state;
	const uint8_t vals[] = { 0x55, 0xAA, 0x00, 0xFF, 0x5A };
	for (size_t i = 0; i < sizeof(vals); i++) {
		wr(c, SCR, vals[i]);
		assert_int_equal(rd(c, SCR), vals[i]);
	}
	/* independent of DLAB */
	wr(c, LCR, 0x80);
	assert_int_equal(rd(c, SCR), 0x5A);
}

static void test_divisor_latch(void **state)
{
	struct ctx *c = *state;
	wr(c, IER, 0x05);
	wr(c, LCR, 0x80 | 0x03);                     /* DLAB, 8N1 */
	assert_int_equal(rd(c, LCR), 0x83);
	wr(c, DLL, 0x0C);                            /* 9600 baud */
	wr(c, DLM, 0x01);
	assert_int_equal(rd(c, DLL), 0x0C);
	assert_int_equal(rd(c, DLM), 0x01);
	char buf[8];
	assert_int_equal(drain_output(c, buf, sizeof(buf)), 0); /* DLL writes are not data */
	wr(c, LCR, 0x03);
	assert_int_equal(rd(c, IER), 0x05);          /* IER untouched by DLM writes */
	assert_int_equal(rd(c, RBR), 0);             /* RBR, not DLL */
	wr(c, LCR, 0x83);
	assert_int_equal(rd(c, DLL), 0x0C);          /* the latch keeps its value */
	assert_int_equal(rd(c, DLM), 0x01);
}

static void test_transmit_to_output(void **state)
{
	struct ctx *c = *state;
	const char *msg = "Linux version";
	for (const char *p = msg; *p; p++) {
		assert_true(rd(c, LSR) & 0x20);      /* THRE before every byte */
		wr(c, THR, (uint8_t)*p);
	}
	char buf[64];
	size_t n = drain_output(c, buf, sizeof(buf));
	assert_int_equal(n, strlen(msg));
	assert_memory_equal(buf, msg, n);
	assert_int_equal(rd(c, LSR) & 0x61, 0x60);   /* transmission is instant */
}

static void test_transmit_discarded_without_fd(void **state)
{
	(void)state;
	struct irq_recorder rec = { 0 };
	struct irq_line l = irq_recorder_line(&rec, IRQ);
	struct uart u;
	uart_init(&u, -1, &l);
	uart_write(&u, THR, 'x');
	assert_int_equal(uart_read(&u, LSR) & 0x61, 0x60);
	uart_destroy(&u);
}

static void test_ier_mask(void **state)
{
	struct ctx *c = *state;
	wr(c, IER, 0xFF);
	assert_int_equal(rd(c, IER), 0x0F);          /* only the four 16550 enables */
	wr(c, MCR, 0xFF);
	assert_int_equal(rd(c, MCR), 0x1F);
}

static void test_thre_interrupt_rules(void **state)
{
	struct ctx *c = *state;
	wr(c, MCR, 0x08);                            /* OUT2 */
	assert_int_equal(line(c), 0);
	/* enabling THRI with THR empty raises it at once */
	wr(c, IER, 0x02);
	assert_int_equal(line(c), 1);
	assert_int_equal(rd(c, IIR) & 0x0F, 0x02);
	/* reading IIR with THRE as the source clears it */
	assert_int_equal(line(c), 0);
	assert_int_equal(rd(c, IIR) & 0x0F, 0x01);
	/* each THR write raises it again */
	wr(c, THR, 'a');
	assert_int_equal(line(c), 1);
	assert_int_equal(rd(c, IIR) & 0x0F, 0x02);
	assert_int_equal(line(c), 0);
	wr(c, THR, 'b');
	assert_int_equal(line(c), 1);
	/* disabling THRI drops the line; enabling it again (THR still empty) raises it */
	wr(c, IER, 0x00);
	assert_int_equal(line(c), 0);
	assert_int_equal(rd(c, IIR) & 0x0F, 0x01);
	wr(c, IER, 0x02);
	assert_int_equal(line(c), 1);
	/* reading LSR does not acknowledge THRE */
	rd(c, LSR);
	assert_int_equal(line(c), 1);
	assert_int_equal(rd(c, IIR) & 0x0F, 0x02);
	assert_int_equal(line(c), 0);
}

static void test_thre_not_pending_before_enable_ack(void **state)
{
	struct ctx *c = *state;
	wr(c, MCR, 0x08);
	wr(c, IER, 0x02);
	rd(c, IIR);                                  /* ack */
	/* rewriting IER with THRI still set is not a new enable */
	wr(c, IER, 0x03);
	assert_int_equal(rd(c, IIR) & 0x0F, 0x01);
	assert_int_equal(line(c), 0);
}

static void test_out2_gates_irq(void **state)
{
	struct ctx *c = *state;
	wr(c, IER, 0x02);
	assert_int_equal(rd(c, IIR) & 0x0F, 0x02);         /* pending regardless of OUT2 ... */
	wr(c, THR, 'x');                                  /* ... make it pending again */
	assert_int_equal(line(c), 0);                     /* but the line is gated */
	assert_int_equal(c->rec.changes[IRQ], 0);
	wr(c, MCR, 0x08);
	assert_int_equal(line(c), 1);
	wr(c, MCR, 0x00);
	assert_int_equal(line(c), 0);
	wr(c, MCR, 0x0B);                                 /* DTR | RTS | OUT2 */
	assert_int_equal(line(c), 1);
}

static void test_receive_fills_fifo_and_raises_rdi(void **state)
{
	struct ctx *c = *state;
	wr(c, MCR, 0x08);
	wr(c, IER, 0x01);
	assert_int_equal(line(c), 0);
	const uint8_t in[] = { 'r', 'o', 'o', 't', '\n' };
	assert_int_equal(uart_receive(&c->u, in, sizeof(in)), sizeof(in));
	assert_int_equal(line(c), 1);
	assert_int_equal(rd(c, IIR) & 0x0F, 0x04);
	assert_int_equal(line(c), 1);                     /* IIR read does not ack RDI */
	for (size_t i = 0; i < sizeof(in); i++) {
		assert_true(rd(c, LSR) & 0x01);
		assert_int_equal(rd(c, RBR), in[i]);
	}
	assert_false(rd(c, LSR) & 0x01);
	assert_int_equal(rd(c, IIR) & 0x0F, 0x01);
	assert_int_equal(line(c), 0);
}

static void test_receive_fifo_capacity(void **state)
{
	struct ctx *c = *state;
	uint8_t in[300];
	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)i;
	assert_int_equal(uart_receive(&c->u, in, sizeof(in)), UART_FIFO_SIZE);
	assert_int_equal(uart_receive(&c->u, in, 1), 0);  /* full */
	assert_int_equal(rd(c, RBR), 0);
	assert_int_equal(uart_receive(&c->u, in + 256, 10), 1); /* room for one */
	for (size_t i = 1; i < UART_FIFO_SIZE; i++)
		assert_int_equal(rd(c, RBR), (uint8_t)i);
	assert_int_equal(rd(c, RBR), in[256]);
	assert_false(rd(c, LSR) & 0x01);
	assert_int_equal(uart_receive(&c->u, in, 0), 0);
}

static void test_iir_priorities(void **state)
{
	struct ctx *c = *state;
	wr(c, MCR, 0x08);
	wr(c, IER, 0x0F);
	const uint8_t b = 'k';
	uart_receive(&c->u, &b, 1);
	/* received data outranks THR empty, and reading IIR then does not ack THRE */
	assert_int_equal(rd(c, IIR) & 0x0F, 0x04);
	assert_int_equal(rd(c, IIR) & 0x0F, 0x04);
	assert_int_equal(rd(c, RBR), 'k');
	assert_int_equal(rd(c, IIR) & 0x0F, 0x02);
	assert_int_equal(rd(c, IIR) & 0x0F, 0x01);
	assert_int_equal(line(c), 0);
}

static void test_overrun_is_line_status_interrupt(void **state)
{
	struct ctx *c = *state;
	wr(c, IER, 0x05);                         /* RLSI | RDI */
	wr(c, MCR, 0x10 | 0x08);                  /* loopback, OUT2 */
	for (unsigned i = 0; i < UART_FIFO_SIZE + 1; i++)
		wr(c, THR, (uint8_t)i);              /* one more than the FIFO holds */
	/* line status outranks received data */
	assert_int_equal(rd(c, IIR) & 0x0F, 0x06);
	uint8_t lsr = rd(c, LSR);
	assert_int_equal(lsr & 0x03, 0x03);       /* OE | DR */
	/* reading LSR clears the error */
	assert_int_equal(rd(c, LSR) & 0x02, 0);
	assert_int_equal(rd(c, IIR) & 0x0F, 0x04);
	assert_int_equal(rd(c, RBR), 0);          /* the first 256 bytes are intact */
	assert_int_equal(rd(c, RBR), 1);
}

static void test_fifo_bits_and_clear(void **state)
{
	struct ctx *c = *state;
	wr(c, FCR, 0x01);
	assert_int_equal(rd(c, IIR), 0xC1);       /* FIFOs enabled: bits 7:6 set */
	wr(c, IER, 0x02);
	assert_int_equal(rd(c, IIR), 0xC2);
	wr(c, FCR, 0x00);
	assert_int_equal(rd(c, IIR) & 0xC0, 0);
	const uint8_t in[] = "abc";
	wr(c, FCR, 0x01);
	uart_receive(&c->u, in, 3);
	assert_true(rd(c, LSR) & 0x01);
	wr(c, FCR, 0x01 | 0x02);                  /* clear the receive FIFO */
	assert_false(rd(c, LSR) & 0x01);
	assert_int_equal(rd(c, RBR), 0);
	assert_int_equal(rd(c, IIR) & 0xC0, 0xC0);
}

static void test_loopback(void **state)
{
	struct ctx *c = *state;
	/* what the 8250 probe does: loopback with RTS and OUT2 gives CTS and DCD */
	wr(c, MCR, 0x10 | 0x0A);
	assert_int_equal(rd(c, MSR) & 0xF0, 0x90);
	wr(c, MCR, 0x10);
	assert_int_equal(rd(c, MSR) & 0xF0, 0x00);
	wr(c, MCR, 0x10 | 0x01);                  /* DTR -> DSR */
	assert_int_equal(rd(c, MSR) & 0xF0, 0x20);
	wr(c, MCR, 0x10 | 0x04);                  /* OUT1 -> RI */
	assert_int_equal(rd(c, MSR) & 0xF0, 0x40);
	wr(c, MCR, 0x10 | 0x0F);
	assert_int_equal(rd(c, MSR) & 0xF0, 0xF0);

	/* transmitted bytes come back as received bytes, and do not leave the UART */
	wr(c, THR, 0x5A);
	wr(c, THR, 0xA5);
	assert_int_equal(rd(c, LSR) & 0x01, 0x01);
	assert_int_equal(rd(c, RBR), 0x5A);
	assert_int_equal(rd(c, RBR), 0xA5);
	assert_int_equal(rd(c, LSR) & 0x01, 0);
	char buf[4];
	assert_int_equal(drain_output(c, buf, sizeof(buf)), 0);
	/* external input is disconnected in loopback */
	const uint8_t in = 'z';
	assert_int_equal(uart_receive(&c->u, &in, 1), 0);
	assert_int_equal(rd(c, LSR) & 0x01, 0);

	/* leaving loopback: the real modem lines again */
	wr(c, MCR, 0x00);
	assert_int_equal(rd(c, MSR) & 0xF0, 0xB0);
	wr(c, THR, 'o');
	assert_int_equal(drain_output(c, buf, sizeof(buf)), 1);
	assert_int_equal(buf[0], 'o');
}

static void test_loopback_rdi_interrupt(void **state)
{
	struct ctx *c = *state;
	wr(c, MCR, 0x10 | 0x08);
	wr(c, IER, 0x01);
	assert_int_equal(line(c), 0);
	wr(c, THR, 0x42);
	assert_int_equal(rd(c, IIR) & 0x0F, 0x04);
	assert_int_equal(line(c), 1);
	assert_int_equal(rd(c, RBR), 0x42);
	assert_int_equal(line(c), 0);
}

static void test_read_only_registers_ignore_writes(void **state)
{
	struct ctx *c = *state;
	wr(c, LSR, 0xFF);
	assert_int_equal(rd(c, LSR), 0x60);
	wr(c, MSR, 0x00);
	assert_int_equal(rd(c, MSR) & 0xF0, 0xB0);
	assert_int_equal(line(c), 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_reset_state),
		T(test_scratch_register),
		T(test_divisor_latch),
		T(test_transmit_to_output),
		cmocka_unit_test(test_transmit_discarded_without_fd),
		T(test_ier_mask),
		T(test_thre_interrupt_rules),
		T(test_thre_not_pending_before_enable_ack),
		T(test_out2_gates_irq),
		T(test_receive_fills_fifo_and_raises_rdi),
		T(test_receive_fifo_capacity),
		T(test_iir_priorities),
		T(test_overrun_is_line_status_interrupt),
		T(test_fifo_bits_and_clear),
		T(test_loopback),
		T(test_loopback_rdi_interrupt),
		T(test_read_only_registers_ignore_writes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
