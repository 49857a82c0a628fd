/* 16550A UART. Transmission is instant: THR is always empty, so LSR reports THRE+TEMT
 * and a THR-empty interrupt follows every write while IER asks for one. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "devices/uart.h"

/* Registers (offset from base; DLAB = LCR bit 7 selects the divisor latch at 0/1) */
#define UART_RBR 0 /* read: receive buffer */
#define UART_THR 0 /* write: transmit holding */
#define UART_IER 1
#define UART_IIR 2 /* read */
#define UART_FCR 2 /* write */
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_MSR 6
#define UART_SCR 7

/* IER bits */
#define IER_RDI   0x01 /* received data available */
#define IER_THRI  0x02 /* THR empty */
#define IER_RLSI  0x04 /* line status */
#define IER_MSI   0x08 /* modem status */

/* IIR values */
#define IIR_NO_INT 0x01
#define IIR_RLSI   0x06
#define IIR_RDI    0x04
#define IIR_THRI   0x02
#define IIR_MSI    0x00
#define IIR_FIFO   0xC0

/* FCR bits */
#define FCR_ENABLE   0x01
#define FCR_CLEAR_RX 0x02

/* LCR bits */
#define LCR_DLAB 0x80

/* MCR bits */
#define MCR_DTR  0x01
#define MCR_RTS  0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08 /* gates the interrupt line on PCs */
#define MCR_LOOP 0x10

/* LSR bits */
#define LSR_DR   0x01
#define LSR_OE   0x02
#define LSR_THRE 0x20
#define LSR_TEMT 0x40

/* MSR bits */
#define MSR_CTS 0x10
#define MSR_DSR 0x20
#define MSR_RI  0x40
#define MSR_DCD 0x80
#define MSR_DELTAS 0x0F

void uart_init(struct uart *u, int out_fd, const struct irq_line *irq)
{
	memset(u, 0, sizeof(*u));
	pthread_mutex_init(&u->lock, NULL);
	u->irq = *irq;
	u->out_fd = out_fd;
	u->msr = MSR_DCD | MSR_DSR | MSR_CTS; /* a terminal is attached */
}

void uart_destroy(struct uart *u)
{
	pthread_mutex_destroy(&u->lock);
}

static uint8_t iir(const struct uart *u)
{
	uint8_t fifo = (u->fcr & FCR_ENABLE) ? IIR_FIFO : 0;
	if ((u->ier & IER_RLSI) && u->lsr_err)
		return fifo | IIR_RLSI;
	if ((u->ier & IER_RDI) && u->rx_count)
		return fifo | IIR_RDI;
	if ((u->ier & IER_THRI) && u->thre_pending)
		return fifo | IIR_THRI;
	if ((u->ier & IER_MSI) && (u->msr & MSR_DELTAS))
		return fifo | IIR_MSI;
	return fifo | IIR_NO_INT;
}

static void update_irq(struct uart *u)
{
	int level = !(iir(u) & IIR_NO_INT) && (u->mcr & MCR_OUT2);
	if (level != u->irq_level) {
		u->irq_level = level;
		irq_line_set(&u->irq, level);
	}
}

static void rx_push(struct uart *u, uint8_t c)
{
	if (u->rx_count == UART_FIFO_SIZE) {
		u->lsr_err |= LSR_OE;
		return;
	}
	u->rx[(u->rx_head + u->rx_count) % UART_FIFO_SIZE] = c;
	u->rx_count++;
}

static void transmit(struct uart *u, uint8_t c)
{
	if (u->mcr & MCR_LOOP) {
		rx_push(u, c);
	} else if (u->out_fd >= 0) {
		while (write(u->out_fd, &c, 1) < 0 && errno == EINTR)
			;
	}
	u->thre_pending = 1;
}

/* In loopback the modem inputs follow the modem outputs (the 8250 driver's probe checks this). */
static uint8_t modem_status(const struct uart *u)
{
	if (!(u->mcr & MCR_LOOP))
		return u->msr;
	uint8_t m = u->msr & MSR_DELTAS;
	if (u->mcr & MCR_RTS) m |= MSR_CTS;
	if (u->mcr & MCR_DTR) m |= MSR_DSR;
	if (u->mcr & MCR_OUT1) m |= MSR_RI;
	if (u->mcr & MCR_OUT2) m |= MSR_DCD;
	return m;
}

uint8_t uart_read(struct uart *u, unsigned offset)
{
	uint8_t v = 0xFF;
	pthread_mutex_lock(&u->lock);
	switch (offset) {
	case UART_RBR:
		if (u->lcr & LCR_DLAB) {
			v = u->dll;
		} else if (u->rx_count) {
			v = u->rx[u->rx_head];
			u->rx_head = (u->rx_head + 1) % UART_FIFO_SIZE;
			u->rx_count--;
		} else {
			v = 0;
		}
		break;
	case UART_IER: v = (u->lcr & LCR_DLAB) ? u->dlm : u->ier; break;
	case UART_IIR:
		v = iir(u);
		if ((v & 0x0F) == IIR_THRI)
			u->thre_pending = 0; /* reading IIR acknowledges THR-empty */
		break;
	case UART_LCR: v = u->lcr; break;
	case UART_MCR: v = u->mcr; break;
	case UART_LSR:
		v = LSR_THRE | LSR_TEMT | (u->rx_count ? LSR_DR : 0) | u->lsr_err;
		u->lsr_err = 0;
		break;
	case UART_MSR:
		v = modem_status(u);
		u->msr &= ~MSR_DELTAS;
		break;
	case UART_SCR: v = u->scr; break;
	}
	update_irq(u);
	pthread_mutex_unlock(&u->lock);
	return v;
}

void uart_write(struct uart *u, unsigned offset, uint8_t value)
{
	pthread_mutex_lock(&u->lock);
	switch (offset) {
	case UART_THR:
		if (u->lcr & LCR_DLAB)
			u->dll = value;
		else
			transmit(u, value);
		break;
	case UART_IER:
		if (u->lcr & LCR_DLAB) {
			u->dlm = value;
		} else {
			if ((value & IER_THRI) && !(u->ier & IER_THRI))
				u->thre_pending = 1; /* enabling it with THR empty raises it at once */
			u->ier = value & 0x0F;
		}
		break;
	case UART_FCR:
		u->fcr = value & FCR_ENABLE;
		if (value & FCR_CLEAR_RX)
			u->rx_head = u->rx_count = 0;
		break;
	case UART_LCR: u->lcr = value; break;
	case UART_MCR: u->mcr = value & 0x1F; break;
	case UART_LSR: break;
	case UART_MSR: break;
	case UART_SCR: u->scr = value; break;
	}
	update_irq(u);
	pthread_mutex_unlock(&u->lock);
}

size_t uart_receive(struct uart *u, const uint8_t *buf, size_t len)
{
	pthread_mutex_lock(&u->lock);
	size_t n = 0;
	if (!(u->mcr & MCR_LOOP)) {
		for (; n < len && u->rx_count < UART_FIFO_SIZE; n++)
			rx_push(u, buf[n]);
	}
	update_irq(u);
	pthread_mutex_unlock(&u->lock);
	return n;
}
