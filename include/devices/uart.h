/* 16550A UART (COM1 at 0x3F8, IRQ 4): the guest's serial console. Transmitted bytes go
 * to an output fd; received bytes come from uart_receive(). Thread-safe: vCPU threads
 * access registers while the worker's loop feeds input. */
#ifndef VIRIDIAN_DEVICES_UART_H
#define VIRIDIAN_DEVICES_UART_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/irq.h"

#define UART_COM1_BASE 0x3F8
#define UART_COM1_IRQ  4
#define UART_PORTS     8
#define UART_FIFO_SIZE 256

struct uart {
	pthread_mutex_t lock;
	struct irq_line irq;
	int out_fd;                  /* -1: output discarded */
	uint8_t ier, lcr, mcr, lsr_err, msr, scr, dll, dlm, fcr;
	int thre_pending;            /* a THR-empty interrupt waits to be seen in IIR */
	int irq_level;
	uint8_t rx[UART_FIFO_SIZE];
	unsigned rx_head, rx_count;
};

void uart_init(struct uart *u, int out_fd, const struct irq_line *irq);
void uart_destroy(struct uart *u);
/* Register access at offset 0..7 from the base port. */
uint8_t uart_read(struct uart *u, unsigned offset);
void uart_write(struct uart *u, unsigned offset, uint8_t value);
/* Feed received bytes; returns how many fit in the FIFO. */
size_t uart_receive(struct uart *u, const uint8_t *buf, size_t len);

/* Saved state: a UART section (instance: port number, 0 = COM1) with the registers and the
 * receive FIFO; restore re-raises the interrupt line as it was. 0 or a negative errno after
 * state_fail() (include/state/savedstate.h). */
struct state_writer;
struct state_section;
int uart_save(struct uart *u, struct state_writer *w, uint32_t instance);
int uart_restore(struct uart *u, const struct state_section *sec);

#endif
