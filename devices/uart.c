/* 16550A UART. Transmission is instant: THR is always empty, so LSR reports THRE+TEMT
 * and a THR-empty interrupt follows every write while IER asks for one. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "devices/uart.h"
#include "section.h"

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

static int irq_wanted(const struct uart *u)
{
	return !(iir(u) & IIR_NO_INT) && (u->mcr & MCR_OUT2);
}

static void update_irq(struct uart *u)
{
	int level = irq_wanted(u);
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

/* UART, version 1: ier, lcr, mcr, lsr_err, msr, scr, dll, dlm, fcr, thre_pending, irq_level
 * (u8 each), rx_count (u16), the receive FIFO's bytes oldest first. */
int uart_save(struct uart *u, struct state_writer *w, uint32_t instance)
{
	int rc = state_section_begin(w, STATE_SECTION_UART, instance, DEVICE_STATE_VERSION, 0);
	if (rc)
		return rc;
	pthread_mutex_lock(&u->lock);
	const uint8_t regs[] = { u->ier, u->lcr, u->mcr, u->lsr_err, u->msr, u->scr, u->dll,
				 u->dlm, u->fcr, (uint8_t)u->thre_pending, (uint8_t)u->irq_level };
	state_put_bytes(w, regs, sizeof(regs));
	state_put_u16(w, (uint16_t)u->rx_count);
	for (unsigned i = 0; i < u->rx_count; i++)
		state_put_u8(w, u->rx[(u->rx_head + i) % UART_FIFO_SIZE]);
	pthread_mutex_unlock(&u->lock);
	return state_section_end(w);
}

int uart_restore(struct uart *u, const struct state_section *sec)
{
	int rc = device_section_check(sec, STATE_SECTION_UART, "uart");
	if (rc)
		return rc;
	struct state_cursor c = sec->payload;
	struct uart t = { 0 }; /* the saved registers, checked before u changes */
	t.ier = state_get_u8(&c);
	t.lcr = state_get_u8(&c);
	t.mcr = state_get_u8(&c);
	t.lsr_err = state_get_u8(&c);
	t.msr = state_get_u8(&c);
	t.scr = state_get_u8(&c);
	t.dll = state_get_u8(&c);
	t.dlm = state_get_u8(&c);
	t.fcr = state_get_u8(&c);
	t.thre_pending = state_get_u8(&c);
	t.irq_level = state_get_u8(&c);
	t.rx_count = state_get_u16(&c);
	if (t.rx_count > UART_FIFO_SIZE)
		return state_fail(-EBADMSG, "uart %u: %u bytes in the receive FIFO, at most %d",
				  sec->instance, t.rx_count, UART_FIFO_SIZE);
	state_get_bytes(&c, t.rx, t.rx_count);
	if ((rc = device_section_end(&c, "uart")))
		return rc;
	if ((t.ier & ~0x0F) || (t.mcr & ~0x1F) || (t.fcr & ~FCR_ENABLE) || (t.lsr_err & ~LSR_OE))
		return state_fail(-EBADMSG, "uart %u: IER 0x%x, MCR 0x%x, FCR 0x%x or LSR errors 0x%x "
				  "has bits the UART never sets", sec->instance, t.ier, t.mcr,
				  t.fcr, t.lsr_err);
	if (t.thre_pending > 1 || t.irq_level > 1)
		return state_fail(-EBADMSG, "uart %u: THR-empty pending %d or IRQ level %d is not 0 "
				  "or 1", sec->instance, t.thre_pending, t.irq_level);
	if (t.irq_level != irq_wanted(&t))
		return state_fail(-EBADMSG, "uart %u: IRQ level %d, but its registers say %d",
				  sec->instance, t.irq_level, irq_wanted(&t));

	pthread_mutex_lock(&u->lock);
	u->ier = t.ier, u->lcr = t.lcr, u->mcr = t.mcr, u->lsr_err = t.lsr_err, u->msr = t.msr;
	u->scr = t.scr, u->dll = t.dll, u->dlm = t.dlm, u->fcr = t.fcr;
	u->thre_pending = t.thre_pending;
	memcpy(u->rx, t.rx, t.rx_count);
	u->rx_head = 0;
	u->rx_count = t.rx_count;
	/* Always driven, also when low: the line's other end was restored on its own. */
	u->irq_level = t.irq_level;
	irq_line_set(&u->irq, u->irq_level);
	pthread_mutex_unlock(&u->lock);
	return 0;
}
